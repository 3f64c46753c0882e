package watchhub

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// StreamOptions configures a Stream. The zero value is the documented
// default.
type StreamOptions struct {
	// MaxQueueResponses and MaxQueueBytes bound the stream's outgoing queue
	// of event data (defaults 256 responses and 1 MiB). The hub queues a
	// response only while the queue is below both bounds, so it exceeds them
	// by at most one response; a watcher whose events do not fit becomes a
	// victim or stays behind and catches up later. Control responses
	// (created, canceled, progress, ...) are always queued.
	MaxQueueResponses int
	MaxQueueBytes     int
	// MaxPendingBytes bounds the events kept aside for the stream's victim
	// watchers (default 1 MiB, summed over the stream's watchers). A victim
	// whose events would exceed it drops them and catches up from history.
	MaxPendingBytes int
	// ProgressInterval, when > 0, sends a stream-level KindProgress after
	// that long without any response queued, if every watch of the stream
	// is caught up.
	ProgressInterval time.Duration
	// OnReady, when set, is called when the stream's queue goes from empty
	// to non-empty, and once when the hub closes the stream, as Ready is
	// signalled: a transport that has no goroutine waiting on Ready (one
	// that is written to by its connection's writer) wakes on it and must
	// then Drain until Drain returns nothing. It is called with no lock
	// that Drain takes (though possibly with the hub's), so it may be
	// called while a Drain runs; it must not block nor call the Stream's
	// methods other than Drain. It is not called after the stream's own
	// Close has returned.
	OnReady func()
}

func (o *StreamOptions) setDefaults() {
	if o.MaxQueueResponses <= 0 {
		o.MaxQueueResponses = 256
	}
	if o.MaxQueueBytes <= 0 {
		o.MaxQueueBytes = 1 << 20
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = 1 << 20
	}
}

// Stream is what one transport connection (an SSE response, a WebSocket)
// opens on the hub: it owns its watches and one bounded queue of responses,
// in the order the transport must send them. The transport adds and cancels
// watches and drains the queue from one goroutine (Ready + Drain, or Recv);
// Watch, Cancel, RequestProgress and Close may be called from any
// goroutine. Close (or the Hub's Close) ends it.
//
// Per watch, the responses are in order and never lose, repeat or split a
// revision; across watches, only their relative order within the queue is
// the order of queuing.
type Stream struct {
	h    *Hub
	opts StreamOptions

	// -- guarded by Hub.mu --
	// watchers are the live watches; byID indexes them once there are
	// more than a few.
	watchers       []*watcher
	byID           map[string]*watcher
	progressWanted bool
	pendingBytes   int // victims' kept-aside events
	progressDue    time.Duration
	heapIdx        int

	// closed is set, under Hub.mu, when the stream closes.
	closed atomic.Bool
	// kick: a push was refused for lack of room; Drain wakes the hub loops.
	kick atomic.Bool
	// lastPush is when the last response was queued, in hub-clock time.
	lastPush atomic.Int64

	qmu     sync.Mutex // guards q, qBytes, qEvents, qclosed; taken after Hub.mu, never before it
	q       []Response
	qBytes  int
	qEvents int // event responses in q
	qclosed bool

	// ready is Ready's channel, made by the first call to Ready: a
	// transport woken by OnReady never needs it.
	ready atomic.Pointer[chan struct{}]
}

// byIDThreshold is the number of watches from which a stream indexes them
// by id rather than scanning its list.
const byIDThreshold = 8

func (s *Stream) lookup(id string) *watcher {
	if s.byID != nil {
		return s.byID[id]
	}
	for _, w := range s.watchers {
		if w.id == id {
			return w
		}
	}
	return nil
}

func (s *Stream) addWatcher(w *watcher) {
	w.sidx = int32(len(s.watchers))
	s.watchers = append(s.watchers, w)
	switch {
	case s.byID != nil:
		s.byID[w.id] = w
	case len(s.watchers) > byIDThreshold:
		s.byID = make(map[string]*watcher, len(s.watchers))
		for _, w := range s.watchers {
			s.byID[w.id] = w
		}
	}
}

