package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The write-ahead log. A group commit is made durable by appending one
// record to the log with one write(2) and one fdatasync; a checkpoint later
// writes many groups to bbolt in one transaction. The log lives in
// dir/wal/ as segment files named after the first revision they hold
// (20 decimal digits, ".wal"), each preallocated so that appending does not
// change the file's size and fdatasync has no metadata to flush. A new
// segment is created, preallocated and fsynced with its directory before
// its first record is written.
//
// Record layout, little-endian:
//
//	len   u32  length of what follows the CRC
//	crc   u32  CRC-32C (Castagnoli) of what follows it
//	rev   i64  first revision of the group
//	time  i64  the group's commit time, unix nanoseconds
//	keys  uvarint  live keys after the group
//	revs  uvarint  number of revisions, rev .. rev+revs-1
//	per revision:  uvarint events, then per event uvarint length and the
//	               event encoded as a history record (appendEvent); its
//	               sub-revision is its position.
//
// A length of zero ends a segment (the preallocated space is zeros). At
// Open, the records above bbolt's revision are replayed; a record that is
// torn (short, or with a bad CRC) ends the log when nothing valid follows
// it, and is an error otherwise (see readWAL).

const (
	walDirName        = "wal"
	walExt            = ".wal"
	walHeaderLen      = 8
	walMinBody        = 8 + 8 + 1 + 1
	maxWALRecord      = math.MaxInt32
	defaultWALSegment = 64 << 20
)

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)

	// errWALCorrupt reports a log that cannot be replayed: a bad record
	// followed by good ones, a gap in the revisions, or a record that
	// does not decode.
	errWALCorrupt = errors.New("kv: corrupt write-ahead log")
)

// walGroup is one decoded record.
type walGroup struct {
	first, last int64
	time        int64
	keys        int64
	batches     []Batch
	size        int64 // memory held, as eventSize counts it
}

// appendWALRecord appends the record of one group: revisions first..,
// whose events are events[spans[i].start:spans[i].end]. scratch is a
// buffer for one event, returned for reuse.
func appendWALRecord(dst, scratch []byte, first, now, keys int64, events []Event, spans []span) ([]byte, []byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, walHeaderLen)...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(first))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(now))
	dst = binary.AppendUvarint(dst, uint64(keys))
	dst = binary.AppendUvarint(dst, uint64(len(spans)))
	for _, sp := range spans {
		dst = binary.AppendUvarint(dst, uint64(sp.end-sp.start))
		for i := sp.start; i < sp.end; i++ {
			e := &events[i]
			var value []byte
			if e.Type == EventPut {
				value = e.KV.Value
			}
			scratch = appendEvent(scratch[:0], e.Type, e.KV.Key, e.KV.CreateRevision, e.KV.Version, value, e.PrevKV)
			dst = binary.AppendUvarint(dst, uint64(len(scratch)))
			dst = append(dst, scratch...)
		}
	}
	body := len(dst) - start - walHeaderLen
	if body > maxWALRecord {
		return dst[:start], scratch, fmt.Errorf("kv: group of %d bytes is too large for the log", body)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(body))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+walHeaderLen:], crcTable))
	return dst, scratch, nil
}

// recordStatus is what parseWALRecord found.
type recordStatus int

const (
	recordOK  recordStatus = iota
	recordEnd              // zero length: the end of the segment's records
	recordBad              // short or bad CRC
)

// parseWALRecord checks the record at the start of b and returns its body
// and total length.
func parseWALRecord(b []byte) (body []byte, n int, st recordStatus) {
	if len(b) < walHeaderLen {
		for _, c := range b {
			if c != 0 {
				return nil, 0, recordBad
			}
		}
		return nil, 0, recordEnd
	}
	l := binary.LittleEndian.Uint32(b)
	if l == 0 {
		return nil, 0, recordEnd
	}
	if l < walMinBody || uint64(l) > uint64(len(b)-walHeaderLen) {
		return nil, 0, recordBad
	}
	body = b[walHeaderLen : walHeaderLen+int(l)]
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(b[4:]) {
		return nil, 0, recordBad
	}
	return body, walHeaderLen + int(l), recordOK
}

