package kv

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// History returns the committed events with from <= revision <= to, in
// revision and sub-revision order, grouped by revision, never splitting a
// revision, stopping after the revision that reaches maxEvents events (so a
// single large revision is still returned whole). next is the first revision
// not returned (to+1 when everything up to `to` was returned).
// A *CompactedError (matching ErrCompacted) when from < the compact
// revision. Events carry PrevKV.
//
// A from below 1 means 1; a to of 0, or above the current revision, means
// the current revision as Revisions reports it: the last one handed to the
// subscribers, so History never returns a revision a subscriber registered
// now would still receive. maxEvents <= 0 means no limit. With from beyond to
// nothing is returned and next is from. The events are a consistent view:
// every revision up to to is complete. They are owned by the caller.
func (s *Store) History(ctx context.Context, from, to int64, maxEvents int) (batches []Batch, next int64, err error) {
	if err := s.checkCall(ctx); err != nil {
		return nil, 0, err
	}
	if from < 1 {
		from = 1
	}
	// Loaded before the view starts, so it is at most the view's revision.
	published := s.rev.Load()
	err = s.view(func(tx *bolt.Tx) error {
		cur, compact, err := readRevs(tx)
		if err != nil {
			return err
		}
		compact = s.readFloor(compact)
		cur = min(cur, published)
		if from < compact {
			return &CompactedError{Requested: from, Compact: compact}
		}
		if to <= 0 || to > cur {
			to = cur
		}
		if from > to {
			next = from
			return nil
		}
		batches, next, err = readHistory(ctx, tx, from, to, maxEvents)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return batches, next, nil
}

// readHistory scans the history bucket from revision from to revision to.
func readHistory(ctx context.Context, tx *bolt.Tx, from, to int64, maxEvents int) ([]Batch, int64, error) {
	var (
		a      arena
		prevs  slab[KeyValue]
		events []Event
		spans  []span
		rec    eventRecord
		seek   [revKeyLen]byte
	)
	if maxEvents > 0 {
		events = make([]Event, 0, min(maxEvents+maxEvents/4, 4096))
	}
	next := to + 1
	putRevKey(seek[:], from, 0)
	c := tx.Bucket(bucketHistory).Cursor()
	for k, v := c.Seek(seek[:]); k != nil; k, v = c.Next() {
		if len(k) != revKeyLen {
			return nil, 0, fmt.Errorf("%w: history key of %d bytes", errCorrupt, len(k))
		}
		rev, sub := parseRevKey(k)
		if rev > to {
			break
		}
		if n := len(spans); n == 0 || spans[n-1].rev != rev {
			if maxEvents > 0 && len(events) >= maxEvents {
				next = rev
				break
			}
			if len(spans)&1023 == 1023 {
				if err := ctx.Err(); err != nil {
					return nil, 0, err
				}
			}
			spans = append(spans, span{rev: rev, start: len(events)})
		}
		if err := decodeEvent(v, &rec, false); err != nil {
			return nil, 0, fmt.Errorf("history at %d.%d: %w", rev, sub, err)
		}
		e := Event{Type: rec.typ, Sub: sub}
		e.KV.Key = a.copy(rec.key)
		e.KV.ModRevision = rev
		if rec.typ == EventPut {
			e.KV.CreateRevision = rec.create
			e.KV.Version = rec.version
			e.KV.Value = a.alloc(len(rec.value))
			copy(e.KV.Value, rec.value)
		}
		if rec.hasPrev {
			p := prevs.one()
			*p = KeyValue{Key: e.KV.Key, CreateRevision: rec.prev.CreateRevision, ModRevision: rec.prev.ModRevision, Version: rec.prev.Version}
			p.Value = a.alloc(len(rec.prev.Value))
			copy(p.Value, rec.prev.Value)
			e.PrevKV = p
		}
		events = append(events, e)
		spans[len(spans)-1].end = len(events)
	}
	if len(spans) == 0 {
		return nil, next, nil
	}
	batches := make([]Batch, len(spans))
	for i, sp := range spans {
		batches[i] = Batch{Revision: sp.rev, Events: events[sp.start:sp.end:sp.end]}
	}
	return batches, next, nil
}
