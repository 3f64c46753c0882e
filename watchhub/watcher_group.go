package watchhub

import "time"

// The transitions between the watcher groups. All are called with Hub.mu
// held.

// leaveGroup takes w out of its group; its state is then meaningless until
// the caller sets the next one.
func (h *Hub) leaveGroup(w *watcher) {
	switch w.state {
	case stateSynced:
		h.synced.remove(w)
	case stateVictim:
		h.synced.remove(w)
		w.s.pendingBytes -= w.victim.size
		w.victim = nil
		delete(h.victims, w)
	case stateUnsynced:
		delete(h.unsynced, w)
	case stateSnapshot:
		delete(h.snapshots, w)
	}
	w.state = stateDone
}

// setUnsynced puts w, out of any group, in the unsynced group from rev.
func (h *Hub) setUnsynced(w *watcher, rev int64) {
	w.state = stateUnsynced
	w.nextRev = rev
	h.unsynced[w] = struct{}{}
	h.kickSync()
}

// toSynced moves w, which has been queued everything up to the hub's
// revision, into the synced group.
func (h *Hub) toSynced(w *watcher, now time.Duration) {
	h.leaveGroup(w)
	w.state = stateSynced
	w.nextRev = 0
	h.synced.add(w)
	h.caughtUp(w, now)
}

// caughtUp sends the bookmarks that waited for w to catch up; for a
// watcher that starts beyond the hub's revision, once the hub reaches it.
func (h *Hub) caughtUp(w *watcher, now time.Duration) {
	if w.ahead(h.rev) {
		h.ahead = append(h.ahead, w)
		return
	}
	if w.progressWanted {
		w.progressWanted = false
		w.s.push(Response{Kind: KindWatchProgress, WatchID: w.id, Revision: h.rev}, true, now)
	}
	h.streamProgress(w.s, now)
}

// streamProgress queues a wanted stream-level bookmark if every watch of s
// is caught up.
func (h *Hub) streamProgress(s *Stream, now time.Duration) {
	if s.progressWanted && streamCaughtUp(s, h.rev) {
		s.progressWanted = false
		s.push(Response{Kind: KindProgress, Revision: h.rev}, true, now)
	}
}

// streamCaughtUp reports whether every watch of s has been queued every
// event up to the hub's revision rev, and none starts beyond it (a
// bookmark at rev would then go below what its client has seen).
func streamCaughtUp(s *Stream, rev int64) bool {
	for _, w := range s.watchers {
		if w.state != stateSynced || w.ahead(rev) {
			return false
		}
	}
	return true
}

// releaseAhead sends the bookmarks of the watchers in h.ahead that the
// hub's revision has reached. A watcher no longer synced is dropped: it
// comes back through caughtUp when it is synced again.
func (h *Hub) releaseAhead(now time.Duration) {
	keep := h.ahead[:0]
	var reached []*watcher
	for _, w := range h.ahead {
		switch {
		case w.state != stateSynced:
		case w.ahead(h.rev):
			keep = append(keep, w)
		default:
			reached = append(reached, w)
		}
	}
	clear(h.ahead[len(keep):])
	h.ahead = keep
	for _, w := range reached {
		h.caughtUp(w, now)
	}
}

// endWatcher removes w from its group and its stream.
func (h *Hub) endWatcher(w *watcher, now time.Duration) {
	h.leaveGroup(w)
	if w.sidx >= 0 {
		w.s.removeWatcher(w)
	}
	h.streamProgress(w.s, now)
}

// compacted ends w, whose next revision was compacted, or heals a snapshot
// watch with a fresh snapshot.
func (h *Hub) compacted(w *watcher, compact int64, now time.Duration) {
	if w.snap {
		h.startSnapshot(w, now)
		return
	}
	w.s.push(Response{Kind: KindCompacted, WatchID: w.id, Revision: h.rev, CompactRevision: compact}, true, now)
	h.endWatcher(w, now)
}

// failWatcher ends w with KindError.
func (h *Hub) failWatcher(w *watcher, err error, now time.Duration) {
	w.s.push(Response{Kind: KindError, WatchID: w.id, Revision: h.rev, Err: err}, true, now)
	h.endWatcher(w, now)
}

// startSnapshot (re)starts w's snapshot at the hub's revision.
func (h *Hub) startSnapshot(w *watcher, now time.Duration) {
	h.leaveGroup(w)
	w.state = stateSnapshot
	h.snapGen++
	w.snapshot = &snapState{rev: h.rev, key: w.key(), gen: h.snapGen}
	h.snapshots[w] = struct{}{}
	w.s.push(Response{Kind: KindReset, WatchID: w.id, Revision: h.rev}, true, now)
	h.kickSync()
}