// removeWatcher takes w, which must be one of s's watches, off s.
func (s *Stream) removeWatcher(w *watcher) {
	last := len(s.watchers) - 1
	moved := s.watchers[last]
	s.watchers[w.sidx] = moved
	moved.sidx = w.sidx
	s.watchers[last] = nil
	s.watchers = s.watchers[:last]
	if s.byID != nil {
		delete(s.byID, w.id)
	}
	w.sidx = -1
}

// NewStream opens a stream. It fails with ErrClosed after Close.
func (h *Hub) NewStream(opts StreamOptions) (*Stream, error) {
	opts.setDefaults()
	s := &Stream{
		h:       h,
		opts:    opts,
		heapIdx: -1,
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	h.streams[s] = struct{}{}
	s.lastPush.Store(int64(h.clock()))
	if opts.ProgressInterval > 0 {
		s.progressDue = h.clock() + opts.ProgressInterval
		h.progress.push(s)
		h.kickProgress()
	}
	return s, nil
}

// Watch adds a watch to the stream and queues its KindCreated response,
// followed by its events. It returns the hub's revision at registration
// (the Created revision): a watch with StartRev 0 receives every matching
// change after it. A request that cannot be served (bad range, duplicate
// id, closed stream) returns an error and queues nothing; a start revision
// that was compacted is reported in-band (KindCompacted, or a fresh
// snapshot for a Snapshot watch). ErrStreamFull refuses new watches while
// the stream's queue holds more than four times MaxQueueResponses.
func (s *Stream) Watch(req WatchRequest) (int64, error) {
	w, err := newWatcher(s, &req)
	if err != nil {
		return 0, err
	}
	var compact int64
	if req.StartRev > 0 {
		// Read before taking the hub's lock, which is never held while
		// calling the store. Compaction only moves forward, so a revision
		// seen compacted here is compacted for good; one compacted just
		// after is caught by the sync loop.
		_, compact = s.h.store.Revisions()
	}
	return s.h.watch(s, w, &req, compact)
}

// Cancel ends the watch id and queues KindCanceled for it.
// ErrWatchNotFound if the stream has no such live watch.
func (s *Stream) Cancel(id string) error {
	return s.h.cancelWatch(s, id, "canceled")
}

// RequestProgress queues a stream-level KindProgress at the hub's current
// revision as soon as every watch of the stream has been sent everything up
// to it (at once when they all are caught up). Requests made before the
// bookmark is queued, and a bookmark not yet drained, coalesce into one.
func (s *Stream) RequestProgress() error {
	return s.h.requestProgress(s, "")
}

// RequestWatchProgress queues a KindWatchProgress for the watch id alone,
// once it has been sent everything up to the hub's revision. The id ""
// means the stream, as RequestProgress (for a single-watch stream the two
// are the same). ErrWatchNotFound for an unknown id.
func (s *Stream) RequestWatchProgress(id string) error {
	return s.h.requestProgress(s, id)
}

// Ready is signalled when responses are queued. It has a buffer of one: a
// transport that wakes on it must Drain until Drain returns nothing before
// waiting again.
func (s *Stream) Ready() <-chan struct{} {
	if c := s.ready.Load(); c != nil {
		return *c
	}
	return s.makeReady()
}

// makeReady makes Ready's channel, signalled if the queue holds responses
// or is closed (the signals it missed).
func (s *Stream) makeReady() chan struct{} {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if c := s.ready.Load(); c != nil {
		return *c
	}
	c := make(chan struct{}, 1)
	if len(s.q) > 0 || s.qclosed {
		c <- struct{}{}
	}
	s.ready.Store(&c)
	return c
}

// wake signals Ready's channel, if it has been made. Called after the
// change it signals, out of qmu: a channel made before the change is
// signalled here, one made after it by makeReady.
func (s *Stream) wake() {
	if c := s.ready.Load(); c != nil {
		select {
		case *c <- struct{}{}:
		default:
		}
	}
}

// Done is closed when the hub is closed, which closes every stream;
// responses queued before can still be drained. (A stream closed by its own
// Close is its caller's business: Recv then returns ErrStreamClosed.)
func (s *Stream) Done() <-chan struct{} { return s.h.donec }

// Drain appends every queued response to buf, in order, and removes them
// from the queue. It never blocks. Only one goroutine may drain a stream.
//
// Given an empty buf, Drain hands over the queue's array rather than
// copying: the caller gets the queue's array and gives up buf's, which
// goes back to the arrays shared by all streams (or, for an array of a
// capacity that is not shared, stays with the queue for the next
// responses). Either way a transport that drains into buf[:0] again and
// again allocates nothing in a steady flow, and the queue keeps no array
// of its own once drained: an idle stream holds at most the array its
// transport kept, none if the transport gave it back with Release. The
// caller clears the responses it used (clear before reslicing to buf[:0],
// or Release) so that the array it gives up holds no events; Drain does
// not clear it again, which would cost a pass over the whole array on
// every drain of a burst. Nothing may use buf's array after the call.
//
// Given a non-empty buf, Drain appends to it (growing it as append does).
func (s *Stream) Drain(buf []Response) []Response {
	var give []Response
	s.qmu.Lock()
	if len(buf) == 0 {
		give, buf, s.q = buf, s.q, nil
		if !queueClass(cap(give)) {
			// Not a shared capacity: the queue keeps it, as it always did.
			s.q, give = give[:0], nil
		}
	} else {
		buf = append(buf, s.q...)
		clear(s.q)
		if queueClass(cap(s.q)) {
			give, s.q = s.q, nil
		} else {
			s.q = s.q[:0]
		}
	}
	s.qBytes = 0
	s.qEvents = 0
	s.qmu.Unlock()
	if give != nil {
		giveQueue(give)
	}
	if s.kick.Load() && s.kick.Swap(false) {
		s.h.kickLoops()
	}
	return buf
}

// Release gives back the array of buf, a slice returned by Drain, once the
// caller is done with its responses: Release clears them and, when the
// array's capacity is one the streams share, makes the array available to
// the next response queued on any stream. A transport that releases what
// it drained holds no array while its stream is idle. Nothing may use
// buf's array after the call; the next Drain is then given an empty buf
// (nil). Release(nil) does nothing. It does not touch the stream's queue
// and may be called from any goroutine.
func (s *Stream) Release(buf []Response) {
	if cap(buf) == 0 {
		return
	}
	clear(buf)
	giveQueue(buf)
}

// Recv waits until responses are queued, then drains them into buf. It
// returns ErrStreamClosed once the stream is closed and drained, or ctx's
// error.
func (s *Stream) Recv(ctx context.Context, buf []Response) ([]Response, error) {
	n := len(buf)
	for {
		if buf = s.Drain(buf); len(buf) > n {
			return buf, nil
		}
		if s.closed.Load() {
			return buf, ErrStreamClosed
		}
		select {
		case <-s.Ready():
		case <-s.h.donec:
			if buf = s.Drain(buf); len(buf) > n {
				return buf, nil
			}
			return buf, ErrStreamClosed
		case <-ctx.Done():
			return buf, ctx.Err()
		}
	}
}

// Close removes every watch of the stream and drops its queue. It is
// idempotent.
func (s *Stream) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.closeStreamLocked(s, true)
}

