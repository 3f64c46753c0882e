package watchhub

import "time"

// victimLoop queues the pending events of victims whose streams have room
// again, until Close. It runs when a stream with a victim drains, and every
// RetryInterval.
func (h *Hub) victimLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stopc:
			return
		case <-h.victimc:
		case <-t.C:
		}
		h.retryVictims()
	}
}

// retryVictims queues each victim's pending events as one response when
// its stream has room and returns it to the synced group. A victim stayed
// in the synced index throughout, so its pending events and the commits
// since are everything up to the hub's revision.
func (h *Hub) retryVictims() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.victims) == 0 {
		return
	}
	now := h.clock()
	for w := range h.victims {
		if !w.s.hasRoom() {
			w.s.kick.Store(true)
			continue
		}
		vb := w.victim
		r := Response{Kind: KindEvents, WatchID: w.id, Revision: h.rev, Events: vb.events, PrevKV: w.prevKV, size: vb.size}
		if !w.s.push(r, false, now) {
			continue
		}
		w.s.pendingBytes -= vb.size
		w.victim = nil
		delete(h.victims, w)
		w.state = stateSynced
		h.caughtUp(w, now)
	}
}
