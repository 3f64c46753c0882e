package sse

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/watchgate/watchgate/h2srv"
	"github.com/watchgate/watchgate/watchhub"
)

// source is a stream detached from its handler's goroutine (an HTTP/2
// stream of package h2srv): the connection's writer calls Fill, which
// drains the hub stream and encodes its responses straight into the
// connection's buffer, when the hub has queued responses (OnReady), a
// heartbeat is due or the Handler shuts down. It costs a struct, the
// hub stream and no goroutine.
//
// Fill and Close are called by the connection's writer one at a time;
// onReady, the heartbeat scan and Shutdown only touch the atomics.
type source struct {
	feed
	st *watchhub.Stream
	// off is how much of enc's buffer Fill has handed out.
	off int
	// end: the body ends once enc's buffer is handed out.
	end bool
	// closed is set by Close.
	closed bool
	// onEnd is the Request's OnEnd.
	onEnd func(detachedBytes int64)
	// written counts the bytes Fill handed out.
	written int64

	// ready wakes the connection's writer; nil until Detach returns.
	ready atomic.Pointer[func()]
	// lastWrite is when Fill last handed out bytes (monotonic ns).
	lastWrite atomic.Int64
	// hbDue is set by the heartbeat scan, taken by Fill.
	hbDue atomic.Bool
	// prev and next link the Handler's sources, under Handler.mu.
	prev, next *source
}

var _ h2srv.Source = (*source)(nil)

// onReady wakes the connection's writer; it is the hub stream's OnReady.
func (s *source) onReady() {
	if f := s.ready.Load(); f != nil {
		(*f)()
	}
}

// Fill hands out the encoded responses, draining and encoding more when
// it has handed out all it had.
func (s *source) Fill(dst []byte, max int) ([]byte, bool) {
	room := max
	for {
		if rest := s.enc.buf[s.off:]; len(rest) > 0 {
			n := min(len(rest), room)
			dst = append(dst, rest[:n]...)
			s.off += n
			s.written += int64(n)
			room -= n
			if s.off < len(s.enc.buf) {
				return dst, false // out of window: called again when it opens
			}
			s.handedOut()
			if room == 0 {
				return dst, s.end
			}
		}
		if s.end {
			return dst, true
		}
		if !s.refill() {
			return dst, false
		}
	}
}

// handedOut is called when the whole of enc's buffer has been copied out.
func (s *source) handedOut() {
	s.off = 0
	// The bytes are in the connection's buffer: the pooled one can go.
	s.releaseBuf(true)
	s.lastWrite.Store(monoNow())
	if sent, oldest := s.takeSent(); sent > 0 {
		s.h.opts.OnSend(sent, oldest)
	}
}

// refill drains the hub stream into enc's buffer and reports whether
// there is something to hand out or the body ends.
func (s *source) refill() bool {
	select {
	case <-s.h.done:
		// Shutdown: the client reconnects and resumes.
		s.end = true
		return true
	default:
	}
	last := false
	select {
	case <-s.st.Done():
		// The hub closed: send what it queued before, then end.
		last = true
	default:
	}
	resps := s.st.Drain(nil)
	if len(resps) > 0 {
		s.takeBuf()
		s.end = s.encode(resps)
	}
	s.st.Release(resps) // an idle stream holds no array
	if last {
		s.end = true
	}
	if s.hbDue.Swap(false) && s.enc.Len() == 0 && !s.end && s.heartbeat() > 0 {
		s.enc.WriteComment("heartbeat")
	}
	return s.enc.Len() > 0 || s.end
}

// heartbeat is the stream's heartbeat interval, 0 for none.
func (s *source) heartbeat() time.Duration {
	if s.enc.Format != FormatSSE {
		return 0
	}
	return s.h.opts.Heartbeat
}

// Close ends the stream: its body ended, the client reset it or the
// connection closed.
func (s *source) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.h.removeSource(s)
	s.st.Close()
	s.releaseBuf(false)
	s.off = 0
	s.h.active.Add(-1)
	if s.onEnd != nil {
		s.onEnd(s.written)
	}
}

// detach hands the stream over to w's connection writer and reports
// whether it did; when it did not, the stream has ended (the client
// went, or Shutdown began) and st is the caller's to close.
func (h *Handler) detach(w http.ResponseWriter, s *source, st *watchhub.Stream, f feed) bool {
	s.feed = f
	s.st = st
	s.enc.WriteRetry(jitterRetry(h.opts.RetryMin, h.opts.RetryMax))
	s.lastWrite.Store(monoNow())
	h.active.Add(1)
	if !h.addSource(s) {
		h.active.Add(-1)
		return false
	}
	ready, err := h2srv.Detach(w, s)
	if err != nil {
		h.removeSource(s)
		h.active.Add(-1)
		return false
	}
	s.ready.Store(&ready)
	// Responses queued before ready was stored woke nobody.
	ready()
	return true
}

// addSource lists s for Shutdown and the heartbeats, unless Shutdown has
// begun.
func (h *Handler) addSource(s *source) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
		return false
	default:
	}
	s.next = h.sources
	if h.sources != nil {
		h.sources.prev = s
	}
	h.sources = s
	if hb := s.heartbeat(); hb > 0 {
		if h.hbTimer == nil {
			h.hbTimer = time.AfterFunc(hb/heartbeatScans, h.scanHeartbeats)
		} else if s.next == nil {
			// The list was empty: the scan had stopped.
			h.hbTimer.Reset(hb / heartbeatScans)
		}
	}
	return true
}

// removeSource takes s off the list.
func (h *Handler) removeSource(s *source) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.prev != nil {
		s.prev.next = s.next
	} else if h.sources == s {
		h.sources = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
}

// heartbeatScans is how many times per heartbeat interval the detached
// streams are scanned: a silent stream gets its heartbeat between one and
// 1 + 1/heartbeatScans intervals after its last write.
const heartbeatScans = 4

// scanHeartbeats runs on the Handler's one heartbeat timer: it marks the
// detached streams silent for a heartbeat interval and wakes their
// writers, and sets the timer again while there are streams.
func (h *Handler) scanHeartbeats() {
	hb := h.opts.Heartbeat
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
		return
	default:
	}
	now := monoNow()
	for s := h.sources; s != nil; s = s.next {
		if s.heartbeat() > 0 && now-s.lastWrite.Load() >= int64(hb) {
			s.hbDue.Store(true)
			s.onReady()
		}
	}
	if h.sources != nil {
		h.hbTimer.Reset(hb / heartbeatScans)
	}
}
