package watchhub

import (
	"container/heap"
	"time"
)

// streamHeap orders the streams that want idle bookmarks by when their
// next one is due. It is guarded by Hub.mu.
type streamHeap []*Stream

func (q streamHeap) Len() int           { return len(q) }
func (q streamHeap) Less(i, j int) bool { return q[i].progressDue < q[j].progressDue }
func (q streamHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].heapIdx = i
	q[j].heapIdx = j
}
func (q *streamHeap) Push(x any) {
	s := x.(*Stream)
	s.heapIdx = len(*q)
	*q = append(*q, s)
}
func (q *streamHeap) Pop() any {
	old := *q
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	s.heapIdx = -1
	return s
}

func (q *streamHeap) push(s *Stream)   { heap.Push(q, s) }
func (q *streamHeap) remove(s *Stream) { heap.Remove(q, s.heapIdx) }

// progressLoop sends idle bookmarks until Close: a stream with a
// ProgressInterval that has had nothing queued for that long gets a
// KindProgress at the hub's revision, if every watch of it is caught up
// (a bookmark never passes an event not yet queued).
func (h *Hub) progressLoop() {
	defer h.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(h.progressTick())
		select {
		case <-h.stopc:
			return
		case <-h.progressc:
		case <-timer.C:
		}
	}
}

// progressTick sends the bookmarks that are due and returns how long to
// wait for the next.
func (h *Hub) progressTick() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.clock()
	for len(h.progress) > 0 && h.progress[0].progressDue <= now {
		s := h.progress[0]
		every := s.opts.ProgressInterval
		if last := time.Duration(s.lastPush.Load()); now-last < every {
			s.progressDue = last + every
		} else {
			if streamCaughtUp(s, h.rev) {
				s.push(Response{Kind: KindProgress, Revision: h.rev}, true, now)
			}
			s.progressDue = now + every
		}
		heap.Fix(&h.progress, 0)
	}
	if len(h.progress) == 0 {
		return time.Hour
	}
	return h.progress[0].progressDue - now
}
