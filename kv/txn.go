package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Txn runs an etcd-style transaction through group commit. It returns after
// the transaction is durable (fsynced) and after its events were handed to
// the commit subscribers. A transaction that writes nothing (only gets, or a
// put/delete branch that changed nothing... a delete of 0 keys) creates no
// revision.
//
// The compares are checked and the branch runs on the state left by every
// transaction committed before it; the branch's gets see its own earlier
// writes, as in etcd. A key may be written more than once in one
// transaction: each write is an event of the same revision, with the next
// sub-revision. A transaction with no put or delete in either branch runs
// on a read view without queuing. ctx is checked before the transaction is
// queued; once queued it is not abandoned. The response's slices and
// pointers are owned by the caller but share memory with the events handed
// to subscribers, so they must not be modified.
func (s *Store) Txn(ctx context.Context, t TxnRequest) (TxnResponse, error) {
	if err := s.checkCall(ctx); err != nil {
		return TxnResponse{}, err
	}
	size, writes, err := s.validate(&t)
	if err != nil {
		return TxnResponse{}, err
	}
	if !writes {
		return s.readTxn(ctx, t, size)
	}
	r := getRequest()
	r.txn = t
	r.size = size
	resp, err := s.write(r)
	putRequest(r)
	return resp, err
}

// Put and Delete are shorthands for a one-op Txn.
func (s *Store) Put(ctx context.Context, key, value []byte) (TxnResponse, error) {
	if err := s.checkCall(ctx); err != nil {
		return TxnResponse{}, err
	}
	r := getRequest()
	r.ops[0] = Op{Type: OpPut, Key: key, Value: value}
	return s.writeOne(r)
}

// Delete deletes key (end nil) or the range [key, end), as RangeRequest
// selects. Deleting keys that do not exist writes nothing.
func (s *Store) Delete(ctx context.Context, key, end []byte) (TxnResponse, error) {
	if err := s.checkCall(ctx); err != nil {
		return TxnResponse{}, err
	}
	r := getRequest()
	r.ops[0] = Op{Type: OpDelete, Key: key, End: end}
	return s.writeOne(r)
}

func (s *Store) writeOne(r *request) (TxnResponse, error) {
	if err := s.validateOp(&r.ops[0]); err != nil {
		putRequest(r)
		return TxnResponse{}, err
	}
	r.txn.Success = r.ops[:]
	r.size = len(r.ops[0].Key) + len(r.ops[0].End) + len(r.ops[0].Value)
	resp, err := s.write(r)
	putRequest(r)
	return resp, err
}

// validate checks t against the store's limits and reports its size and
// whether either branch writes.
func (s *Store) validate(t *TxnRequest) (size int, writes bool, err error) {
	limit := s.opts.MaxTxnOps
	if len(t.Compare) > limit || len(t.Success) > limit || len(t.Failure) > limit {
		return 0, false, fmt.Errorf("%w: %d compares, %d and %d operations (limit %d)",
			ErrTooManyOps, len(t.Compare), len(t.Success), len(t.Failure), limit)
	}
	for i := range t.Compare {
		c := &t.Compare[i]
		if c.Target > CompareValue || c.Op > CompareGreater {
			return 0, false, fmt.Errorf("%w: target %d, op %d", ErrInvalidCompare, c.Target, c.Op)
		}
		if len(c.Key) > s.opts.MaxKeySize {
			return 0, false, fmt.Errorf("%w: %d bytes (limit %d)", ErrKeyTooLarge, len(c.Key), s.opts.MaxKeySize)
		}
		size += len(c.Key) + len(c.Value)
	}
	for _, ops := range [2][]Op{t.Success, t.Failure} {
		for i := range ops {
			if err := s.validateOp(&ops[i]); err != nil {
				return 0, false, err
			}
			if ops[i].Type != OpGet {
				writes = true
			}
			size += len(ops[i].Key) + len(ops[i].End) + len(ops[i].Value)
		}
	}
	return size, writes, nil
}

func (s *Store) validateOp(op *Op) error {
	if len(op.Key) > s.opts.MaxKeySize || len(op.End) > s.opts.MaxKeySize {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrKeyTooLarge, max(len(op.Key), len(op.End)), s.opts.MaxKeySize)
	}
	switch op.Type {
	case OpGet:
	case OpPut:
		if len(op.Key) == 0 {
			return ErrEmptyKey
		}
		if len(op.Value) > s.opts.MaxValueSize {
			return fmt.Errorf("%w: %d bytes (limit %d)", ErrValueTooLarge, len(op.Value), s.opts.MaxValueSize)
		}
	case OpDelete:
		if len(op.Key) == 0 && len(op.End) == 0 {
			return ErrEmptyKey
		}
	default:
		return fmt.Errorf("kv: invalid operation type %d", op.Type)
	}
	return nil
}

