package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// On-disk layout (format version 1). Everything lives in one bbolt file:
//
//	meta     small named values: format, rev (current revision), compact
//	         (compact revision C: reads at R >= C are served), keys (live key
//	         count), and the state of the physical compaction (see
//	         compactor.go).
//	kv       user key -> current version of every live key:
//	         uvarint create, uvarint mod, uvarint version, then the value.
//	         Serves current reads and ranges with one seek, and gives the
//	         writer a key's previous version without touching history.
//	history  revKey(rev, sub) -> the event (see appendEvent). Keys are
//	         big-endian so the bucket is in revision order and written
//	         append-only: History is one sequential cursor scan. The event
//	         carries the key's previous version inline, so PrevKV needs no
//	         second lookup and survives compaction of that version.
//	index    escape(user key) 0x00 0x01 revKey(rev, sub) -> event type (one
//	         byte). Per key, its versions in revision order: a read at a past
//	         revision R seeks to the key's last entry <= R, then jumps to the
//	         next key, never walking every version.
//	times    revKey(first revision of a group commit) -> unix nanoseconds:
//	         the commit time, for RetainDuration. One entry per group commit,
//	         never decreasing.
//
// The escaping (0x00 -> 0x00 0xff, terminator 0x00 0x01) keeps bytewise
// order between escaped keys identical to the order of the user keys, for
// keys that contain any byte, and makes a key's entries a contiguous run
// that no other key's entries can interleave with.
const formatVersion = 1

var (
	bucketMeta    = []byte("meta")
	bucketKV      = []byte("kv")
	bucketHistory = []byte("history")
	bucketIndex   = []byte("index")
	bucketTimes   = []byte("times")

	metaFormat  = []byte("format")
	metaRev     = []byte("rev")
	metaCompact = []byte("compact")
	metaKeys    = []byte("keys")
	// Physical compaction state (compactor.go).
	metaCompactDone   = []byte("compact_done")
	metaCompactTarget = []byte("compact_target")
	metaCompactNext   = []byte("compact_next")

	// Index values: the type of the event at that index entry.
	indexPut    = []byte{byte(EventPut)}
	indexDelete = []byte{byte(EventDelete)}
)

// revKeyLen is the length of a history key: revision (8 bytes) and
// sub-revision (4 bytes), big-endian.
const revKeyLen = 12

// errCorrupt reports a record the store cannot decode.
var errCorrupt = errors.New("kv: corrupt record")

func putRevKey(b []byte, rev int64, sub int32) {
	binary.BigEndian.PutUint64(b, uint64(rev))
	binary.BigEndian.PutUint32(b[8:], uint32(sub))
}

func appendRevKey(dst []byte, rev int64, sub int32) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(rev))
	return binary.BigEndian.AppendUint32(dst, uint32(sub))
}

func parseRevKey(b []byte) (rev int64, sub int32) {
	return int64(binary.BigEndian.Uint64(b)), int32(binary.BigEndian.Uint32(b[8:]))
}

// revKeyLess orders (rev, sub) pairs.
func revKeyLess(r1 int64, s1 int32, r2 int64, s2 int32) bool {
	return r1 < r2 || (r1 == r2 && s1 < s2)
}

func putUint64(b []byte, v int64) { binary.BigEndian.PutUint64(b, uint64(v)) }

func getUint64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: meta value of %d bytes", errCorrupt, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// escapedLen is the length of escape(key) with its terminator.
func escapedLen(key []byte) int {
	n := len(key) + 2
	for _, c := range key {
		if c == 0 {
			n++
		}
	}
	return n
}

