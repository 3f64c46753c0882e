package kv

import (
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// request is one write transaction waiting for the committer. Requests are
// pooled: a writer takes one, queues it, waits on done and puts it back.
type request struct {
	txn TxnRequest
	// ops backs txn.Success for the Put and Delete shorthands.
	ops  [1]Op
	size int // bytes of keys and values, for the group bound
	resp TxnResponse
	err  error
	done chan struct{} // capacity 1; one send per queued request
}

var requestPool = sync.Pool{New: func() any { return &request{done: make(chan struct{}, 1)} }}

func getRequest() *request { return requestPool.Get().(*request) }

func putRequest(r *request) {
	done := r.done
	*r = request{done: done}
	requestPool.Put(r)
}

// write queues r for the committer and waits for its result. Once queued,
// a write is not abandoned: its outcome is known within one group commit,
// so the caller's context is only checked before.
func (s *Store) write(r *request) (TxnResponse, error) {
	s.qmu.Lock()
	if s.qclosed {
		s.qmu.Unlock()
		return TxnResponse{}, ErrClosed
	}
	s.pending = append(s.pending, r)
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-r.done
	return r.resp, r.err
}

// runCommitter is the committer goroutine: it takes groups of queued
// requests and commits each group in one bbolt transaction.
func (s *Store) runCommitter() {
	defer s.wg.Done()
	var reqs []*request
	for {
		select {
		case <-s.stopc:
			s.failPending()
			return
		case <-s.wake:
		}
		for {
			select {
			case <-s.stopc:
				s.failPending()
				return
			default:
			}
			reqs = s.takeGroup(reqs[:0])
			if len(reqs) == 0 {
				break
			}
			s.commitGroup(reqs)
			clear(reqs)
		}
	}
}

// takeGroup moves the oldest queued requests, up to the group bounds, to
// dst.
func (s *Store) takeGroup(dst []*request) []*request {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	n, size := 0, 0
	for n < len(s.pending) && n < maxGroupRequests {
		if n > 0 && size+s.pending[n].size > maxGroupBytes {
			break
		}
		size += s.pending[n].size
		n++
	}
	dst = append(dst, s.pending[:n]...)
	rest := copy(s.pending, s.pending[n:])
	clear(s.pending[rest:])
	s.pending = s.pending[:rest]
	return dst
}

// failPending fails every queued request with ErrClosed. The queue is
// closed to new requests before stopc is, so none can arrive later.
func (s *Store) failPending() {
	s.qmu.Lock()
	reqs := s.pending
	s.pending = nil
	s.qmu.Unlock()
	for _, r := range reqs {
		r.err = ErrClosed
		r.done <- struct{}{}
	}
}

// span is the events of one revision in group.events.
type span struct {
	rev        int64
	start, end int
}

// group is the committer's working state for one group commit. Its
// scratch slices are reused from group to group; everything a caller or a
// subscriber may keep (events, keys, values, results) comes from ev and
// the slabs, which are never reused.
type group struct {
	tx            *bolt.Tx
	kv, hist, idx *bolt.Bucket
	kvc           *bolt.Cursor // on kv, made by current; nil between groups
	keys          int64        // live keys

	enc     arena // encoded records for bbolt; reused after each commit
	ev      arena // keys and values of events and results
	kvs     slab[KeyValue]
	results slab[OpResult]
	ranges  slab[RangeResult]
	evSlab  slab[Event]

	events  []Event // this group's events, in order; scratch
	spans   []span  // one per revision; scratch
	batches []Batch // handed to subscribers; scratch
	prevs   []KeyValue
}

// commitGroup applies reqs in one bbolt transaction, commits it, publishes
// the new revisions to the subscribers and acknowledges every request. A
// failure to commit fails every request of the group and leaves the
// revision where it was.
func (s *Store) commitGroup(reqs []*request) {
	g := &s.g
	g.enc.reset()
	g.events = g.events[:0]
	g.spans = g.spans[:0]

	tx, err := s.db.Begin(true)
	if err != nil {
		s.fail(reqs, fmt.Errorf("kv: commit: %w", mapErr(err)))
		return
	}
	g.tx = tx
	g.kv, g.hist, g.idx = tx.Bucket(bucketKV), tx.Bucket(bucketHistory), tx.Bucket(bucketIndex)
	g.kvc = nil
	g.hist.FillPercent = 1 // appended in revision order
	g.keys = s.keys
	base := s.rev.Load()
	cur := base
	for _, r := range reqs {
		wrote, err := g.apply(r, cur+1)
		if err != nil {
			_ = tx.Rollback()
			s.log.Error().Err(err).Msg("group commit failed")
			s.fail(reqs, fmt.Errorf("kv: commit: %w", err))
			return
		}
		if wrote {
			cur++
		}
		r.resp.Revision = cur
		for i := range r.resp.Responses {
			if rr := r.resp.Responses[i].Range; rr != nil {
				rr.Rev = cur
			}
		}
	}
	if cur == base {
		// Nothing written: the reads saw only committed state.
		_ = tx.Rollback()
		s.ack(reqs)
		return
	}
	now := s.commitTime()
	if err := g.finish(base+1, cur, now); err != nil {
		_ = tx.Rollback()
		s.log.Error().Err(err).Msg("group commit failed")
		s.fail(reqs, fmt.Errorf("kv: commit: %w", err))
		return
	}
	if err := tx.Commit(); err != nil {
		s.log.Error().Err(err).Msg("group commit failed")
		s.fail(reqs, fmt.Errorf("kv: commit: %w", err))
		return
	}
	s.keys = g.keys
	s.lastTime = now

	g.batches = g.batches[:0]
	for _, sp := range g.spans {
		evs := g.evSlab.take(sp.end - sp.start)
		copy(evs, g.events[sp.start:sp.end])
		g.batches = append(g.batches, Batch{Revision: sp.rev, Events: evs})
	}
	s.mu.Lock()
	s.publish(cur, g.keys)
	for _, sub := range s.subs {
		sub.fn(g.batches)
	}
	s.mu.Unlock()
	clear(g.batches)
	clear(g.events)
	s.ack(reqs)
}

// commitTime returns the time recorded for a group commit: now, but never
// before the previous one, so the times bucket stays sorted by time too.
func (s *Store) commitTime() int64 {
	t := time.Now().UnixNano()
	if t < s.lastTime {
		t = s.lastTime
	}
	return t
}

// finish writes the group's meta data: the new revision, the live key
// count and the group's commit time.
func (g *group) finish(first, rev int64, now int64) error {
	meta := g.tx.Bucket(bucketMeta)
	b := g.enc.alloc(8)
	putUint64(b, rev)
	if err := meta.Put(metaRev, b); err != nil {
		return err
	}
	b = g.enc.alloc(8)
	putUint64(b, g.keys)
	if err := meta.Put(metaKeys, b); err != nil {
		return err
	}
	k := g.enc.alloc(8)
	putUint64(k, first)
	v := g.enc.alloc(8)
	putUint64(v, now)
	times := g.tx.Bucket(bucketTimes)
	times.FillPercent = 1 // appended in order
	return times.Put(k, v)
}

func (s *Store) fail(reqs []*request, err error) {
	for _, r := range reqs {
		r.resp = TxnResponse{}
		r.err = err
		r.done <- struct{}{}
	}
}

func (s *Store) ack(reqs []*request) {
	for _, r := range reqs {
		r.done <- struct{}{}
	}
}