// Len reports the number of live watches of the stream.
func (s *Stream) Len() int {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return len(s.watchers)
}

// hasRoom reports whether the queue accepts more event data.
func (s *Stream) hasRoom() bool {
	s.qmu.Lock()
	ok := s.roomLocked()
	s.qmu.Unlock()
	return ok
}

func (s *Stream) roomLocked() bool {
	return s.qEvents < s.opts.MaxQueueResponses && s.qBytes < s.opts.MaxQueueBytes
}

// push queues r. Event data (force false) is refused when the queue is at
// its bounds, and then the hub is woken when the transport drains. Control
// responses (force true) are always queued. Nothing is queued on a closed
// stream. Called with Hub.mu held.
func (s *Stream) push(r Response, force bool, now time.Duration) bool {
	s.qmu.Lock()
	if s.qclosed {
		s.qmu.Unlock()
		return false
	}
	wasEmpty := len(s.q) == 0
	if !force && !s.roomLocked() {
		s.qmu.Unlock()
		s.kick.Store(true)
		return false
	}
	if r.Kind == KindProgress && len(s.q) > 0 && s.q[len(s.q)-1].Kind == KindProgress {
		// A bookmark not yet drained: move it forward rather than queue two.
		s.q[len(s.q)-1].Revision = r.Revision
	} else {
		if !force {
			s.qEvents++
		}
		s.qBytes += r.size + responseOverhead
		if len(s.q) == cap(s.q) {
			s.grow(len(s.q) + 1)
		}
		s.q = append(s.q, r)
	}
	s.qmu.Unlock()
	s.pushed(wasEmpty, now)
	return true
}

