package etcdstore

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/watchgate/watchgate/kv"
)

// Range reads keys at r.Rev (0 = current) from etcd, sorted by key. A read
// at the current revision is linearizable, and returns once this gateway's
// feed has delivered the revision it shows (for at most RequestTimeout), so
// that a watch opened next on this gateway starts after it. Errors wrap
// kv.ErrCompacted below etcd's compact revision (the gateway then learns
// that revision before returning) and kv.ErrFutureRev above etcd's
// current revision. An empty Key with End nil selects nothing.
func (s *Store) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	if err := s.check(ctx); err != nil {
		return kv.RangeResult{}, err
	}
	if _, compact := s.Revisions(); r.Rev < 0 || (r.Rev > 0 && r.Rev < compact) {
		return kv.RangeResult{}, fmt.Errorf("%w: revision %d, compact revision %d", kv.ErrCompacted, r.Rev, compact)
	}
	k, opts, none := etcdRange(r.Key, r.End)
	if none {
		// Nothing to select, but the revision is still checked.
		k, opts = "\x00", []clientv3.OpOption{clientv3.WithCountOnly()}
	} else {
		if r.Limit > 0 {
			opts = append(opts, clientv3.WithLimit(r.Limit))
		}
		if r.KeysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		if r.CountOnly {
			opts = append(opts, clientv3.WithCountOnly())
		}
	}
	if r.Rev > 0 {
		opts = append(opts, clientv3.WithRev(r.Rev))
	}
	cctx, cancel := s.callCtx(ctx)
	resp, err := s.cli.Get(cctx, k, opts...)
	cancel()
	if err != nil {
		err = s.err(ctx, "range", err)
		if errors.Is(err, kv.ErrCompacted) {
			s.learnCompacted(ctx)
		}
		return kv.RangeResult{}, err
	}
	res := kv.RangeResult{Rev: r.Rev}
	if !none {
		res.KVs, res.Count, res.More = keyValues(resp.Kvs), resp.Count, resp.More
	}
	if r.Rev == 0 {
		res.Rev = resp.Header.Revision
		s.waitRev(ctx, res.Rev)
	}
	return res, nil
}

// ReadsAtCurrent reports true: Range at revision 0 reads at etcd's current
// revision (a linearizable read) and returns once this gateway's feed has
// published that revision. A caller must pass revision 0 through rather
// than pin the read to Revisions, which lags etcd by the feed's delay: a
// read pinned there could miss a write another gateway acknowledged
// before it began, which is not linearizable.
func (s *Store) ReadsAtCurrent() bool { return true }

// learnCompacted looks the compact revision up after etcd refused a
// revision as compacted, so that Revisions reports it before the caller
// reports the error. A failure is only logged: the next probe retries.
func (s *Store) learnCompacted(ctx context.Context) {
	if err := s.discoverCompact(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("looking the compact revision up")
	}
}

// Txn runs an etcd-style transaction as one etcd transaction. It returns
// after etcd acknowledged it (committed on a quorum) and after this
// gateway's feed delivered the revision it reports to the subscribers (for
// at most RequestTimeout; the write is acknowledged either way).
//
// The request is checked against the limits of Options as the kv store
// does. Unlike the kv store, etcd refuses a branch that writes a key twice:
// ErrDuplicateKey. An error wrapping ErrUnavailable leaves the outcome
// unknown: the transaction may have been applied. The response's put
// results are derived from the previous key-values etcd returns: the new
// version is the previous one plus 1 (1 for a new key), created at the
// previous create revision (the transaction's revision for a new key).
func (s *Store) Txn(ctx context.Context, t kv.TxnRequest) (kv.TxnResponse, error) {
	if err := s.check(ctx); err != nil {
		return kv.TxnResponse{}, err
	}
	if err := s.validate(&t); err != nil {
		return kv.TxnResponse{}, err
	}
	cmps, never := etcdCompares(t.Compare)
	if never {
		// No key has a create revision below 0: the failure branch runs.
		cmps = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision("\x00"), "<", 0)}
	}
	succ, sidx := etcdOps(t.Success)
	fail, fidx := etcdOps(t.Failure)
	cctx, cancel := s.callCtx(ctx)
	resp, err := s.cli.Txn(cctx).If(cmps...).Then(succ...).Else(fail...).Commit()
	cancel()
	if err != nil {
		return kv.TxnResponse{}, s.err(ctx, "transaction", err)
	}
	rev := resp.Header.Revision
	ops, idx := t.Success, sidx
	if !resp.Succeeded {
		ops, idx = t.Failure, fidx
	}
	out := kv.TxnResponse{Succeeded: resp.Succeeded, Revision: rev, Responses: make([]kv.OpResult, len(ops))}
	for i := range ops {
		op := &ops[i]
		if idx[i] < 0 {
			out.Responses[i] = kv.OpResult{Type: kv.OpGet, Range: &kv.RangeResult{Rev: rev}}
			continue
		}
		if idx[i] >= len(resp.Responses) {
			return kv.TxnResponse{}, fmt.Errorf("etcdstore: transaction: %d results for %d operations", len(resp.Responses), len(ops))
		}
		r := resp.Responses[idx[i]]
		switch op.Type {
		case kv.OpGet:
			rr := r.GetResponseRange()
			if rr == nil {
				return kv.TxnResponse{}, fmt.Errorf("etcdstore: transaction: operation %d: no range result", i)
			}
			out.Responses[i] = kv.OpResult{Type: kv.OpGet, Range: &kv.RangeResult{
				KVs: keyValues(rr.Kvs), Count: rr.Count, More: rr.More, Rev: rev}}
		case kv.OpPut:
			pr := r.GetResponsePut()
			if pr == nil {
				return kv.TxnResponse{}, fmt.Errorf("etcdstore: transaction: operation %d: no put result", i)
			}
			prev := keyValuePtr(pr.PrevKv)
			nkv := &kv.KeyValue{Key: append([]byte(nil), op.Key...), CreateRevision: rev, ModRevision: rev, Version: 1}
			if prev != nil {
				nkv.CreateRevision, nkv.Version = prev.CreateRevision, prev.Version+1
			}
			out.Responses[i] = kv.OpResult{Type: kv.OpPut, KV: nkv, PrevKV: prev}
		case kv.OpDelete:
			dr := r.GetResponseDeleteRange()
			if dr == nil {
				return kv.TxnResponse{}, fmt.Errorf("etcdstore: transaction: operation %d: no delete result", i)
			}
			out.Responses[i] = kv.OpResult{Type: kv.OpDelete, Deleted: dr.Deleted, PrevKVs: keyValues(dr.PrevKvs)}
		}
	}
	// Also without a write: the revision reported is then one the
	// gateway's watchers have been shown.
	s.waitRev(ctx, rev)
	return out, nil
}