// errUnpublished stops a read-only transaction whose view holds a group
// commit not yet published.
var errUnpublished = errors.New("kv: view ahead of the published revision")

// readTxn runs a transaction without writes on a read view of the published
// revision. When the file already holds a group commit still being
// published (its compares would need the state of an older revision), the
// transaction goes through the committer instead, which runs it after that
// group is published; it writes nothing, so it creates no revision.
func (s *Store) readTxn(ctx context.Context, t TxnRequest, size int) (TxnResponse, error) {
	// Loaded before the view starts, so it is at most the view's revision.
	published := s.rev.Load()
	var resp TxnResponse
	err := s.view(func(tx *bolt.Tx) error {
		rev, _, err := readRevs(tx)
		if err != nil {
			return err
		}
		if rev != published {
			return errUnpublished
		}
		b := tx.Bucket(bucketKV)
		ok, err := compareAll(b, t.Compare)
		if err != nil {
			return err
		}
		ops := t.Success
		if !ok {
			ops = t.Failure
		}
		var a arena
		resp = TxnResponse{Succeeded: ok, Revision: rev, Responses: make([]OpResult, len(ops))}
		for i := range ops {
			op := &ops[i]
			rr, err := rangeCurrent(ctx, b, op.Key, op.End, op.Limit, op.KeysOnly, op.CountOnly, &a)
			if err != nil {
				return err
			}
			rr.Rev = rev
			resp.Responses[i] = OpResult{Type: OpGet, Range: &rr}
		}
		return nil
	})
	if errors.Is(err, errUnpublished) {
		r := getRequest()
		r.txn = t
		r.size = size
		resp, err = s.write(r)
		putRequest(r)
	}
	if err != nil {
		return TxnResponse{}, err
	}
	return resp, nil
}