// pushLive queues the events notify collected for ws, synced watchers
// of s, in order, as push(r, false, now) of each watcher's response would
// one after the other, but under one lock and built in place; it returns
// how many watchers it served: ws[:n], the others being refused for lack
// of room (the hub is then woken when the transport drains) or because
// the stream is closed, their events still to be taken. Called with
// Hub.mu held.
func (s *Stream) pushLive(h *Hub, ws []*watcher, flat []*Event, now time.Duration) (n int) {
	s.qmu.Lock()
	if s.qclosed {
		s.qmu.Unlock()
		return 0
	}
	wasEmpty := len(s.q) == 0
	// The bound on responses lets in this many more at most.
	if need := len(s.q) + min(len(ws), s.opts.MaxQueueResponses-s.qEvents); need > cap(s.q) {
		s.grow(need)
	}
	for ; n < len(ws) && s.roomLocked(); n++ {
		w := ws[n]
		evs := h.takeEvents(w, flat)
		r := Response{Kind: KindEvents, WatchID: w.id, Revision: h.rev, Events: evs, PrevKV: w.prevKV, size: eventsSize(evs)}
		s.qEvents++
		s.qBytes += r.size + responseOverhead
		s.q = append(s.q, r)
	}
	if n < len(ws) {
		s.kick.Store(true)
	}
	s.qmu.Unlock()
	if n > 0 {
		s.pushed(wasEmpty, now)
	}
	return n
}

// pushed is push's work after queuing, out of qmu.
func (s *Stream) pushed(wasEmpty bool, now time.Duration) {
	if s.lastPush.Load() != int64(now) {
		// One notify pushes many responses at the same now: store once.
		s.lastPush.Store(int64(now))
	}
	if wasEmpty {
		// A non-empty queue has been signalled already, and Drain takes
		// everything.
		s.signal()
	}
}

// grow gives the queue an array of room for need responses or more, from
// the arrays the streams share (queuepool.go): 2, 8, 32, 128 then 512
// responses, and doubling beyond (or need, if more). A write that concerns
// every watch of the stream queues one response each, and after an idle
// period the queue has no array: growing step by step alone would copy a
// dozen arrays for such a burst of 10,000 (when its responses are pushed
// one by one). Once the queue is to hold more than 64 responses, and no
// more than one per watch, a burst is under way, and the array grows
// straight to room for one response per watch (the shared array that
// holds that, or that and 16 more), up to the queue's bound on event
// data; a write that concerns a few watches of a large stream allocates
// no more than before. The outgrown array goes back to the shared ones.
// Called with Hub.mu and qmu held.
func (s *Stream) grow(need int) {
	n := cap(s.q)
	if need > 64 && need <= len(s.watchers) {
		// A burst.
		n = max(need, min(len(s.watchers), s.opts.MaxQueueResponses))
		if c := queueCap(n - 1); c > 0 {
			n = c
		} else {
			n += 16
		}
	}
	for n < need {
		if c := queueCap(n); c > 0 {
			n = c
		} else {
			n = max(2*n, need)
		}
	}
	q := takeQueue(n)[:len(s.q)]
	copy(q, s.q)
	if cap(s.q) > 0 {
		clear(s.q)
		giveQueue(s.q)
	}
	s.q = q
}

// queued reports the number of queued responses.
func (s *Stream) queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.q)
}

// closeQueue marks the queue closed, so later pushes are ignored, with drop
// also empties it, and wakes a Recv.
func (s *Stream) closeQueue(drop bool) {
	s.qmu.Lock()
	if drop {
		clear(s.q)
		giveQueue(s.q)
		s.q = nil
		s.qBytes, s.qEvents = 0, 0
	}
	s.qclosed = true
	s.qmu.Unlock()
	if drop {
		// The stream's own Close: nobody is left to drain.
		s.wake()
		return
	}
	s.signal()
}

// signal wakes the transport: Ready, and OnReady when set.
func (s *Stream) signal() {
	s.wake()
	if s.opts.OnReady != nil {
		s.opts.OnReady()
	}
}