// Put and Delete are shorthands for a one-op Txn.
func (s *Store) Put(ctx context.Context, key, value []byte) (kv.TxnResponse, error) {
	return s.Txn(ctx, kv.TxnRequest{Success: []kv.Op{{Type: kv.OpPut, Key: key, Value: value}}})
}

// Delete deletes key (end nil) or the range [key, end), as RangeRequest
// selects. Deleting keys that do not exist writes nothing.
func (s *Store) Delete(ctx context.Context, key, end []byte) (kv.TxnResponse, error) {
	return s.Txn(ctx, kv.TxnRequest{Success: []kv.Op{{Type: kv.OpDelete, Key: key, End: end}}})
}

// validate checks t against the limits of Options, as the kv store does.
func (s *Store) validate(t *kv.TxnRequest) error {
	limit := s.opts.MaxTxnOps
	if len(t.Compare) > limit || len(t.Success) > limit || len(t.Failure) > limit {
		return fmt.Errorf("%w: %d compares, %d and %d operations (limit %d)",
			kv.ErrTooManyOps, len(t.Compare), len(t.Success), len(t.Failure), limit)
	}
	for i := range t.Compare {
		c := &t.Compare[i]
		if c.Target > kv.CompareValue || c.Op > kv.CompareGreater {
			return fmt.Errorf("%w: target %d, op %d", kv.ErrInvalidCompare, c.Target, c.Op)
		}
		if len(c.Key) > s.opts.MaxKeySize {
			return fmt.Errorf("%w: %d bytes (limit %d)", kv.ErrKeyTooLarge, len(c.Key), s.opts.MaxKeySize)
		}
	}
	for _, ops := range [2][]kv.Op{t.Success, t.Failure} {
		for i := range ops {
			op := &ops[i]
			if len(op.Key) > s.opts.MaxKeySize || len(op.End) > s.opts.MaxKeySize {
				return fmt.Errorf("%w: %d bytes (limit %d)", kv.ErrKeyTooLarge, max(len(op.Key), len(op.End)), s.opts.MaxKeySize)
			}
			switch op.Type {
			case kv.OpGet:
			case kv.OpPut:
				if len(op.Key) == 0 {
					return kv.ErrEmptyKey
				}
				if len(op.Value) > s.opts.MaxValueSize {
					return fmt.Errorf("%w: %d bytes (limit %d)", kv.ErrValueTooLarge, len(op.Value), s.opts.MaxValueSize)
				}
			case kv.OpDelete:
				if len(op.Key) == 0 && len(op.End) == 0 {
					return kv.ErrEmptyKey
				}
			default:
				return fmt.Errorf("etcdstore: invalid operation type %d", op.Type)
			}
		}
	}
	return nil
}

// Compact compacts etcd's history at rev: afterwards reads and history
// below rev fail with kv.ErrCompacted on every gateway. kv.ErrFutureRev if
// rev is above etcd's current revision, kv.ErrAlreadyCompacted if rev is at
// or below the compact revision.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, compact := s.Revisions(); rev <= compact {
		return fmt.Errorf("%w: revision %d, compact revision %d", kv.ErrAlreadyCompacted, rev, compact)
	}
	cctx, cancel := s.callCtx(ctx)
	_, err := s.cli.Compact(cctx, rev)
	cancel()
	if err != nil {
		err = s.err(ctx, "compact", err)
		if errors.Is(err, kv.ErrCompacted) {
			s.learnCompacted(ctx)
			_, compact := s.Revisions()
			return fmt.Errorf("%w: revision %d, compact revision %d", kv.ErrAlreadyCompacted, rev, compact)
		}
		return err
	}
	s.noteCompact(rev)
	return nil
}