// walRecordRevs returns the revisions a record's body holds, without
// decoding its events.
func walRecordRevs(body []byte) (first, last int64, err error) {
	if len(body) < 16 {
		return 0, 0, fmt.Errorf("%w: record of %d bytes", errWALCorrupt, len(body))
	}
	first = int64(binary.LittleEndian.Uint64(body))
	d := decoder{b: body[16:]}
	d.int() // keys
	revs := d.int()
	if d.err != nil {
		return 0, 0, fmt.Errorf("%w: %v", errWALCorrupt, d.err)
	}
	if first < 2 || revs < 1 || revs > math.MaxInt64-first {
		return 0, 0, fmt.Errorf("%w: revisions %d+%d", errWALCorrupt, first, revs)
	}
	return first, first + revs - 1, nil
}

// decodeWALRecord decodes a record's body. The events' slices alias body.
func decodeWALRecord(body []byte) (walGroup, error) {
	first, last, err := walRecordRevs(body)
	if err != nil {
		return walGroup{}, err
	}
	g := walGroup{first: first, last: last, time: int64(binary.LittleEndian.Uint64(body[8:]))}
	d := decoder{b: body[16:]}
	g.keys = d.int()
	d.int()
	var rec eventRecord
	for rev := first; rev <= last; rev++ {
		n := d.int()
		if d.err != nil {
			break
		}
		if n < 1 || n > int64(len(d.b)) {
			return walGroup{}, fmt.Errorf("%w: %d events at revision %d", errWALCorrupt, n, rev)
		}
		b := Batch{Revision: rev, Events: make([]Event, n)}
		for i := range b.Events {
			raw := d.bytes()
			if d.err != nil {
				break
			}
			if err := decodeEvent(raw, &rec, false); err != nil {
				return walGroup{}, fmt.Errorf("%w: revision %d: %v", errWALCorrupt, rev, err)
			}
			e := &b.Events[i]
			e.Type, e.Sub = rec.typ, int32(i)
			e.KV = KeyValue{Key: rec.key, ModRevision: rev}
			if rec.typ == EventPut {
				e.KV.Value, e.KV.CreateRevision, e.KV.Version = rec.value, rec.create, rec.version
				if e.KV.Value == nil {
					e.KV.Value = []byte{}
				}
			}
			if rec.hasPrev {
				p := rec.prev
				p.Key = rec.key
				if p.Value == nil {
					p.Value = []byte{}
				}
				e.PrevKV = &p
			}
			g.size += eventSize(e)
		}
		if d.err != nil {
			break
		}
		g.batches = append(g.batches, b)
	}
	if d.err != nil {
		return walGroup{}, fmt.Errorf("%w: %v", errWALCorrupt, d.err)
	}
	if len(d.b) != 0 {
		return walGroup{}, fmt.Errorf("%w: %d trailing bytes", errWALCorrupt, len(d.b))
	}
	return g, nil
}

// walSegment is one segment file.
type walSegment struct {
	first int64
	path  string
}

// listWAL returns dir's segments in revision order.
func listWAL(dir string) ([]walSegment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []walSegment
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, walExt) || e.IsDir() {
			continue
		}
		first, err := strconv.ParseInt(strings.TrimSuffix(name, walExt), 10, 64)
		if err != nil || first < 1 {
			return nil, fmt.Errorf("%w: unexpected file %s", errWALCorrupt, name)
		}
		segs = append(segs, walSegment{first: first, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b walSegment) int { return cmpInt(a.first, b.first) })
	return segs, nil
}

// readWAL reads the records of the segments above revision applied. The
// log ends at the first zero length of the last segment holding records,
// or at a torn record (short or bad CRC) when nothing valid follows it: no
// record is written before the previous one is durable, so only the last
// can be torn. A torn record followed by a valid one, in the same segment
// or a later one, is corruption. The records must continue applied without
// a gap.
func readWAL(segs []walSegment, applied int64) ([]walGroup, error) {
	var groups []walGroup
	next := applied + 1
	for i, seg := range segs {
		data, err := os.ReadFile(seg.path)
		if err != nil {
			return nil, fmt.Errorf("kv: read log: %w", err)
		}
		off := 0
		for off < len(data) {
			body, n, st := parseWALRecord(data[off:])
			if st == recordEnd {
				break
			}
			if st == recordBad {
				if validAfterBad(data[off:]) || laterValid(segs[i+1:]) {
					return nil, fmt.Errorf("%w: bad record at offset %d of %s followed by valid records", errWALCorrupt, off, seg.path)
				}
				return groups, nil // torn tail
			}
			first, last, err := walRecordRevs(body)
			if err != nil {
				return nil, fmt.Errorf("%s at offset %d: %w", seg.path, off, err)
			}
			off += n
			if last <= applied {
				continue
			}
			if first != next {
				return nil, fmt.Errorf("%w: %s at offset %d holds revision %d, want %d", errWALCorrupt, seg.path, off-n, first, next)
			}
			g, err := decodeWALRecord(body)
			if err != nil {
				return nil, fmt.Errorf("%s at offset %d: %w", seg.path, off-n, err)
			}
			groups = append(groups, g)
			next = last + 1
		}
	}
	return groups, nil
}

