package sse

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/watchgate/watchgate/watchhub"
)

// conn is one streaming response: it turns the hub stream's responses into
// wire messages, one write and one flush per drained batch.
//
// The write timeout is kept by a watchdog rather than a write deadline
// (over HTTP/2 each SetWriteDeadline is a message to the connection's
// serve goroutine and a timer, twice a flush, and a deadline left armed on
// an idle stream would reset it): each flush records when it began, and
// the stream's one timer, which also sends the heartbeats, fires no later
// than WriteTimeout after the start of a flush in progress. A flush found
// still going after WriteTimeout is cut as an expired deadline would cut
// it (SetWriteDeadline in the past): over HTTP/2 the stream is reset, over
// HTTP/1.1 the connection is closed, and the client resumes.
type conn struct {
	w  http.ResponseWriter
	r  *http.Request
	rc *http.ResponseController
	// flusher is the innermost writer's FlushError, found once: the
	// header is written, so the wrappers' Flush would add nothing.
	flusher interface{ FlushError() error }
	st      *watchhub.Stream
	feed

	// lastWrite is when the last flush began (monotonic nanoseconds),
	// for heartbeats.
	lastWrite int64
	// timerAt is when the timer fires next (monotonic nanoseconds), 0
	// when it is not set.
	timerAt atomic.Int64
	// mu orders the timer's goroutine (onTimer) with the stream's: the
	// timer's creation, the start and end of each flush and the end of
	// the handler, after which the response must not be touched.
	mu sync.Mutex
	// timer runs onTimer; nil until the first flush.
	timer *time.Timer
	// flushing is when the flush in progress began, 0 when none is.
	flushing int64
	// ended is set when the handler returns.
	ended bool
	// wake is kicked by the timer and by Shutdown.
	wake chan struct{}
	// ctxDone is the request's context's Done.
	ctxDone <-chan struct{}
	// prev and next link the Handler's streams, under Handler.mu.
	prev, next *conn
}

// feed encodes a hub stream's responses for one response body: the
// encoder, the start position and the pooled buffer, shared by a stream
// served on its handler's goroutine (conn) and a detached one (source).
type feed struct {
	h *Handler
	// path is the request's escaped path, for the log.
	path string
	enc  Encoder
	// startRev and startSub are where the stream starts: no event before
	// them is sent, and no bookmark that would move the client back.
	startRev int64
	startSub int32
	// bp holds enc's buffer while it comes from bufPool, nil otherwise.
	bp *[]byte

	// Change events encoded since the last flush and the earliest notify
	// time among them, kept only when Options.OnSend is set.
	sent         int
	oldestNotify time.Time
}

// monoBase is the origin of the monotonic times of conn.
var monoBase = time.Now()

// monoNow is the monotonic time in nanoseconds since monoBase.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// run streams until the watch ends, the client goes, the hub closes or
// the handler shuts down.
func (c *conn) run() {
	// A server's ReadTimeout would otherwise cut a long stream: the
	// request has been read, what follows is the client's silence. (Over
	// HTTP/2 clearing it is a message to the connection's goroutine: not
	// when the server has none.)
	if srv, _ := c.r.Context().Value(http.ServerContextKey).(*http.Server); srv == nil || srv.ReadTimeout > 0 {
		_ = c.rc.SetReadDeadline(time.Time{})
	}
	c.flusher = flusherOf(c.w)
	c.ctxDone = c.r.Context().Done()
	defer func() {
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
		if c.timer != nil {
			c.timer.Stop()
		}
	}()
	c.enc.WriteRetry(jitterRetry(c.h.opts.RetryMin, c.h.opts.RetryMax))
	// The header goes now, with the retry line if any (an NDJSON stream
	// has none): the client knows its watch is registered.
	if !c.flush(true) {
		return
	}
	for c.wait() {
	}
}

// wait waits for the next thing to do, does it, and reports whether the
// stream goes on.
func (c *conn) wait() bool {
	last := false
	select {
	case <-c.st.Ready():
	case <-c.st.Done():
		// The hub closed: send what it queued before, then end so the
		// client reconnects.
		last = true
	case <-c.ctxDone:
		return false
	case <-c.wake:
		select {
		case <-c.h.done:
			return false
		default:
		}
		now := monoNow()
		if at := c.timerAt.Load(); at == 0 || now < at {
			return true // the timer has been set again since it fired
		}
		c.timerAt.Store(0)
		if !c.tick(now) {
			return true
		}
	}
	resps := c.st.Drain(nil)
	if len(resps) > 0 {
		c.takeBuf()
	}
	end := c.encode(resps)
	c.st.Release(resps) // drops the events; an idle stream holds no array
	return c.flush(false) && !end && !last
}

