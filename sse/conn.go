package sse

import (
	"errors"
	"net/http"
	"time"

	"github.com/watchgate/watchgate/watchhub"
)

// conn is one streaming response: it turns the hub stream's responses into
// wire messages, one write and one flush per drained batch.
type conn struct {
	h   *Handler
	w   http.ResponseWriter
	r   *http.Request
	rc  *http.ResponseController
	st  *watchhub.Stream
	enc Encoder
	// startRev and startSub are where the stream starts: no event before
	// them is sent, and no bookmark that would move the client back.
	startRev int64
	startSub int32

	resps []watchhub.Response

	// Change events encoded since the last flush and the earliest notify
	// time among them, kept only when Options.OnSend is set.
	sent         int
	oldestNotify time.Time
}

// run streams until the watch ends, the client goes, the hub closes or
// the handler shuts down.
func (c *conn) run() {
	// A server's ReadTimeout would otherwise cut a long stream: the
	// request has been read, what follows is the client's silence.
	_ = c.rc.SetReadDeadline(time.Time{})
	c.enc.WriteRetry(jitterRetry(c.h.opts.RetryMin, c.h.opts.RetryMax))
	if !c.flush() {
		return
	}
	var heartbeat <-chan time.Time
	var hbTimer *time.Timer
	if c.enc.Format == FormatSSE && c.h.opts.Heartbeat > 0 {
		hbTimer = time.NewTimer(c.h.opts.Heartbeat)
		defer hbTimer.Stop()
		heartbeat = hbTimer.C
	}
	for {
		last := false
		select {
		case <-c.st.Ready():
		case <-c.st.Done():
			// The hub closed: send what it queued before, then end so the
			// client reconnects.
			last = true
		case <-c.r.Context().Done():
			return
		case <-c.h.done:
			return
		case <-heartbeat:
			c.enc.WriteComment("heartbeat")
		}
		c.resps = c.st.Drain(c.resps[:0])
		end := c.encode()
		clear(c.resps) // drop the events for the garbage collector
		if !c.flush() || end || last {
			return
		}
		if hbTimer != nil {
			hbTimer.Reset(c.h.opts.Heartbeat)
		}
	}
}

// encode appends the drained responses to the encoder and reports whether
// the stream must end after them.
func (c *conn) encode() (end bool) {
	for i := range c.resps {
		r := &c.resps[i]
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
func (c *conn) writeEvents(r *watchhub.Response) error {
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
func (c *conn) writeError(err error) {
	c.h.log.Error().Err(err).Str("path", c.r.URL.EscapedPath()).Msg("watch stream failed")
	render := c.h.opts.ProblemJSON
	if render == nil {
		render = internalProblem
	}
	if werr := c.enc.WriteError(render(err)); werr != nil {
		_ = c.enc.WriteError(internalProblem(err))
	}
}

// flush sends the encoded batch with one write and one flush, under the
// write deadline, and reports whether the client took it.
func (c *conn) flush() bool {
	if c.enc.Len() == 0 {
		return true
	}
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.h.opts.WriteTimeout))
	_, err := c.w.Write(c.enc.Bytes())
	if err == nil {
		err = c.rc.Flush()
	}
	// Clear the deadline: over HTTP/2 an expired deadline resets the
	// stream even while nothing is being written.
	_ = c.rc.SetWriteDeadline(time.Time{})
	c.enc.Reset()
	sent, oldest := c.sent, c.oldestNotify
	c.sent, c.oldestNotify = 0, time.Time{}
	if err != nil {
		c.h.log.Debug().Err(err).Str("path", c.r.URL.EscapedPath()).Msg("watch stream write failed")
		return false
	}
	if sent > 0 {
		c.h.opts.OnSend(sent, oldest)
	}
	return true
}
