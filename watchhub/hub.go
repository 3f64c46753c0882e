package watchhub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/kv"
)

var (
	// ErrClosed is returned by every call after the hub's Close.
	ErrClosed = errors.New("watchhub: hub is closed")
	// ErrStreamClosed is returned by a stream's calls after its Close, and
	// by Recv once a closed stream is drained.
	ErrStreamClosed = errors.New("watchhub: stream is closed")
	// ErrWatchExists is returned by Watch for an id already in use on the
	// stream.
	ErrWatchExists = errors.New("watchhub: watch id already in use")
	// ErrWatchNotFound is returned for an id that names no live watch of
	// the stream.
	ErrWatchNotFound = errors.New("watchhub: watch not found")
	// ErrInvalidRange is returned by Watch for a key range that selects
	// nothing or is malformed.
	ErrInvalidRange = errors.New("watchhub: invalid key range")
	// ErrInvalidRequest is returned by Watch for other malformed requests.
	ErrInvalidRequest = errors.New("watchhub: invalid watch request")
	// ErrStreamFull is returned by Watch while the stream's queue is far
	// over its bound: its client is not reading.
	ErrStreamFull = errors.New("watchhub: stream queue is full")
)

// Options configures a Hub. The zero value is the documented default.
type Options struct {
	// RecentRevisions and RecentBytes bound the window of latest revisions
	// kept in memory for watchers that are a little behind (defaults 1024
	// revisions and 16 MiB).
	RecentRevisions int
	RecentBytes     int
	// SyncWatchers is how many unsynced watchers one history read serves
	// (default 512); SyncEvents about how many events it reads (default
	// 4096, whole revisions).
	SyncWatchers int
	SyncEvents   int
	// SnapshotChunk is how many keys one snapshot read returns and one
	// KindSnapshot response carries (default 256).
	SnapshotChunk int
	// RetryInterval is how often the hub retries victims and unsynced
	// watchers without being woken by a draining stream (default 100ms).
	RetryInterval time.Duration
	// Logger receives the hub's logs; nil means zerolog.Nop().
	Logger *zerolog.Logger
}

func (o *Options) setDefaults() {
	if o.RecentRevisions <= 0 {
		o.RecentRevisions = 1024
	}
	if o.RecentBytes <= 0 {
		o.RecentBytes = 16 << 20
	}
	if o.SyncWatchers <= 0 {
		o.SyncWatchers = 512
	}
	if o.SyncEvents <= 0 {
		o.SyncEvents = 4096
	}
	if o.SnapshotChunk <= 0 {
		o.SnapshotChunk = 256
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 100 * time.Millisecond
	}
}

// lockedCatchUp bounds the events a watcher may be handed from the recent
// window while the hub's lock is held; a longer stretch is matched outside
// the lock by the sync loop.
const lockedCatchUp = 1024

// Hub fans the store's commits out to watchers, etcd's watchable store
// rebuilt for HTTP transports. It is subscribed to the store's commit feed;
// every watcher is in one of its groups:
//
//   - synced: caught up. At each commit the hub finds the matching ones
//     through the index (a key map and an interval tree, never a scan of
//     all watchers) and queues the events on their streams.
//   - victim: a synced watcher whose stream's queue was full. Its events
//     are kept aside (bounded per stream); a retry loop queues them when
//     the stream drains. Over the bound they are dropped and the watcher
//     becomes unsynced from its first pending revision.
//   - unsynced: behind. A background loop reads history once per round
//     from the smallest revision the chosen watchers need, up to the
//     revision the hub has been notified of, hands each its events and
//     moves it to synced under the hub's lock with no gap and no
//     duplicate; the last step uses the in-memory window of recent
//     revisions, so the store is never read under the lock.
//   - snapshot: sending the snapshot of its range in chunks.
//
// A commit never waits for a reader: notify only takes the hub's lock,
// whose holders never do I/O, and queues without blocking.
//
// Every goroutine of the hub is started by New and stopped by Close.
type Hub struct {
	store Store
	opts  Options
	log   zerolog.Logger
	epoch time.Time

	ctx         context.Context
	cancelCtx   context.CancelFunc
	unsubscribe func()
	stopc       chan struct{}
	donec       chan struct{} // closed when Close has closed every stream
	syncc       chan struct{}
	victimc     chan struct{}
	progressc   chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once

	// mu guards everything below, every watcher's mutable state and every
	// stream's watcher map. It is never held while calling the store, and
	// it is taken before any Stream.qmu.
	mu        sync.Mutex
	started   bool
	early     []kv.Batch // commits notified before Subscribe returned
	closed    bool
	rev       int64 // the last revision notified
	synced    index // synced and victim watchers
	victims   map[*watcher]struct{}
	unsynced  map[*watcher]struct{}
	snapshots map[*watcher]struct{}
	streams   map[*Stream]struct{}
	recent    recent
	progress  streamHeap
	snapGen   uint32
	touched   []*watcher
	// ahead holds synced watchers that start beyond the hub's revision
	// (a client that saw later revisions through another gateway, whose
	// feed is ahead of this one's): their bookmarks wait until the hub
	// reaches their start, so that no bookmark goes below what the client
	// has seen.
	ahead   []*watcher
	scratch []*watcher
	// spill holds, during one notify, the events of watchers whose events
	// are not one run of the notify's events.
	spill map[*watcher][]*Event
}

