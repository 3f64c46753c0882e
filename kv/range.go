package kv

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Range reads keys at r.Rev (0 = current). The current revision is the
// published one, as Revisions reports it: the last one acknowledged to its
// writer and handed to the subscribers, never a group commit still on its
// way; RangeResult.Rev is the revision read. A *CompactedError (matching
// ErrCompacted) below the compact revision, ErrFutureRev above the current
// one. A read at the current revision is served from the kv bucket when the
// file holds nothing newer (the common case), otherwise, like a read at a
// past revision, from the per-key index, one seek per key in the range.
// Count covers every key in the range, so a limited read still walks the
// whole range (as etcd). An empty Key with End nil selects nothing.
func (s *Store) Range(ctx context.Context, r RangeRequest) (RangeResult, error) {
	if err := s.checkCall(ctx); err != nil {
		return RangeResult{}, err
	}
	// Loaded before the view starts: the view holds at least this revision
	// (the committer publishes a group after committing it).
	published := s.rev.Load()
	var res RangeResult
	err := s.view(func(tx *bolt.Tx) error {
		cur, compact, err := readRevs(tx)
		if err != nil {
			return err
		}
		compact = s.readFloor(compact)
		rev := r.Rev
		if rev == 0 {
			rev = published
		}
		var a arena
		switch {
		case rev > published:
			return fmt.Errorf("%w: revision %d, current revision %d", ErrFutureRev, rev, published)
		case rev < compact:
			return &CompactedError{Requested: rev, Compact: compact}
		case rev == cur:
			res, err = rangeCurrent(ctx, tx.Bucket(bucketKV), r.Key, r.End, r.Limit, r.KeysOnly, r.CountOnly, &a)
		default:
			res, err = rangeAt(ctx, tx, r.Key, r.End, rev, r.Limit, r.KeysOnly, r.CountOnly, &a)
		}
		res.Rev = rev
		return err
	})
	if err != nil {
		return RangeResult{}, err
	}
	return res, nil
}

// rangeCurrent reads the current state from the kv bucket b, copying keys
// and values into a, and checking ctx every 1024 keys.
func rangeCurrent(ctx context.Context, b *bolt.Bucket, key, end []byte, limit int64, keysOnly, countOnly bool, a *arena) (RangeResult, error) {
	var res RangeResult
	if len(end) == 0 {
		if len(key) == 0 {
			return res, nil
		}
		raw := b.Get(key)
		if raw == nil {
			return res, nil
		}
		res.Count = 1
		if countOnly {
			return res, nil
		}
		kv, err := decodeCurrentKV(key, raw, keysOnly, a)
		if err != nil {
			return RangeResult{}, err
		}
		res.KVs = []KeyValue{kv}
		return res, nil
	}
	if !inRange(key, key, end) {
		return res, nil
	}
	c := b.Cursor()
	for k, v := c.Seek(key); k != nil && inRange(k, key, end); k, v = c.Next() {
		res.Count++
		if res.Count&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return RangeResult{}, err
			}
		}
		if countOnly || (limit > 0 && int64(len(res.KVs)) >= limit) {
			continue
		}
		kv, err := decodeCurrentKV(k, v, keysOnly, a)
		if err != nil {
			return RangeResult{}, err
		}
		res.KVs = append(res.KVs, kv)
	}
	res.More = !countOnly && limit > 0 && res.Count > limit
	return res, nil
}

// decodeCurrentKV decodes a kv bucket entry, copying key and value into a.
func decodeCurrentKV(key, raw []byte, keysOnly bool, a *arena) (KeyValue, error) {
	create, mod, version, value, err := decodeCurrent(raw)
	if err != nil {
		return KeyValue{}, err
	}
	kv := KeyValue{Key: a.copy(key), CreateRevision: create, ModRevision: mod, Version: version}
	if !keysOnly {
		kv.Value = a.alloc(len(value))
		copy(kv.Value, value)
	}
	return kv, nil
}

