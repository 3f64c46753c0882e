package kv

import (
	"fmt"
	"slices"
	"sync"
	"time"
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
// requests and commits each group with one log record.
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
// scratch slices are reused from group to group; everything a caller, a
// subscriber or the overlay may keep (events, keys, values, results) comes
// from ev and the slabs, which are never reused.
type group struct {
	v    view      // the keyspace the group reads and writes
	mem  *memtable // receives the group's versions
	keys int64     // live keys

	rec     []byte // the group's log record; reused
	scratch []byte // one event's encoding; reused
	ev      arena  // keys and values of events and results
	kvs     slab[KeyValue]
	results slab[OpResult]
	ranges  slab[RangeResult]
	evSlab  slab[Event]

	events  []Event // this group's events, in order; scratch
	spans   []span  // one per revision; scratch
	batches []Batch // handed to subscribers; scratch
	prevs   []KeyValue
	touched []touched // versions lists changed by this group, in order
}

// touched is a key whose versions list a group replaced, with the list
// before.
type touched struct {
	n   *skipNode
	old *verList
}

// addVersion appends e to key's versions in the group's memtable. key must
// never be modified.
func (g *group) addVersion(key []byte, e Event) {
	n := g.mem.keys.insert(key)
	old := n.vers.Load()
	g.touched = append(g.touched, touched{n, old})
	var evs []Event
	if old != nil {
		evs = old.evs
	}
	n.vers.Store(&verList{evs: append(evs, e)})
}

// rollback removes the group's versions from the memtable. The lists put
// back have no spare capacity, so that the next append does not write
// where a reader of a removed version may look.
func (g *group) rollback() {
	for i := len(g.touched) - 1; i >= 0; i-- {
		t := g.touched[i]
		if t.old == nil {
			t.n.vers.Store(nil)
			continue
		}
		t.n.vers.Store(&verList{evs: slices.Clip(t.old.evs)})
	}
	clear(g.touched)
	g.touched = g.touched[:0]
}

// commitGroup applies reqs on the overlay, appends the group's record to
// the log and waits for its fdatasync, publishes the new revisions to the
// subscribers and acknowledges every request. Nothing is published or
// acknowledged before the record is durable. A failure fails every
// request of the group and leaves the revision where it was.
func (s *Store) commitGroup(reqs []*request) {
	if err := s.makeRoom(); err != nil {
		s.fail(reqs, fmt.Errorf("kv: commit: %w", err))
		return
	}
	// Held until the group is published: a checkpoint takes the memtable
	// between groups only, so it holds published revisions only.
	s.rotMu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			s.rotMu.Unlock()
		}
	}
	defer unlock()
	g := &s.g
	g.events = g.events[:0]
	g.spans = g.spans[:0]
	g.touched = g.touched[:0]

	ov := s.ov.Load()
	tx, err := s.db.Begin(false)
	if err != nil {
		s.fail(reqs, fmt.Errorf("kv: commit: %w", mapErr(err)))
		return
	}
	base := s.rev.Load()
	g.v, err = newView(tx, ov, base)
	if err != nil {
		_ = tx.Rollback()
		s.fail(reqs, fmt.Errorf("kv: commit: %w", err))
		return
	}
	g.mem = ov.mem
	g.keys = s.keys
	cur := base
	for _, r := range reqs {
		wrote, err := g.apply(r, cur+1)
		if err != nil {
			_ = tx.Rollback()
			g.v = view{}
			g.rollback()
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
	// Every key and value kept was copied out of the view.
	_ = tx.Rollback()
	g.v = view{}
	if cur == base {
		// Nothing written: the reads saw only published state.
		unlock()
		s.ack(reqs)
		return
	}
	now := s.commitTime()
	g.rec, g.scratch, err = appendWALRecord(g.rec[:0], g.scratch, base+1, now, g.keys, g.events, g.spans)
	if err == nil {
		err = s.wal.append(g.rec, base+1)
	}
	if cap(g.rec) > 4<<20 {
		g.rec = nil
	}
	if err != nil {
		g.rollback()
		s.log.Error().Err(err).Msg("group commit failed")
		s.fail(reqs, fmt.Errorf("kv: commit: %w", err))
		return
	}
	s.walRev.Store(cur)
	s.hook("wal-synced")
	s.keys = g.keys
	s.lastTime = now

	g.batches = g.batches[:0]
	var size int64
	for _, sp := range g.spans {
		evs := g.evSlab.take(sp.end - sp.start)
		copy(evs, g.events[sp.start:sp.end])
		for i := range evs {
			size += eventSize(&evs[i])
		}
		g.batches = append(g.batches, Batch{Revision: sp.rev, Events: evs})
	}
	g.mem.addGroup(g.batches, memGroup{first: base + 1, last: cur, time: now, keys: g.keys}, size)
	clear(g.touched)
	g.touched = g.touched[:0]
	s.mu.Lock()
	s.publish(cur, g.keys)
	for _, sub := range s.subs {
		sub.fn(g.batches)
	}
	s.mu.Unlock()
	unlock()
	clear(g.batches)
	clear(g.events)
	s.ack(reqs)
	if g.mem.hi()-g.mem.lo >= s.opts.checkpointRevs || g.mem.bytes.Load() >= s.opts.checkpointBytes {
		s.signalCheckpointer()
	}
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