// New makes a hub fed by store's commits from its current revision on.
func New(store Store, opts Options) (*Hub, error) {
	if store == nil {
		return nil, errors.New("watchhub: nil store")
	}
	opts.setDefaults()
	h := &Hub{
		store:     store,
		opts:      opts,
		log:       zerolog.Nop(),
		epoch:     time.Now(),
		stopc:     make(chan struct{}),
		donec:     make(chan struct{}),
		syncc:     make(chan struct{}, 1),
		victimc:   make(chan struct{}, 1),
		progressc: make(chan struct{}, 1),
		synced:    newIndex(),
		victims:   make(map[*watcher]struct{}),
		unsynced:  make(map[*watcher]struct{}),
		snapshots: make(map[*watcher]struct{}),
		streams:   make(map[*Stream]struct{}),
		spill:     make(map[*watcher][]*Event),
	}
	if opts.Logger != nil {
		h.log = *opts.Logger
	}
	h.ctx, h.cancelCtx = context.WithCancel(context.Background())
	// Subscribe without holding mu: the store may call notify from another
	// goroutine before Subscribe returns, and notify keeps such commits
	// aside until the starting revision is known.
	rev, cancel := store.Subscribe(h.notify)
	h.mu.Lock()
	h.unsubscribe = cancel
	h.rev = rev
	h.recent = newRecent(rev, opts.RecentRevisions, opts.RecentBytes)
	h.started = true
	early := h.early
	h.early = nil
	if len(early) > 0 {
		h.notifyLocked(early)
	}
	h.mu.Unlock()

	h.wg.Add(3)
	go h.syncLoop()
	go h.victimLoop()
	go h.progressLoop()
	return h, nil
}

// Close unsubscribes from the store, stops the hub's goroutines and closes
// every stream (queued responses stay drainable). It is idempotent and
// always returns nil.
func (h *Hub) Close() error {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		unsubscribe := h.unsubscribe
		h.mu.Unlock()
		unsubscribe()
		h.cancelCtx()
		close(h.stopc)
		h.wg.Wait()
		h.mu.Lock()
		h.closed = true
		for s := range h.streams {
			h.closeStreamLocked(s, false)
		}
		h.mu.Unlock()
		close(h.donec)
	})
	return nil
}

// Revision returns the last revision the hub has been notified of.
func (h *Hub) Revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Stats counts the hub's watchers by group, for /v1/status.
type Stats struct {
	// Synced counts caught-up watchers, Victim those whose stream's queue
	// was full, Unsynced those catching up from history or sending a
	// snapshot.
	Synced   int
	Unsynced int
	Victim   int
	// Streams counts open streams.
	Streams int
	// Revision is the last revision the hub has been notified of.
	Revision int64
}

// Stats returns the current counts.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{
		Synced:   h.synced.len() - len(h.victims),
		Unsynced: len(h.unsynced) + len(h.snapshots),
		Victim:   len(h.victims),
		Streams:  len(h.streams),
		Revision: h.rev,
	}
}

// clock is the hub's monotonic time.
func (h *Hub) clock() time.Duration { return time.Since(h.epoch) }

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (h *Hub) kickSync()     { kick(h.syncc) }
func (h *Hub) kickProgress() { kick(h.progressc) }

// kickLoops wakes the loops that wait for room in a stream's queue.
func (h *Hub) kickLoops() {
	kick(h.syncc)
	kick(h.victimc)
}