// rangeAt reads the range at past revision rev from the index: for each key
// it seeks to the key's last entry at or below rev (skipping its later
// versions), takes it when it is a put, and moves on to the next key.
func rangeAt(ctx context.Context, tx *bolt.Tx, key, end []byte, rev, limit int64, keysOnly, countOnly bool, a *arena) (RangeResult, error) {
	var res RangeResult
	x := indexReader{c: tx.Bucket(bucketIndex).Cursor(), hist: tx.Bucket(bucketHistory).Cursor()}
	putRevKey(x.suffix[:], rev, -1)
	take := func(hk []byte) error {
		res.Count++
		if countOnly || (limit > 0 && int64(len(res.KVs)) >= limit) {
			return nil
		}
		kv, err := x.load(hk, keysOnly, a)
		if err != nil {
			return err
		}
		res.KVs = append(res.KVs, kv)
		return nil
	}
	if len(end) == 0 {
		if len(key) == 0 {
			return res, nil
		}
		hk, _, _, err := x.latest(appendEscaped(nil, key))
		if err == nil && hk != nil {
			err = take(hk)
		}
		return res, err
	}
	if !inRange(key, key, end) {
		return res, nil
	}
	var endP []byte
	if !isAllEnd(end) {
		endP = appendEscaped(nil, end)
	}
	var seek []byte
	k, _ := x.c.Seek(appendEscaped(nil, key))
	for n := 0; k != nil; n++ {
		if n&1023 == 1023 {
			if err := ctx.Err(); err != nil {
				return RangeResult{}, err
			}
		}
		p, _, _, err := splitIndexKey(k)
		if err != nil {
			return RangeResult{}, err
		}
		if endP != nil && bytes.Compare(p, endP) >= 0 {
			break
		}
		hk, next, nextKnown, err := x.latest(p)
		if err != nil {
			return RangeResult{}, err
		}
		if hk != nil {
			if err := take(hk); err != nil {
				return RangeResult{}, err
			}
		}
		if nextKnown {
			k = next
			continue
		}
		// Later versions of p follow: jump past all of p's entries. The
		// terminator 0x00 0x01 becomes 0x00 0x02, above every entry of p
		// and below the next key (whose escaped form continues p's
		// escaped key with 0x00 0xff or with a byte >= 0x01 in place of
		// the terminator's 0x00).
		seek = append(append(seek[:0], p[:len(p)-1]...), 2)
		k, _ = x.c.Seek(seek)
	}
	res.More = !countOnly && limit > 0 && res.Count > limit
	return res, nil
}

// indexReader finds versions of keys at a past revision.
type indexReader struct {
	c      *bolt.Cursor
	hist   *bolt.Cursor    // a cursor, not Bucket.Get: Get allocates a cursor each time
	suffix [revKeyLen]byte // (rev, 0xffffffff): above every entry <= rev
	buf    []byte
	rec    eventRecord
}

// latest finds the last index entry of escaped key p at or below the
// reader's revision. It returns the entry's history key when that entry is
// a put (nil when the key did not exist at the revision), and the first
// index key after p's entries when the seek happened to land on it
// (nextKnown; next nil then means there is none).
func (x *indexReader) latest(p []byte) (hk, next []byte, nextKnown bool, err error) {
	x.buf = append(append(x.buf[:0], p...), x.suffix[:]...)
	k, _ := x.c.Seek(x.buf)
	var pk, pv []byte
	if k == nil {
		nextKnown = true
		pk, pv = x.c.Last()
	} else {
		if !isEntryOf(k, p) {
			next, nextKnown = k, true
		}
		pk, pv = x.c.Prev()
	}
	if pk == nil || !isEntryOf(pk, p) {
		return nil, next, nextKnown, nil
	}
	if len(pv) != 1 {
		return nil, nil, false, fmt.Errorf("%w: index value of %d bytes", errCorrupt, len(pv))
	}
	if EventType(pv[0]) == EventPut {
		hk = pk[len(p):]
	}
	return hk, next, nextKnown, nil
}

// load reads the version at history key hk.
func (x *indexReader) load(hk []byte, keysOnly bool, a *arena) (KeyValue, error) {
	k, raw := x.hist.Seek(hk)
	if !bytes.Equal(k, hk) {
		rev, sub := parseRevKey(hk)
		return KeyValue{}, fmt.Errorf("%w: index entry without history at %d.%d", errCorrupt, rev, sub)
	}
	if err := decodeEvent(raw, &x.rec, false); err != nil {
		return KeyValue{}, err
	}
	rev, _ := parseRevKey(hk)
	kv := KeyValue{Key: a.copy(x.rec.key), CreateRevision: x.rec.create, ModRevision: rev, Version: x.rec.version}
	if !keysOnly {
		kv.Value = a.alloc(len(x.rec.value))
		copy(kv.Value, x.rec.value)
	}
	return kv, nil
}

// isEntryOf reports whether index key k is an entry of escaped key p.
func isEntryOf(k, p []byte) bool {
	return len(k) == len(p)+revKeyLen && bytes.Equal(k[:len(p)], p)
}
