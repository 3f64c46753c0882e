package watchhub

import (
	"errors"
	"time"

	"github.com/watchgate/watchgate/kv"
)

// syncItem is an unsynced watcher chosen for one round of the sync loop,
// with the revision it needed when chosen and the events found for it.
type syncItem struct {
	w    *watcher
	from int64
	evs  []*Event
}

// snapItem is a snapshot watcher chosen for one round, with what was read.
type snapItem struct {
	w   *watcher
	gen uint32
	rev int64
	key string
	res kv.RangeResult
	err error
}

// syncLoop serves unsynced and snapshot watchers until Close. It runs a
// round whenever woken (a watcher fell behind, a stream drained) or every
// RetryInterval, and keeps running rounds while they make progress.
func (h *Hub) syncLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stopc:
			return
		case <-h.syncc:
		case <-t.C:
		}
		for {
			snap := h.syncSnapshots()
			if !h.syncUnsynced() && !snap {
				break
			}
			select {
			case <-h.stopc:
				return
			default:
			}
		}
	}
}

// syncUnsynced runs one catch-up round: it chooses up to SyncWatchers
// unsynced watchers whose streams have room, reads once, from the smallest
// revision they need up to the hub's revision, from the recent window or
// the store (never under mu), matches outside mu, then queues each its
// events under mu and moves those that reached the hub's revision to the
// synced group. It reports whether any watcher moved forward.
func (h *Hub) syncUnsynced() bool {
	h.mu.Lock()
	if len(h.unsynced) == 0 || h.closed {
		h.mu.Unlock()
		return false
	}
	target := h.rev
	now := h.clock()
	progressed := false
	var items []syncItem
	minRev := target + 1
	// budget bounds the events matched under mu in this round; watchers
	// beyond it are matched outside mu like those catching up from disk.
	budget := int64(4 * lockedCatchUp)
	for w := range h.unsynced {
		if !w.s.hasRoom() {
			w.s.kick.Store(true)
			continue
		}
		if w.nextRev > target {
			h.toSynced(w, now)
			progressed = true
			continue
		}
		if h.recent.covers(w.nextRev) {
			if n := h.recent.eventsSince(w.nextRev); n <= lockedCatchUp && n <= budget {
				budget -= n
				progressed = h.catchUpRecent(w, now) || progressed
				continue
			}
		}
		items = append(items, syncItem{w: w, from: w.nextRev})
		minRev = min(minRev, w.nextRev)
		if len(items) >= h.opts.SyncWatchers {
			break
		}
	}
	if len(items) == 0 {
		h.mu.Unlock()
		return progressed
	}
	var batches []revBatch
	next := int64(0)
	fromMemory := h.recent.covers(minRev)
	if fromMemory {
		batches, next = h.recent.since(minRev, h.opts.SyncEvents, nil)
		if next == 0 {
			next = target + 1
		}
	}
	h.mu.Unlock()

	if !fromMemory {
		var err error
		batches, next, err = h.readHistory(minRev, target)
		if err != nil {
			return h.syncFailed(items, err)
		}
	}
	matchItems(items, batches)

	h.mu.Lock()
	defer h.mu.Unlock()
	now = h.clock()
	for i := range items {
		it := &items[i]
		w := it.w
		if w.state != stateUnsynced || w.nextRev != it.from || next <= it.from {
			// Gone, moved on, or needing revisions after this read.
			continue
		}
		if len(it.evs) > 0 {
			r := Response{Kind: KindEvents, WatchID: w.id, Revision: next - 1, Events: it.evs, PrevKV: w.prevKV, size: eventsSize(it.evs)}
			if !w.s.push(r, false, now) {
				continue
			}
		}
		progressed = true
		w.nextRev = next
		if w.nextRev > h.rev {
			h.toSynced(w, now)
		} else if h.recent.covers(w.nextRev) && h.recent.eventsSince(w.nextRev) <= lockedCatchUp {
			h.catchUpRecent(w, now)
		}
	}
	clear(items)
	return progressed
}