// tick is the timer's work on the stream's goroutine: it writes a
// heartbeat when the stream has been silent for Options.Heartbeat, which
// it reports; otherwise it sets the timer for the next one.
func (c *conn) tick(now int64) (heartbeat bool) {
	if hb := c.heartbeat(); hb > 0 && now-c.lastWrite >= int64(hb) {
		c.enc.WriteComment("heartbeat")
		return true
	}
	c.schedule()
	return false
}

// heartbeat is the stream's heartbeat interval, 0 for none.
func (c *conn) heartbeat() time.Duration {
	if c.enc.Format != FormatSSE {
		return 0
	}
	return c.h.opts.Heartbeat
}

// schedule sets the timer for the next heartbeat, unless it is set to
// fire before.
func (c *conn) schedule() {
	hb := c.heartbeat()
	if hb <= 0 {
		return
	}
	at := c.lastWrite + int64(hb)
	if cur := c.timerAt.Load(); cur != 0 && cur <= at {
		return
	}
	c.setTimer(at, monoNow())
}

// setTimer makes the timer fire at at.
func (c *conn) setTimer(at, now int64) {
	c.timerAt.Store(at)
	d := time.Duration(at - now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.onTimer)
		return
	}
	c.timer.Reset(d)
}

// onTimer runs on the timer's own goroutine. With a flush in progress it
// is the watchdog: it cuts the stream when the flush began WriteTimeout
// ago or more, and otherwise fires again when it will have. Otherwise it
// wakes the stream's goroutine, for a heartbeat.
func (c *conn) onTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.ended:
	case c.flushing != 0:
		now, wt := monoNow(), int64(c.h.opts.WriteTimeout)
		if now-c.flushing >= wt {
			// As an expired write deadline: the write in progress fails.
			_ = c.rc.SetWriteDeadline(time.Now().Add(-time.Second))
			return
		}
		c.timerAt.Store(c.flushing + wt)
		c.timer.Reset(time.Duration(c.flushing + wt - now))
	default:
		c.kick()
	}
}

// kick wakes the stream's goroutine; it may be called from any goroutine.
func (c *conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flusherOf finds the writer beneath w's wrappers that flushes with an
// error, as http.ResponseController does.
func flusherOf(w http.ResponseWriter) interface{ FlushError() error } {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return rcFlusher{http.NewResponseController(w)}
		}
	}
}

// rcFlusher flushes through a ResponseController (a writer that only
// implements http.Flusher, or none).
type rcFlusher struct{ rc *http.ResponseController }

func (f rcFlusher) FlushError() error { return f.rc.Flush() }

// encode appends the drained responses to the encoder and reports whether
// the stream must end after them.
func (c *feed) encode(resps []watchhub.Response) (end bool) {
	for i := range resps {
		r := &resps[i]
		switch r.Kind {
		case watchhub.KindEvents:
			if err := c.writeEvents(r); err != nil {
				c.writeError(err)
				return true
			}
		case watchhub.KindProgress:
			// A bookmark at P resumes at (P+1, 0): one before the start
			// would move the client back (a start in the future, as etcd
			// allows, or inside a revision).
			if r.Revision >= c.startRev || (r.Revision == c.startRev-1 && c.startSub == 0) {
				c.enc.WriteProgress(r.Revision)
			}
		case watchhub.KindReset:
			c.enc.WriteReset(r.Revision)
		case watchhub.KindSnapshot:
			for _, ev := range r.Events {
				c.enc.WriteSnapshotKV(r.Revision, &ev.KV)
			}
		case watchhub.KindSynced:
			c.enc.WriteSynced(r.Revision)
		case watchhub.KindCompacted:
			c.enc.WriteCompacted(r.CompactRevision, r.Revision)
			return true
		case watchhub.KindError:
			c.writeError(r.Err)
			return true
		case watchhub.KindCanceled:
			c.writeError(errors.New("sse: watch canceled: " + r.Reason))
			return true
		}
		// KindCreated was answered by the headers; KindWatchProgress is
		// never asked for.
	}
	return false
}

