package h2srv

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http2"
)

// responseWriter is the http.ResponseWriter of one stream. Until the
// response is committed (its first Flush, or more than responseBuffer
// bytes, or the handler's return) the body is kept here, so that a short
// response gets a Content-Length and a sniffed Content-Type; then the
// header block and the body go to the stream for the writer.
type responseWriter struct {
	c   *conn
	st  *stream
	req *http.Request

	header      http.Header
	sent        http.Header // the header as of WriteHeader
	status      int
	wroteHeader bool
	committed   bool
	bodyless    bool // HEAD, 204 or 304: the body is discarded
	detached    bool // the body comes from a Source
	buf         []byte
	bufPool     *[]byte // from outPool, the array beneath buf once it is large
}

// Header returns the response header; changes after WriteHeader only
// matter for trailers.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader records the status; the header block is sent with the first
// flush. Informational statuses (1xx) are not sent.
func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader || code < 200 {
		return
	}
	w.wroteHeader = true
	w.status = code
	w.sent = w.header.Clone()
	w.bodyless = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}

// Write writes body bytes; it blocks while the writer has more than
// responseBuffer bytes of this stream to send (the peer's window is
// closed), until the write deadline.
func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.bodyless {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if !w.committed {
		if need := len(w.buf) + len(p); need <= responseBuffer {
			if need > cap(w.buf) && need > keptOutBuffer && w.bufPool == nil {
				w.bufPool = outPool.Get().(*[]byte)
				w.buf = append((*w.bufPool)[:0], w.buf...)
			}
			w.buf = append(w.buf, p...)
			return len(p), nil
		}
		if err := w.commit(false); err != nil {
			return 0, err
		}
	}
	return w.send(p, false)
}

// WriteString is Write for a string.
func (w *responseWriter) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// Flush sends what has been written.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError sends what has been written; it fails once the stream was
// reset or the connection closed. It does not wait for the socket.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		return w.commit(false)
	}
	_, err := w.send(nil, true)
	return err
}

// SetWriteDeadline bounds the writes that wait for the peer's window; a
// deadline in the past fails a write in progress and resets the stream.
func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	w.c.mu.Lock()
	w.st.writeDeadline = t
	w.st.signal()
	w.c.mu.Unlock()
	return nil
}

// SetReadDeadline bounds the reads of the request body.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	w.c.mu.Lock()
	w.st.readDeadline = t
	if w.st.body != nil {
		w.st.body.signal()
	}
	w.c.mu.Unlock()
	return nil
}

// EnableFullDuplex does nothing: HTTP/2 is always full duplex.
func (w *responseWriter) EnableFullDuplex() error { return nil }

// commit hands the header block, and the body kept so far, to the stream.
// final is true at the handler's return: the whole body is known.
func (w *responseWriter) commit(final bool) error {
	w.committed = true
	h := w.sent
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if !w.bodyless && len(w.buf) > 0 {
		if _, ok := h["Content-Type"]; !ok && h.Get("Content-Encoding") == "" {
			h.Set("Content-Type", http.DetectContentType(w.buf))
		}
	}
	if final && !w.bodyless && h.Get("Content-Length") == "" && h.Get("Trailer") == "" {
		h.Set("Content-Length", strconv.Itoa(len(w.buf)))
	}
	c, st := w.c, w.st
	c.mu.Lock()
	if st.closed {
		c.mu.Unlock()
		return ErrStreamClosed
	}
	st.hdrPending = true
	st.status = w.status
	st.header = h
	buf := w.buf
	w.buf = nil
	if w.bodyless {
		buf = nil
	}
	var put *[]byte
	if w.bufPool != nil {
		if buf != nil && len(st.out) == 0 && st.outBuf == nil {
			// The pooled array becomes the stream's output as it is.
			st.out, st.outBuf, buf = buf, w.bufPool, nil
		} else {
			put = w.bufPool // once send has copied buf
		}
		w.bufPool = nil
	}
	c.mu.Unlock()
	_, err := w.send(buf, !final)
	if put != nil {
		outPool.Put(put)
	}
	return err
}

// send appends p to the stream's output, waiting while it is full; push
// puts the stream on the ready list even below responseBuffer.
func (w *responseWriter) send(p []byte, push bool) (int, error) {
	c, st := w.c, w.st
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for {
		if st.closed {
			return n, ErrStreamClosed
		}
		if len(p) == 0 {
			break
		}
		if room := 2*responseBuffer - len(st.out); room > 0 {
			k := min(room, len(p))
			if need := len(st.out) + k; need > cap(st.out) && need > keptOutBuffer {
				st.growOut()
			}
			st.out = append(st.out, p[:k]...)
			p, n = p[k:], n+k
			if len(st.out) >= responseBuffer {
				c.readyLocked(st)
			}
			continue
		}
		c.readyLocked(st)
		if err := w.waitLocked(); err != nil {
			return n, err
		}
	}
	if push {
		c.readyLocked(st)
	}
	return n, nil
}

// waitLocked waits for the writer to take some of the stream's output,
// until the write deadline, which resets the stream.
func (w *responseWriter) waitLocked() error {
	c, st := w.c, w.st
	var timeout <-chan time.Time
	if d := st.writeDeadline; !d.IsZero() {
		wait := time.Until(d)
		if wait <= 0 {
			_ = c.resetStreamLocked(st.id, http2.ErrCodeCancel)
			return os.ErrDeadlineExceeded
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	c.mu.Unlock()
	select {
	case <-st.wake:
	case <-timeout:
	}
	c.mu.Lock()
	return nil
}

// finish ends the response when the handler returns: the rest of the
// body, then the trailers or END_STREAM.
func (w *responseWriter) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		_ = w.commit(true)
	}
	trailers := w.trailers()
	c, st := w.c, w.st
	c.mu.Lock()
	st.handlerDone = true
	st.trailers = trailers
	c.readyLocked(st)
	c.mu.Unlock()
}

// trailers collects the trailers the handler declared (Trailer header)
// or set with http.TrailerPrefix.
func (w *responseWriter) trailers() http.Header {
	var t http.Header
	set := func(k string, vv []string) {
		if len(vv) == 0 {
			return
		}
		if t == nil {
			t = http.Header{}
		}
		t[http.CanonicalHeaderKey(k)] = vv
	}
	for _, v := range w.sent["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			set(k, w.header[k])
		}
	}
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			set(strings.TrimPrefix(k, http.TrailerPrefix), vv)
		}
	}
	return t
}

// runHandler runs h for the stream's request and ends the response.
func (c *conn) runHandler(st *stream, req *http.Request, h http.Handler) {
	w := &responseWriter{c: c, st: st, req: req, header: http.Header{}}
	defer func() {
		if st.body != nil {
			st.body.Close()
		}
		p := recover()
		if p != nil {
			if p != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.logf("h2srv: panic serving %v: %v\n%s", c.remote, p, buf)
			}
			c.mu.Lock()
			if !st.closed {
				_ = c.resetStreamLocked(st.id, http2.ErrCodeInternal)
			}
			c.mu.Unlock()
		} else if !w.detached {
			w.finish()
		}
		c.mu.Lock()
		st.running = false
		c.running--
		c.mu.Unlock()
		st.cancel()
		c.srv.handlers.Done()
	}()
	h.ServeHTTP(w, req)
}