// notify is the store's commit subscriber. It runs on the store's commit
// path and never blocks: it takes mu, whose holders do no I/O, matches each
// event through the synced index and queues without waiting.
func (h *Hub) notify(batches []kv.Batch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.started {
		// The store may not be retained: keep copies.
		for i := range batches {
			b := batches[i]
			b.Events = append([]kv.Event(nil), b.Events...)
			h.early = append(h.early, b)
		}
		return
	}
	if h.closed {
		return
	}
	h.notifyLocked(batches)
}

func (h *Hub) notifyLocked(batches []kv.Batch) {
	total := 0
	for i := range batches {
		if batches[i].Revision > h.rev {
			total += len(batches[i].Events)
		}
	}
	// One allocation each for the events of the whole group commit, their
	// wrappers and the wrappers' pointers; a watcher whose events are one run of them gets a
	// slice of flat rather than a slice of its own.
	kevs := make([]kv.Event, total) // the store's slice may not be kept
	store := make([]Event, total)
	flat := make([]*Event, 0, total)
	touched := h.touched[:0]
	notified := notifyStamp() // one clock read for the whole group commit
	for i := range batches {
		b := &batches[i]
		if b.Revision <= h.rev {
			continue
		}
		start := len(flat)
		size := 0
		for j := range b.Events {
			n := len(flat)
			kevs[n] = b.Events[j]
			e := &store[n]
			e.Event = &kevs[n]
			e.size = eventSize(e.Event)
			e.notified = notified
			size += e.size
			flat = append(flat, e)
		}
		evs := flat[start:len(flat):len(flat)]
		if h.synced.n > 0 {
			for k, e := range evs {
				idx := int32(start + k)
				m := h.synced.match(e.KV.Key, h.scratch[:0])
				for _, w := range m {
					if !w.accepts(e) {
						continue
					}
					switch w.bufEnd {
					case 0:
						w.bufStart, w.bufEnd = idx, idx+1
						touched = append(touched, w)
					case idx:
						w.bufEnd++
					default:
						h.spillEvent(w, flat, e)
					}
				}
				clear(m)
				h.scratch = m[:0]
			}
		}
		h.rev = b.Revision
		h.recent.add(b.Revision, evs, size)
	}
	if len(h.ahead) > 0 {
		h.releaseAhead(h.clock())
	}
	if len(touched) > 0 {
		now := h.clock()
		for i := 0; i < len(touched); {
			// Watchers of one stream that follow one another in touched
			// (the watches a socket made of one key) are queued together.
			j := i + 1
			for j < len(touched) && touched[j].s == touched[i].s {
				j++
			}
			if j == i+1 {
				w := touched[i]
				h.deliverLive(w, h.takeEvents(w, flat), now)
			} else {
				h.deliverLiveBatch(touched[i:j], flat, now)
			}
			i = j
		}
		clear(touched)
	}
	h.touched = touched[:0]
}

// takeEvents returns the events notify collected for w and resets its
// collection.
func (h *Hub) takeEvents(w *watcher, flat []*Event) []*Event {
	var evs []*Event
	if w.bufEnd > 0 {
		evs = flat[w.bufStart:w.bufEnd:w.bufEnd]
	} else {
		evs = h.spill[w]
		delete(h.spill, w)
	}
	w.bufEnd = 0
	return evs
}

// liveBatch is the number of responses deliverLiveBatch queues under one
// lock of a stream's queue, at most: between batches the transport may
// drain, as it may between responses pushed one by one, so that a burst
// to a stream of many watches finds the room a concurrent drain makes.
const liveBatch = 32

// deliverLiveBatch is deliverLive for several watchers of one stream, in
// order: their responses are built in place in the stream's queue,
// liveBatch at a time under one lock. ws is overwritten.
func (h *Hub) deliverLiveBatch(ws []*watcher, flat []*Event, now time.Duration) {
	live := ws[:0]
	for _, w := range ws {
		if w.state == stateVictim {
			h.addPending(w, h.takeEvents(w, flat))
			continue
		}
		live = append(live, w)
	}
	for len(live) > 0 {
		b := live[:min(len(live), liveBatch)]
		for _, w := range b[live[0].s.pushLive(h, b, flat, now):] {
			h.makeVictim(w, h.takeEvents(w, flat))
		}
		live = live[len(b):]
	}
}

// spillEvent adds e to w's events of this notify when they stop being one
// run of flat.
func (h *Hub) spillEvent(w *watcher, flat []*Event, e *Event) {
	if w.bufEnd > 0 {
		run := flat[w.bufStart:w.bufEnd]
		h.spill[w] = append(make([]*Event, 0, len(run)+4), run...)
		w.bufEnd = -1
	}
	h.spill[w] = append(h.spill[w], e)
}

