package h2srv

import (
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// A Source supplies the rest of a response body after its handler has
// returned, so that a long-lived stream (a watch) costs a struct rather
// than a goroutine. The connection's writer calls Fill when the stream is
// ready (see Detach) and has window; Fill and Close are called with the
// connection's lock held, one at a time, and must not block nor call the
// stream's ResponseWriter.
type Source interface {
	// Fill appends at most max bytes of the body to dst and returns it;
	// done reports that the body ends with these bytes. Returning fewer
	// than max bytes (and not done) means that the source has nothing
	// more until it calls ready again.
	Fill(dst []byte, max int) (out []byte, done bool)
	// Close is called once when the stream ends: after Fill reported
	// done, or when the peer reset it or the connection closed.
	Close()
}

// ErrNotDetachable is returned by Detach for a ResponseWriter that is not
// this package's.
var ErrNotDetachable = errors.New("h2srv: response writer cannot be detached")

// Detach hands the rest of w's response to src: the header is sent now,
// and once the handler returns its goroutine is gone while the stream
// stays open. ready wakes the connection's writer to call src.Fill; it
// may be called from any goroutine, at any time, also from within Fill,
// and costs nothing when the stream is already ready. What was written to
// w before Detach is sent before src's bytes; the handler must not use w
// after Detach. The request's context is cancelled when the handler
// returns, as always: src must not depend on it.
func Detach(w http.ResponseWriter, src Source) (ready func(), err error) {
	for {
		switch t := w.(type) {
		case *responseWriter:
			return t.detach(src)
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil, ErrNotDetachable
		}
	}
}

// CanDetach reports whether w is this package's ResponseWriter (beneath
// its wrappers, as for Detach) and has not been detached: whether Detach
// may take it over, unless its stream ends first.
func CanDetach(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case *responseWriter:
			return !t.detached
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

func (w *responseWriter) detach(src Source) (func(), error) {
	if w.detached {
		return nil, ErrNotDetachable
	}
	if err := w.FlushError(); err != nil {
		return nil, err
	}
	c, st := w.c, w.st
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.closed {
		return nil, ErrStreamClosed
	}
	w.detached = true
	st.src = src
	st.srcReady = true
	c.readyLocked(st)
	return func() { c.sourceReady(st) }, nil
}

// sourceReady marks st's source as having bytes, without the
// connection's lock: the writer moves the stream to the ready list.
func (c *conn) sourceReady(st *stream) {
	if !st.srcFlag.CompareAndSwap(false, true) {
		return
	}
	c.pmu.Lock()
	c.pending = append(c.pending, st)
	c.pmu.Unlock()
	c.kick()
}

// takePendingLocked moves the streams whose source called ready to the
// ready list.
func (c *conn) takePendingLocked() {
	c.pmu.Lock()
	list := c.pending
	c.pending = c.spare[:0]
	c.spare = list
	c.pmu.Unlock()
	for i, st := range list {
		list[i] = nil
		st.srcFlag.Store(false)
		if !st.closed {
			st.srcReady = true
			c.readyLocked(st)
		}
	}
}

func (c *conn) hasPending() bool {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return len(c.pending) > 0
}

// writeSourceLocked writes one DATA frame from st's source within the
// windows; it reports whether the source may have more to send now.
func (c *conn) writeSourceLocked(st *stream) bool {
	n := min(int64(c.peerFrame), st.sendWindow, c.sendWindow)
	if n <= 0 {
		c.noteStallLocked(st)
		return c.queueBlocked(st)
	}
	buf := append(c.obuf[:0], make([]byte, frameHeaderLen)...)
	buf, done := st.src.Fill(buf, int(n))
	c.obuf = buf[:0]
	size := len(buf) - frameHeaderLen
	if int64(size) > n {
		// A broken Source: never write past the windows.
		c.logf("h2srv: %v", errBadSource)
		_ = c.resetStreamLocked(st.id, http2.ErrCodeInternal)
		return false
	}
	if size == 0 && !done {
		st.srcReady = false
		return false
	}
	var flags byte
	if done {
		flags = 1 // END_STREAM
	}
	buf[0], buf[1], buf[2] = byte(size>>16), byte(size>>8), byte(size)
	buf[3], buf[4] = 0, flags // DATA
	buf[5], buf[6], buf[7], buf[8] = byte(st.id>>24), byte(st.id>>16), byte(st.id>>8), byte(st.id)
	c.wbuf.Write(buf)
	st.sendWindow -= int64(size)
	c.sendWindow -= int64(size)
	if done {
		c.endSentLocked(st)
		return false
	}
	if int64(size) < n {
		st.srcReady = false
		return false
	}
	// The source filled what the windows allowed: it may have more.
	c.noteStallLocked(st)
	return st.sendWindow > 0 && c.sendWindow > 0 || c.queueBlocked(st)
}

// noteStallLocked records when st, with bytes ready (its handler's output
// or its source's), found its send window at zero.
func (c *conn) noteStallLocked(st *stream) {
	if st.sendWindow <= 0 && st.stalled.IsZero() {
		st.stalled = time.Now()
		c.armStallLocked(c.opts.WriteTimeout)
	}
}

const frameHeaderLen = 9

var errBadSource = errors.New("h2srv: source filled past its limit")

// srcFlag is set by ready until the writer takes the stream.
type srcFlag = atomic.Bool

// armStallLocked makes onStall run in d unless it is due already.
func (c *conn) armStallLocked(d time.Duration) {
	if c.stallArmed || c.dead {
		return
	}
	c.stallArmed = true
	if c.stallTimer == nil {
		c.stallTimer = time.AfterFunc(d, c.onStall)
		return
	}
	c.stallTimer.Reset(d)
}

// onStall resets the streams whose send window has stayed at zero, with
// bytes ready (a handler's output waiting, or a detached stream's source
// ready), for Options.WriteTimeout: their peer keeps the connection but
// does not read them, and a watch's client is better told to reconnect
// (and resume) than left behind for good. It is what a write deadline
// does to a handler's blocked write, without one: the handler's Write
// fails, and a peer cannot hold handlers (their goroutines and buffers)
// for good by never opening their windows.
//
// It also ends the connection (GOAWAY ENHANCE_YOUR_CALM) whose own send
// window has stayed at zero that long while streams have bytes ready: a
// peer that opens stream windows but never the connection's holds every
// stream without a write in progress, so that neither the socket's write
// deadline nor the streams' stall fires. RFC 9113 has no error for a
// receiver that stops granting window (it violates no rule, so not
// FLOW_CONTROL_ERROR); section 10.5 lets an endpoint treat such abuse of
// flow control as ENHANCE_YOUR_CALM.
func (c *conn) onStall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stallArmed = false
	if c.dead {
		return
	}
	now, wt := time.Now(), c.opts.WriteTimeout
	var next time.Duration
	later := func(d time.Duration) {
		if next == 0 || d < next {
			next = d
		}
	}
	if !c.connStalled.IsZero() {
		switch age := now.Sub(c.connStalled); {
		case c.sendWindow > 0 || !c.connWaitersLocked():
			c.connStalled = time.Time{}
		case age >= wt:
			c.logf("h2srv: %v: no connection window for %v with streams ready, closing", c.remote, wt)
			c.goAwayLocked(http2.ErrCodeEnhanceYourCalm, true)
			return
		default:
			later(wt - age)
		}
	}
	for id, st := range c.streams {
		if st.stalled.IsZero() {
			continue
		}
		if st.sendWindow > 0 || (st.src == nil && len(st.out) == 0) {
			st.stalled = time.Time{}
			continue
		}
		if age := now.Sub(st.stalled); age < wt {
			later(wt - age)
			continue
		}
		c.logf("h2srv: stream %d: no window for %v, reset", id, wt)
		_ = c.resetStreamLocked(id, http2.ErrCodeCancel)
	}
	if next > 0 {
		c.armStallLocked(next)
	}
}

// connWaitersLocked reports whether a stream still open waits for the
// connection's send window.
func (c *conn) connWaitersLocked() bool {
	for _, st := range c.connBlocked {
		if !st.closed {
			return true
		}
	}
	return false
}