// appendEscaped appends the index prefix of key: key with every 0x00
// written as 0x00 0xff, then the terminator 0x00 0x01.
func appendEscaped(dst, key []byte) []byte {
	for _, c := range key {
		if c == 0 {
			dst = append(dst, 0, 0xff)
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, 0, 1)
}

// splitIndexKey splits an index key into the escaped key with terminator
// and the (rev, sub) that follow.
func splitIndexKey(k []byte) (prefix []byte, rev int64, sub int32, err error) {
	if len(k) < revKeyLen+2 {
		return nil, 0, 0, fmt.Errorf("%w: index key of %d bytes", errCorrupt, len(k))
	}
	p := k[:len(k)-revKeyLen]
	rev, sub = parseRevKey(k[len(p):])
	return p, rev, sub, nil
}

// appendCurrent encodes a kv bucket value.
func appendCurrent(dst []byte, create, mod, version int64, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(create))
	dst = binary.AppendUvarint(dst, uint64(mod))
	dst = binary.AppendUvarint(dst, uint64(version))
	return append(dst, value...)
}

// currentLen bounds the length of appendCurrent's output.
func currentLen(value []byte) int { return 3*binary.MaxVarintLen64 + len(value) }

// decodeCurrent decodes a kv bucket value. value aliases b.
func decodeCurrent(b []byte) (create, mod, version int64, value []byte, err error) {
	d := decoder{b: b}
	create = d.int()
	mod = d.int()
	version = d.int()
	if d.err != nil {
		return 0, 0, 0, nil, d.err
	}
	return create, mod, version, d.b, nil
}

// Event record flags.
const flagPrev = 1

// appendEvent encodes a history record. The event's own revision and sub
// are the record's key and are not repeated. key is the event's key; for a
// put, create, version and value are its new version; prev, when not nil,
// is the version before (its Key is not stored: it is key).
func appendEvent(dst []byte, typ EventType, key []byte, create, version int64, value []byte, prev *KeyValue) []byte {
	var flags byte
	if prev != nil {
		flags = flagPrev
	}
	dst = append(dst, byte(typ), flags)
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(create))
	dst = binary.AppendUvarint(dst, uint64(version))
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	dst = append(dst, value...)
	if prev != nil {
		dst = binary.AppendUvarint(dst, uint64(prev.CreateRevision))
		dst = binary.AppendUvarint(dst, uint64(prev.ModRevision))
		dst = binary.AppendUvarint(dst, uint64(prev.Version))
		dst = binary.AppendUvarint(dst, uint64(len(prev.Value)))
		dst = append(dst, prev.Value...)
	}
	return dst
}

// eventLen bounds the length of appendEvent's output.
func eventLen(key, value []byte, prev *KeyValue) int {
	n := 2 + 4*binary.MaxVarintLen64 + len(key) + len(value)
	if prev != nil {
		n += 4*binary.MaxVarintLen64 + len(prev.Value)
	}
	return n
}

// eventRecord is a decoded history record; its slices alias the record.
type eventRecord struct {
	typ     EventType
	key     []byte
	create  int64
	version int64
	value   []byte
	hasPrev bool
	prev    KeyValue // Key unset
}

// decodeEvent decodes a history record into e. With keyOnly it stops after
// the type and key.
func decodeEvent(b []byte, e *eventRecord, keyOnly bool) error {
	if len(b) < 2 {
		return fmt.Errorf("%w: history record of %d bytes", errCorrupt, len(b))
	}
	e.typ = EventType(b[0])
	if e.typ != EventPut && e.typ != EventDelete {
		return fmt.Errorf("%w: event type %d", errCorrupt, b[0])
	}
	e.hasPrev = b[1]&flagPrev != 0
	d := decoder{b: b[2:]}
	e.key = d.bytes()
	if keyOnly {
		return d.err
	}
	e.create = d.int()
	e.version = d.int()
	e.value = d.bytes()
	if e.hasPrev {
		e.prev.CreateRevision = d.int()
		e.prev.ModRevision = d.int()
		e.prev.Version = d.int()
		e.prev.Value = d.bytes()
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes in history record", errCorrupt, len(d.b))
	}
	return d.err
}

// decoder reads uvarints and length-prefixed byte strings, recording the
// first error instead of panicking on a short or corrupt record.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > math.MaxInt64 {
		d.err = fmt.Errorf("%w: bad varint", errCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return int64(v)
}

func (d *decoder) bytes() []byte {
	n := d.int()
	if d.err != nil {
		return nil
	}
	if n > int64(len(d.b)) {
		d.err = fmt.Errorf("%w: length %d beyond record", errCorrupt, n)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