// readHistory reads the store's history from from to to and wraps it, with
// one allocation for all the wrappers and one for their pointers, and one
// arena for their encodings; the store's events are not copied.
func (h *Hub) readHistory(from, to int64) ([]revBatch, int64, error) {
	kbs, next, err := h.store.History(h.ctx, from, to, h.opts.SyncEvents)
	if err != nil {
		return nil, 0, err
	}
	total := 0
	for i := range kbs {
		total += len(kbs[i].Events)
	}
	store := make([]Event, total)
	flat := make([]*Event, total)
	batches := make([]revBatch, len(kbs))
	arena := new(encArena)
	n := 0
	for i := range kbs {
		start, size := n, 0
		for j := range kbs[i].Events {
			e := &store[n]
			e.Event = &kbs[i].Events[j] // History's result is the caller's
			e.arena = arena
			e.size = eventSize(e.Event)
			size += e.size
			flat[n] = e
			n++
		}
		batches[i] = revBatch{rev: kbs[i].Revision, events: flat[start:n:n], size: size}
	}
	return batches, next, nil
}

// syncFailed handles a failed history read of a round: watchers whose
// revision was compacted get KindCompacted (or a fresh snapshot); any other
// store error ends the chosen watchers with KindError, except when the hub
// is closing.
func (h *Hub) syncFailed(items []syncItem, err error) bool {
	if h.ctx.Err() != nil {
		return false
	}
	var compact int64
	if errors.Is(err, kv.ErrCompacted) {
		_, compact = h.store.Revisions()
	} else {
		h.log.Error().Err(err).Msg("watchhub: reading history for unsynced watchers")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock()
	progressed := false
	for _, it := range items {
		w := it.w
		if w.state != stateUnsynced || w.nextRev != it.from {
			continue
		}
		switch {
		case compact == 0:
			h.failWatcher(w, err, now)
			progressed = true
		case w.nextRev < compact:
			h.compacted(w, compact, now)
			progressed = true
		}
	}
	return progressed
}

// matchItems hands each item the events of batches it wants, from its own
// revision on. Few items are checked one by one; more are found per event
// through a map of their keys and an interval tree of their ranges, built
// for the round (of stand-in watchers, so that the items' own watchers,
// which the lock guards, are not touched).
func matchItems(items []syncItem, batches []revBatch) {
	if len(items) <= 8 {
		for i := range items {
			it := &items[i]
			for _, b := range batches {
				if b.rev < it.from {
					continue
				}
				for _, e := range b.events {
					if it.w.wants(e) {
						it.evs = append(it.evs, e)
					}
				}
			}
		}
		return
	}
	keys := make(map[string][]int)
	var ranges intervalTree
	for i := range items {
		w := items[i].w
		if w.single {
			keys[w.key()] = append(keys[w.key()], i)
			continue
		}
		ranges.add(w.bounds, int(w.keyLen), w.endInf, int32(i))
	}
	var found []int32
	for _, b := range batches {
		for _, e := range b.events {
			for _, i := range keys[bytesString(e.KV.Key)] {
				if it := &items[i]; b.rev >= it.from && it.w.accepts(e) {
					it.evs = append(it.evs, e)
				}
			}
			if ranges.len() == 0 {
				continue
			}
			found = ranges.stab(bytesString(e.KV.Key), found[:0])
			for _, i := range found {
				if it := &items[i]; b.rev >= it.from && it.w.accepts(e) {
					it.evs = append(it.evs, e)
				}
			}
		}
	}
}

// catchUpRecent queues for w, unsynced, the events it wants from the recent
// window up to the hub's revision and moves it to synced. The window must
// cover w.nextRev. It reports false, leaving w unchanged, when w's stream
// has no room.
func (h *Hub) catchUpRecent(w *watcher, now time.Duration) bool {
	var evs []*Event
	for i := h.recent.find(w.nextRev); i < h.recent.n; i++ {
		for _, e := range h.recent.at(i).events {
			if w.wants(e) {
				evs = append(evs, e)
			}
		}
	}
	if len(evs) > 0 {
		r := Response{Kind: KindEvents, WatchID: w.id, Revision: h.rev, Events: evs, PrevKV: w.prevKV, size: eventsSize(evs)}
		if !w.s.push(r, false, now) {
			return false
		}
	}
	w.nextRev = h.rev + 1
	h.toSynced(w, now)
	return true
}

// syncSnapshots runs one snapshot round: for up to SyncWatchers snapshot
// watchers whose streams have room it reads the next chunk of the range at
// the snapshot revision (outside mu) and queues it; a finished snapshot
// queues KindSynced and its watcher goes on from the next revision. It
// reports whether any snapshot moved forward.
func (h *Hub) syncSnapshots() bool {
	h.mu.Lock()
	if len(h.snapshots) == 0 || h.closed {
		h.mu.Unlock()
		return false
	}
	var items []snapItem
	for w := range h.snapshots {
		if !w.s.hasRoom() {
			w.s.kick.Store(true)
			continue
		}
		sn := w.snapshot
		items = append(items, snapItem{w: w, gen: sn.gen, rev: sn.rev, key: sn.key})
		if len(items) >= h.opts.SyncWatchers {
			break
		}
	}
	h.mu.Unlock()
	if len(items) == 0 {
		return false
	}
	for i := range items {
		it := &items[i]
		it.res, it.err = h.store.Range(h.ctx, kv.RangeRequest{
			Key:   []byte(it.key),
			End:   it.w.rangeEnd(),
			Rev:   it.rev,
			Limit: int64(h.opts.SnapshotChunk),
		})
	}
	if h.ctx.Err() != nil {
		return false
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock()
	progressed := false
	for i := range items {
		it := &items[i]
		w := it.w
		if w.state != stateSnapshot || w.snapshot.gen != it.gen || w.snapshot.key != it.key {
			continue
		}
		if it.err != nil {
			if errors.Is(it.err, kv.ErrCompacted) {
				h.startSnapshot(w, now)
			} else {
				h.log.Error().Err(it.err).Msg("watchhub: reading a snapshot")
				h.failWatcher(w, it.err, now)
			}
			progressed = true
			continue
		}
		if len(it.res.KVs) > 0 {
			kevs := make([]kv.Event, len(it.res.KVs))
			evs := make([]Event, len(it.res.KVs))
			ptrs := make([]*Event, len(it.res.KVs))
			for j := range it.res.KVs {
				kevs[j] = kv.Event{Type: kv.EventPut, KV: it.res.KVs[j]}
				evs[j].Event = &kevs[j]
				evs[j].size = eventSize(&kevs[j])
				ptrs[j] = &evs[j]
			}
			r := Response{Kind: KindSnapshot, WatchID: w.id, Revision: it.rev, Events: ptrs, PrevKV: w.prevKV, size: eventsSize(ptrs)}
			if !w.s.push(r, false, now) {
				continue
			}
		}
		progressed = true
		if it.res.More && len(it.res.KVs) > 0 {
			w.snapshot.key = string(it.res.KVs[len(it.res.KVs)-1].Key) + "\x00"
			continue
		}
		w.s.push(Response{Kind: KindSynced, WatchID: w.id, Revision: it.rev}, true, now)
		h.leaveGroup(w)
		w.snapshot = nil
		h.setUnsynced(w, it.rev+1)
		if w.nextRev > h.rev {
			h.toSynced(w, now)
		} else if h.recent.covers(w.nextRev) && h.recent.eventsSince(w.nextRev) <= lockedCatchUp {
			h.catchUpRecent(w, now)
		}
	}
	return progressed
}

// rangeEnd returns w's range end in the store's conventions.
func (w *watcher) rangeEnd() []byte {
	switch {
	case w.single:
		return nil
	case w.endInf:
		return []byte{0}
	}
	return []byte(w.end())
}
