package h2srv

import (
	"io"
	"os"
	"time"
)

// requestBody is a request's body: the reader appends DATA frames, the
// handler reads them, and what it reads goes back to the peer's send
// windows. It holds at most the stream's receive window. Guarded by the
// connection's mu.
type requestBody struct {
	c       *conn
	st      *stream
	buf     []byte
	err     error // io.EOF at END_STREAM, or why the stream ended
	closed  bool  // closed by the handler
	trailer map[string][]string
	wait    chan struct{}
}

// writeLocked appends data; it reports false when the handler closed the
// body, and the data is dropped.
func (b *requestBody) writeLocked(data []byte) bool {
	if b.closed || b.err != nil {
		return false
	}
	b.buf = append(b.buf, data...)
	b.signal()
	return true
}

func (b *requestBody) endLocked() {
	if b.err == nil {
		b.err = io.EOF
	}
	b.signal()
}

func (b *requestBody) failLocked(err error) {
	if b.err == nil {
		b.err = err
	}
	b.signal()
}

func (b *requestBody) signal() {
	select {
	case b.wait <- struct{}{}:
	default:
	}
}

// Read reads the body; it blocks until DATA arrives, the stream ends or
// the read deadline passes.
func (b *requestBody) Read(p []byte) (int, error) {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b.buf) == 0 && b.err == nil && !b.closed {
		var timeout <-chan time.Time
		if d := b.st.readDeadline; !d.IsZero() {
			wait := time.Until(d)
			if wait <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timeout = t.C
		}
		c.mu.Unlock()
		select {
		case <-b.wait:
		case <-timeout:
		}
		c.mu.Lock()
	}
	if b.closed {
		return 0, ErrBodyClosed
	}
	if len(b.buf) == 0 {
		return 0, b.err
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	if len(b.buf) == 0 {
		b.buf = nil
	}
	c.creditLocked(b.st, int64(n))
	return n, nil
}

// Close discards what is buffered; DATA that still arrives is dropped
// and its window returned.
func (b *requestBody) Close() error {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if !b.closed {
		b.closed = true
		if n := len(b.buf); n > 0 {
			b.buf = nil
			c.creditLocked(b.st, int64(n))
		}
		b.signal()
	}
	return nil
}