// compareAll reports whether every compare holds on the kv bucket b.
func compareAll(b *bolt.Bucket, cmps []Compare) (bool, error) {
	for i := range cmps {
		ok, err := compare(b, &cmps[i])
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// compare checks one compare as etcd does: a missing key has version,
// create and mod revision 0, and fails every value compare.
func compare(b *bolt.Bucket, c *Compare) (bool, error) {
	var create, mod, version int64
	var value []byte
	found := false
	if len(c.Key) > 0 {
		if raw := b.Get(c.Key); raw != nil {
			var err error
			if create, mod, version, value, err = decodeCurrent(raw); err != nil {
				return false, err
			}
			found = true
		}
	}
	var r int
	switch c.Target {
	case CompareValue:
		if !found {
			return false, nil
		}
		r = bytes.Compare(value, c.Value)
	case CompareVersion:
		r = cmpInt(version, c.Number)
	case CompareCreate:
		r = cmpInt(create, c.Number)
	case CompareMod:
		r = cmpInt(mod, c.Number)
	default:
		return false, ErrInvalidCompare
	}
	switch c.Op {
	case CompareEqual:
		return r == 0, nil
	case CompareNotEqual:
		return r != 0, nil
	case CompareLess:
		return r < 0, nil
	case CompareGreater:
		return r > 0, nil
	}
	return false, ErrInvalidCompare
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// apply runs request r's transaction in the group's bbolt transaction at
// revision rev and reports whether it wrote anything (and so used rev).
// An error is a storage failure that fails the whole group.
func (g *group) apply(r *request, rev int64) (wrote bool, err error) {
	t := &r.txn
	ok, err := compareAll(g.kv, t.Compare)
	if err != nil {
		return false, err
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	res := g.results.take(len(ops))
	start := len(g.events)
	var sub int32
	for i := range ops {
		op := &ops[i]
		switch op.Type {
		case OpGet:
			rr := g.ranges.one()
			if *rr, err = rangeCurrent(context.Background(), g.kv, op.Key, op.End, op.Limit, op.KeysOnly, op.CountOnly, &g.ev); err != nil {
				return false, err
			}
			res[i] = OpResult{Type: OpGet, Range: rr}
		case OpPut:
			if res[i], err = g.put(op.Key, op.Value, rev, &sub); err != nil {
				return false, err
			}
		case OpDelete:
			if res[i], err = g.del(op.Key, op.End, rev, &sub); err != nil {
				return false, err
			}
		}
	}
	r.resp = TxnResponse{Succeeded: ok, Responses: res}
	if len(g.events) == start {
		return false, nil
	}
	g.spans = append(g.spans, span{rev: rev, start: start, end: len(g.events)})
	return true, nil
}

// put writes one new version of key.
func (g *group) put(key, value []byte, rev int64, sub *int32) (OpResult, error) {
	k := g.ev.copy(key)
	var prev *KeyValue
	create, version := rev, int64(1)
	if raw := g.current(key); raw != nil {
		c, m, v, val, err := decodeCurrent(raw)
		if err != nil {
			return OpResult{}, err
		}
		prev = g.kvs.one()
		*prev = KeyValue{Key: k, Value: g.ev.copy(val), CreateRevision: c, ModRevision: m, Version: v}
		create, version = c, v+1
	} else {
		g.keys++
	}
	val := g.ev.alloc(len(value))
	copy(val, value)
	n := currentLen(val)
	cur := g.enc.finish(appendCurrent(g.enc.grow(n), create, rev, version, val), n)
	if err := g.kv.Put(k, cur); err != nil {
		return OpResult{}, err
	}
	s := *sub
	*sub++
	if err := g.record(EventPut, k, create, version, val, prev, rev, s); err != nil {
		return OpResult{}, err
	}
	g.events = append(g.events, Event{
		Type:   EventPut,
		KV:     KeyValue{Key: k, Value: val, CreateRevision: create, ModRevision: rev, Version: version},
		Sub:    s,
		PrevKV: prev,
	})
	res := g.kvs.one()
	*res = KeyValue{Key: k, CreateRevision: create, ModRevision: rev, Version: version}
	return OpResult{Type: OpPut, KV: res, PrevKV: prev}, nil
}

// current returns the encoded current version of key in the kv bucket, or
// nil. It is kv.Get through the group's cursor, whose path stack is kept
// from one lookup to the next rather than allocated for each.
func (g *group) current(key []byte) []byte {
	if g.kvc == nil {
		g.kvc = g.kv.Cursor()
	}
	k, v := g.kvc.Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil
	}
	return v
}

// del deletes key, or the live keys in [key, end), in key order.
func (g *group) del(key, end []byte, rev int64, sub *int32) (OpResult, error) {
	g.prevs = g.prevs[:0]
	if len(end) == 0 {
		if raw := g.current(key); raw != nil {
			kv, err := decodeCurrentKV(key, raw, false, &g.ev)
			if err != nil {
				return OpResult{}, err
			}
			g.prevs = append(g.prevs, kv)
		}
	} else if inRange(key, key, end) {
		c := g.kv.Cursor()
		for k, v := c.Seek(key); k != nil && inRange(k, key, end); k, v = c.Next() {
			kv, err := decodeCurrentKV(k, v, false, &g.ev)
			if err != nil {
				return OpResult{}, err
			}
			g.prevs = append(g.prevs, kv)
		}
	}
	if len(g.prevs) == 0 {
		return OpResult{Type: OpDelete}, nil
	}
	prevs := g.kvs.take(len(g.prevs))
	copy(prevs, g.prevs)
	clear(g.prevs)
	for i := range prevs {
		prev := &prevs[i]
		if err := g.kv.Delete(prev.Key); err != nil {
			return OpResult{}, err
		}
		g.keys--
		s := *sub
		*sub++
		if err := g.record(EventDelete, prev.Key, 0, 0, nil, prev, rev, s); err != nil {
			return OpResult{}, err
		}
		g.events = append(g.events, Event{
			Type:   EventDelete,
			KV:     KeyValue{Key: prev.Key, ModRevision: rev},
			Sub:    s,
			PrevKV: prev,
		})
	}
	return OpResult{Type: OpDelete, Deleted: int64(len(prevs)), PrevKVs: prevs}, nil
}

// record writes an event's history record and index entry. Every slice
// given to bbolt stays untouched until the commit: it comes from g.ev or
// g.enc.
func (g *group) record(typ EventType, key []byte, create, version int64, value []byte, prev *KeyValue, rev int64, sub int32) error {
	hk := g.enc.alloc(revKeyLen)
	putRevKey(hk, rev, sub)
	n := eventLen(key, value, prev)
	rec := g.enc.finish(appendEvent(g.enc.grow(n), typ, key, create, version, value, prev), n)
	if err := g.hist.Put(hk, rec); err != nil {
		return err
	}
	n = escapedLen(key) + revKeyLen
	ik := g.enc.finish(append(appendEscaped(g.enc.grow(n), key), hk...), n)
	iv := indexPut
	if typ == EventDelete {
		iv = indexDelete
	}
	return g.idx.Put(ik, iv)
}

// inRange reports whether k is in the range [key, end) with end set; end
// []byte{0} means every key from key on.
func inRange(k, key, end []byte) bool {
	if isAllEnd(end) {
		return bytes.Compare(k, key) >= 0
	}
	return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
}

// isAllEnd reports whether end is etcd's "every key from Key on".
func isAllEnd(end []byte) bool { return len(end) == 1 && end[0] == 0 }