// deliverLive queues the events notify collected for a synced or victim
// watcher, or keeps them aside.
func (h *Hub) deliverLive(w *watcher, evs []*Event, now time.Duration) {
	if w.state == stateVictim {
		h.addPending(w, evs)
		return
	}
	r := Response{Kind: KindEvents, WatchID: w.id, Revision: h.rev, Events: evs, PrevKV: w.prevKV, size: eventsSize(evs)}
	if w.s.push(r, false, now) {
		return
	}
	h.makeVictim(w, evs)
}

// makeVictim makes w, whose events evs its stream's queue refused, a
// victim that keeps them aside.
func (h *Hub) makeVictim(w *watcher, evs []*Event) {
	w.state = stateVictim
	w.victim = &victimBuf{from: evs[0].KV.ModRevision}
	h.victims[w] = struct{}{}
	h.addPending(w, evs)
	kick(h.victimc)
}

// addPending keeps a victim's events aside, or, over its stream's bound,
// drops them and makes the watcher unsynced from its first pending
// revision.
func (h *Hub) addPending(w *watcher, evs []*Event) {
	size := eventsSize(evs)
	vb := w.victim
	if w.s.pendingBytes+size > w.s.opts.MaxPendingBytes {
		from := vb.from
		h.leaveGroup(w)
		h.setUnsynced(w, from)
		return
	}
	vb.events = append(vb.events, evs...)
	vb.size += size
	w.s.pendingBytes += size
}

func eventsSize(evs []*Event) int {
	n := 0
	for _, e := range evs {
		n += e.size
	}
	return n
}

// watch registers w on s; see Stream.Watch.
func (h *Hub) watch(s *Stream, w *watcher, req *WatchRequest, compact int64) (int64, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, ErrClosed
	}
	if s.closed.Load() {
		return 0, ErrStreamClosed
	}
	if s.lookup(w.id) != nil {
		return 0, ErrWatchExists
	}
	if s.queued() > 4*s.opts.MaxQueueResponses {
		return 0, ErrStreamFull
	}
	rev := h.rev
	now := h.clock()
	w.state = stateDone
	s.addWatcher(w)
	s.push(Response{Kind: KindCreated, WatchID: w.id, Revision: rev}, true, now)
	switch {
	case req.StartRev > 0 && req.StartRev < compact:
		h.compacted(w, compact, now)
	case req.StartRev == 0 && w.snap:
		h.startSnapshot(w, now)
	case req.StartRev == 0 || req.StartRev > rev:
		h.toSynced(w, now)
	default:
		h.setUnsynced(w, req.StartRev)
		if h.recent.covers(w.nextRev) && h.recent.eventsSince(w.nextRev) <= lockedCatchUp {
			h.catchUpRecent(w, now)
		}
	}
	return rev, nil
}

// cancelWatch ends the watch id of s with KindCanceled.
func (h *Hub) cancelWatch(s *Stream, id, reason string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if s.closed.Load() {
		return ErrStreamClosed
	}
	w := s.lookup(id)
	if w == nil {
		return ErrWatchNotFound
	}
	now := h.clock()
	s.push(Response{Kind: KindCanceled, WatchID: id, Revision: h.rev, Reason: reason}, true, now)
	h.endWatcher(w, now)
	return nil
}

// requestProgress queues a stream-level (id "") or per-watch bookmark, now
// or when the watches catch up.
func (h *Hub) requestProgress(s *Stream, id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if s.closed.Load() {
		return ErrStreamClosed
	}
	now := h.clock()
	if id == "" {
		s.progressWanted = true
		h.streamProgress(s, now)
		return nil
	}
	w := s.lookup(id)
	if w == nil {
		return ErrWatchNotFound
	}
	w.progressWanted = true
	if w.state == stateSynced {
		h.caughtUp(w, now)
	}
	return nil
}

// closeStreamLocked ends every watch of s and closes it; with drop its
// queue is emptied too.
func (h *Hub) closeStreamLocked(s *Stream, drop bool) {
	if s.closed.Load() {
		return
	}
	s.closed.Store(true)
	for _, w := range s.watchers {
		h.leaveGroup(w)
		w.sidx = -1
	}
	clear(s.watchers)
	s.watchers, s.byID = nil, nil
	delete(h.streams, s)
	if s.heapIdx >= 0 {
		h.progress.remove(s)
	}
	s.closeQueue(drop)
}
