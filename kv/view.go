package kv

import (
	"bytes"
	"context"

	bolt "go.etcd.io/bbolt"
)

// view is a consistent read of the store: a bbolt read transaction, which
// holds every revision up to applied (its kv bucket is the keyspace at
// applied), and the overlay's memtables, whose versions above applied and
// at or below the revision read complete it. Reads at a revision below
// applied are served by bbolt alone (the index); reads at applied or above
// merge the overlay over the kv bucket, as etcd's backend merges its write
// buffer over bbolt.
type view struct {
	tx      *bolt.Tx
	kvb     *bolt.Bucket
	kvc     *bolt.Cursor // on kvb, made by get; nil until then
	applied int64        // revision bbolt holds
	compact int64        // compact revision of the bbolt view
	// top is the highest revision the view serves: the published
	// revision loaded before the view started, or applied when a
	// checkpoint of revisions published since then is already in bbolt.
	top int64
	// mts are the memtables that may hold revisions above applied,
	// newest first, with their published states.
	mts [2]*memtable
	sts [2]*memState
	n   int
}

// newView builds a view on tx. ov must have been loaded before tx began
// and published before ov, so that the memtables hold every revision in
// (applied, top].
func newView(tx *bolt.Tx, ov *overlay, published int64) (view, error) {
	applied, compact, err := readRevs(tx)
	if err != nil {
		return view{}, err
	}
	v := view{tx: tx, kvb: tx.Bucket(bucketKV), applied: applied, compact: compact, top: max(published, applied)}
	for _, m := range []*memtable{ov.mem, ov.imm} {
		if m == nil {
			continue
		}
		st := m.st.Load()
		if m != ov.mem && m.lo+int64(len(st.batches)) <= applied {
			continue // already in bbolt
		}
		v.mts[v.n], v.sts[v.n] = m, st
		v.n++
	}
	return v, nil
}

// read runs fn on a view of the published revision.
func (s *Store) read(fn func(v *view) error) error {
	// Loaded in this order, before the transaction begins: the committer
	// adds a group to the overlay before publishing it, and a checkpoint
	// commits to bbolt before dropping a memtable.
	published := s.rev.Load()
	ov := s.ov.Load()
	return s.view(func(tx *bolt.Tx) error {
		v, err := newView(tx, ov, published)
		if err != nil {
			return err
		}
		return fn(&v)
	})
}

// get returns key's version at rev (rev >= applied) and whether it is live
// there. The version's slices alias the overlay or the bbolt view.
func (v *view) get(key []byte, rev int64) (KeyValue, bool, error) {
	for i := 0; i < v.n; i++ {
		if n := v.mts[i].keys.find(key); n != nil {
			if e, ok := n.vers.Load().latest(v.applied, rev); ok {
				if e.Type == EventDelete {
					return KeyValue{}, false, nil
				}
				return e.KV, true, nil
			}
		}
	}
	if v.kvc == nil {
		v.kvc = v.kvb.Cursor()
	}
	k, raw := v.kvc.Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return KeyValue{}, false, nil
	}
	create, mod, version, value, err := decodeCurrent(raw)
	if err != nil {
		return KeyValue{}, false, err
	}
	return KeyValue{Key: k, Value: value, CreateRevision: create, ModRevision: mod, Version: version}, true, nil
}

// scan calls fn with every key live at rev (rev >= applied) in [key, end)
// (end set), in key order, checking ctx every 1024 keys. The versions'
// slices alias the overlay or the bbolt view.
func (v *view) scan(ctx context.Context, key, end []byte, rev int64, fn func(kv KeyValue) error) error {
	if !inRange(key, key, end) {
		return nil
	}
	c := v.kvb.Cursor()
	bk, braw := c.Seek(key)
	if bk != nil && !inRange(bk, key, end) {
		bk = nil
	}
	var heads [2]*skipNode
	for i := 0; i < v.n; i++ {
		heads[i] = v.mts[i].keys.seek(key, nil)
		if heads[i] != nil && !inRange(heads[i].key, key, end) {
			heads[i] = nil
		}
	}
	for n := 1; ; n++ {
		var k []byte
		if bk != nil {
			k = bk
		}
		for i := 0; i < v.n; i++ {
			if h := heads[i]; h != nil && (k == nil || bytes.Compare(h.key, k) < 0) {
				k = h.key
			}
		}
		if k == nil {
			return nil
		}
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var kv KeyValue
		live, resolved := false, false
		var at [2]bool
		for i := 0; i < v.n; i++ {
			h := heads[i]
			if h == nil || !bytes.Equal(h.key, k) {
				continue
			}
			at[i] = true
			if resolved {
				continue
			}
			if e, ok := h.vers.Load().latest(v.applied, rev); ok {
				resolved = true
				if e.Type == EventPut {
					kv, live = e.KV, true
				}
			}
		}
		atBolt := bk != nil && bytes.Equal(bk, k)
		if !resolved && atBolt {
			create, mod, version, value, err := decodeCurrent(braw)
			if err != nil {
				return err
			}
			kv, live = KeyValue{Key: bk, Value: value, CreateRevision: create, ModRevision: mod, Version: version}, true
		}
		if live {
			if err := fn(kv); err != nil {
				return err
			}
		}
		for i := 0; i < v.n; i++ {
			if at[i] {
				heads[i] = heads[i].next[0].Load()
				if heads[i] != nil && !inRange(heads[i].key, key, end) {
					heads[i] = nil
				}
			}
		}
		if atBolt {
			bk, braw = c.Next()
			if bk != nil && !inRange(bk, key, end) {
				bk = nil
			}
		}
	}
}

// batch returns the events of revision rev (applied < rev <= top) from
// the overlay.
func (v *view) batch(rev int64) (Batch, bool) {
	for i := 0; i < v.n; i++ {
		m, st := v.mts[i], v.sts[i]
		if rev > m.lo && rev <= m.lo+int64(len(st.batches)) {
			return st.batches[rev-m.lo-1], true
		}
	}
	return Batch{}, false
}

// rangeView reads the keyspace at rev (rev >= applied) through the view,
// copying keys and values into a.
func rangeView(ctx context.Context, v *view, key, end []byte, rev, limit int64, keysOnly, countOnly bool, a *arena) (RangeResult, error) {
	var res RangeResult
	if len(end) == 0 {
		if len(key) == 0 {
			return res, nil
		}
		kv, ok, err := v.get(key, rev)
		if err != nil || !ok {
			return res, err
		}
		res.Count = 1
		if !countOnly {
			res.KVs = []KeyValue{copyKV(kv, keysOnly, a)}
		}
		return res, nil
	}
	err := v.scan(ctx, key, end, rev, func(kv KeyValue) error {
		res.Count++
		if countOnly || (limit > 0 && int64(len(res.KVs)) >= limit) {
			return nil
		}
		res.KVs = append(res.KVs, copyKV(kv, keysOnly, a))
		return nil
	})
	if err != nil {
		return RangeResult{}, err
	}
	res.More = !countOnly && limit > 0 && res.Count > limit
	return res, nil
}

// copyKV copies kv's key and, unless keysOnly, value into a.
func copyKV(kv KeyValue, keysOnly bool, a *arena) KeyValue {
	out := KeyValue{Key: a.copy(kv.Key), CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision, Version: kv.Version}
	if !keysOnly {
		out.Value = a.alloc(len(kv.Value))
		copy(out.Value, kv.Value)
	}
	return out
}