// writeEvents writes the events of one response with their ids: "R" for
// the last event of revision R in the response (a response never splits a
// revision), "R.S" for the others.
func (c *feed) writeEvents(r *watchhub.Response) error {
	// One growth of the buffer for the whole response: a catch-up batch is
	// about a megabyte, which event-by-event appends would reallocate and
	// copy a dozen times. The encodings are cached on the events, so
	// sizing them first costs nothing more.
	n := 0
	for _, ev := range r.Events {
		n += len(ev.Data(r.PrevKV)) + eventFraming
	}
	c.enc.buf = slices.Grow(c.enc.buf, n)
	for i, ev := range r.Events {
		rev := ev.KV.ModRevision
		// The hub starts the watch at (startRev, startSub); events before
		// it were seen by the client (Position.Unseen) and would repeat.
		if rev < c.startRev || (rev == c.startRev && ev.Sub < c.startSub) {
			continue
		}
		p := Position{Rev: rev}
		if !r.LastOfRevision(i) {
			p.Sub, p.HasSub = ev.Sub, true
		}
		if err := c.enc.WriteEventData(p, ev.Type, rev, ev.Data(r.PrevKV)); err != nil {
			return err
		}
		if c.h.opts.OnSend != nil {
			c.sent++
			if n := ev.Notified(); !n.IsZero() && (c.oldestNotify.IsZero() || n.Before(c.oldestNotify)) {
				c.oldestNotify = n
			}
		}
	}
	return nil
}

// writeError writes an error event; the stream ends after it.
func (c *feed) writeError(err error) {
	c.h.log.Error().Err(err).Str("path", c.path).Msg("watch stream failed")
	render := c.h.opts.ProblemJSON
	if render == nil {
		render = internalProblem
	}
	if werr := c.enc.WriteError(render(err)); werr != nil {
		_ = c.enc.WriteError(internalProblem(err))
	}
}

// flush sends the encoded batch with one write and one flush, under the
// watchdog, and reports whether the client took it. With force it flushes
// even an empty batch (the response header).
func (c *conn) flush(force bool) bool {
	if c.enc.Len() == 0 && !force {
		return true
	}
	now := monoNow()
	c.mu.Lock()
	c.flushing = now
	c.mu.Unlock()
	// The timer must fire by WriteTimeout from now: it does unless it is
	// not set, has fired already, or is set for later.
	if at, wt := c.timerAt.Load(), int64(c.h.opts.WriteTimeout); at <= now || at > now+wt {
		c.setTimer(now+wt, now)
	}
	c.lastWrite = now
	var err error
	if c.enc.Len() > 0 {
		_, err = c.w.Write(c.enc.Bytes())
	}
	if err == nil {
		err = c.flusher.FlushError()
	}
	c.mu.Lock()
	c.flushing = 0
	c.mu.Unlock()
	c.releaseBuf(err == nil)
	sent, oldest := c.takeSent()
	if err != nil {
		c.h.log.Debug().Err(err).Str("path", c.r.URL.EscapedPath()).Msg("watch stream write failed")
		return false
	}
	c.schedule()
	if sent > 0 {
		c.h.opts.OnSend(sent, oldest)
	}
	return true
}

// takeSent returns and resets the count of change events encoded since
// the last call and their earliest notify time.
func (c *feed) takeSent() (int, time.Time) {
	sent, oldest := c.sent, c.oldestNotify
	c.sent, c.oldestNotify = 0, time.Time{}
	return sent, oldest
}

// bufPool holds the encoding buffers of streams between batches, as
// *[]byte: an idle stream holds none, and a busy one reuses a buffer that
// has already grown to a batch rather than growing its own.
var bufPool sync.Pool

// maxPooledBuf is the largest buffer put back in bufPool (a batch is
// about the hub stream's MaxQueueBytes, 1 MiB by default, plus the SSE
// framing of its events).
const maxPooledBuf = 4 << 20

// eventFraming bounds what an event adds to its data on the wire: its id
// ("R.S"), event and data field names, and line ends.
const eventFraming = 64

// takeBuf gives the encoder a pooled buffer for a batch, keeping what it
// holds already (a heartbeat).
func (c *feed) takeBuf() {
	if c.bp != nil {
		return
	}
	c.bp, _ = bufPool.Get().(*[]byte)
	if c.bp == nil {
		c.bp = new([]byte)
	}
	c.enc.buf = append((*c.bp)[:0], c.enc.buf...)
}

// releaseBuf empties the encoder after a flush and, when the flush
// succeeded (the bytes have been copied to the connection's writer, or
// written), puts its buffer back in the pool. After a failed one the
// buffer is dropped: over HTTP/2 a frame of a stream being reset may
// still be on its way out from it.
func (c *feed) releaseBuf(flushed bool) {
	if c.bp == nil {
		// A small buffer of its own (the retry line, a heartbeat, a
		// bookmark): dropped, so that an idle stream holds nothing.
		c.enc.buf = nil
		return
	}
	if flushed && cap(c.enc.buf) <= maxPooledBuf {
		*c.bp = c.enc.buf[:0]
		bufPool.Put(c.bp)
	}
	c.bp = nil
	c.enc.buf = nil
}
