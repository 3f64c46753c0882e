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
	err = s.read(func(v *view) error {
		compact := s.readFloor(v.compact)
		cur := v.top
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
		var h historyReader
		next, err = h.read(ctx, v, from, to, maxEvents)
		batches = h.batches()
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return batches, next, nil
}

// historyReader collects events for History: from bbolt's history bucket
// up to the view's applied revision, then from the overlay.
type historyReader struct {
	a      arena
	prevs  slab[KeyValue]
	events []Event
	spans  []span
}

// read collects the revisions from..to and returns the first revision not
// collected.
func (h *historyReader) read(ctx context.Context, v *view, from, to int64, maxEvents int) (int64, error) {
	if maxEvents > 0 {
		h.events = make([]Event, 0, min(maxEvents+maxEvents/4, 4096))
	}
	if from <= v.applied {
		bto := min(to, v.applied)
		next, err := h.readBolt(ctx, v.tx, from, bto, maxEvents)
		if err != nil || next <= bto {
			return next, err
		}
		from = bto + 1
	}
	for rev := from; rev <= to; rev++ {
		if maxEvents > 0 && len(h.events) >= maxEvents {
			return rev, nil
		}
		if len(h.spans)&1023 == 1023 {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
		}
		b, ok := v.batch(rev)
		if !ok {
			return 0, fmt.Errorf("%w: revision %d missing from the overlay", errCorrupt, rev)
		}
		start := len(h.events)
		for i := range b.Events {
			e := &b.Events[i]
			c := Event{Type: e.Type, Sub: e.Sub, KV: copyKV(e.KV, e.Type == EventDelete, &h.a)}
			if e.PrevKV != nil {
				p := h.prevs.one()
				*p = copyKV(*e.PrevKV, false, &h.a)
				p.Key = c.KV.Key
				c.PrevKV = p
			}
			h.events = append(h.events, c)
		}
		h.spans = append(h.spans, span{rev: rev, start: start, end: len(h.events)})
	}
	return to + 1, nil
}

// batches returns what was collected.
func (h *historyReader) batches() []Batch {
	if len(h.spans) == 0 {
		return nil
	}
	batches := make([]Batch, len(h.spans))
	for i, sp := range h.spans {
		batches[i] = Batch{Revision: sp.rev, Events: h.events[sp.start:sp.end:sp.end]}
	}
	return batches
}

// readBolt scans the history bucket from revision from to revision to and
// returns the first revision not collected.
func (h *historyReader) readBolt(ctx context.Context, tx *bolt.Tx, from, to int64, maxEvents int) (int64, error) {
	var (
		rec  eventRecord
		seek [revKeyLen]byte
	)
	a, prevs := &h.a, &h.prevs
	next := to + 1
	putRevKey(seek[:], from, 0)
	c := tx.Bucket(bucketHistory).Cursor()
	for k, v := c.Seek(seek[:]); k != nil; k, v = c.Next() {
		if len(k) != revKeyLen {
			return 0, fmt.Errorf("%w: history key of %d bytes", errCorrupt, len(k))
		}
		rev, sub := parseRevKey(k)
		if rev > to {
			break
		}
		if n := len(h.spans); n == 0 || h.spans[n-1].rev != rev {
			if maxEvents > 0 && len(h.events) >= maxEvents {
				next = rev
				break
			}
			if len(h.spans)&1023 == 1023 {
				if err := ctx.Err(); err != nil {
					return 0, err
				}
			}
			h.spans = append(h.spans, span{rev: rev, start: len(h.events)})
		}
		if err := decodeEvent(v, &rec, false); err != nil {
			return 0, fmt.Errorf("history at %d.%d: %w", rev, sub, err)
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
		h.events = append(h.events, e)
		h.spans[len(h.spans)-1].end = len(h.events)
	}
	return next, nil
}