// validAfterBad reports whether a valid record follows the bad record at
// the start of b, where its length says it ends.
func validAfterBad(b []byte) bool {
	if len(b) < walHeaderLen {
		return false
	}
	l := uint64(binary.LittleEndian.Uint32(b))
	if l > uint64(len(b)-walHeaderLen) {
		return false
	}
	_, _, st := parseWALRecord(b[walHeaderLen+int(l):])
	return st == recordOK
}

// laterValid reports whether any of segs starts with a valid record.
func laterValid(segs []walSegment) bool {
	for _, seg := range segs {
		f, err := os.Open(seg.path)
		if err != nil {
			continue
		}
		var hdr [walHeaderLen]byte
		if _, err := f.ReadAt(hdr[:], 0); err == nil {
			l := int64(binary.LittleEndian.Uint32(hdr[:]))
			if l >= walMinBody && l <= maxWALRecord {
				buf := make([]byte, walHeaderLen+l)
				if _, err := f.ReadAt(buf, 0); err == nil {
					if _, _, st := parseWALRecord(buf); st == recordOK {
						f.Close()
						return true
					}
				}
			}
		}
		f.Close()
	}
	return false
}

// wal appends records to the log. append is called by the committer only;
// release by checkpoints.
type wal struct {
	dir     string
	noSync  bool
	segSize int64
	hook    func(string)

	// mu guards segs, the segments in revision order; the last is f.
	mu   sync.Mutex
	segs []walSegment

	f    *os.File
	off  int64 // where the next record goes
	size int64 // preallocated size of f
	// err, once set, fails every later append: after a failed write or
	// fdatasync the file's state is unknown.
	err error
}

// append writes rec, the record of the group starting at revision first,
// and waits until it is durable.
func (w *wal) append(rec []byte, first int64) error {
	if w.err != nil {
		return w.err
	}
	if w.f == nil || w.off+int64(len(rec)) > w.size {
		if err := w.newSegment(first, int64(len(rec))); err != nil {
			return err
		}
	}
	if _, err := w.f.WriteAt(rec, w.off); err != nil {
		w.err = fmt.Errorf("kv: write log: %w", err)
		return w.err
	}
	w.hook("wal-written")
	if !w.noSync {
		if err := fdatasync(w.f); err != nil {
			w.err = fmt.Errorf("kv: sync log: %w", err)
			return w.err
		}
	}
	w.off += int64(len(rec))
	return nil
}

// newSegment starts a segment for revisions from first on, with room for
// at least need bytes. A failure leaves the current segment in use.
func (w *wal) newSegment(first, need int64) error {
	size := max(w.segSize, need)
	path := filepath.Join(w.dir, fmt.Sprintf("%020d%s", first, walExt))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("kv: new log segment: %w", err)
	}
	err = preallocate(f, size)
	if err == nil && !w.noSync {
		if err = f.Sync(); err == nil {
			err = syncDir(w.dir)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("kv: new log segment: %w", err)
	}
	if w.f != nil {
		w.f.Close()
	}
	w.mu.Lock()
	w.segs = append(w.segs, walSegment{first: first, path: path})
	w.mu.Unlock()
	w.f, w.off, w.size = f, 0, size
	return nil
}

// release deletes the segments whose records are all at or below applied,
// which bbolt holds. The segment being appended to is kept.
func (w *wal) release(applied int64) error {
	w.mu.Lock()
	n := 0
	for n+1 < len(w.segs) && w.segs[n+1].first <= applied+1 {
		n++
	}
	drop := slices.Clone(w.segs[:n])
	w.segs = slices.Delete(w.segs, 0, n)
	w.mu.Unlock()
	var errs []error
	for _, seg := range drop {
		if err := os.Remove(seg.path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// close closes the segment being appended to.
func (w *wal) close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// syncDir fsyncs directory dir, making the creation or removal of its
// entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
