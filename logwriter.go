package main

import (
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Bounds of the access log's buffer.
const (
	// logFlushInterval is the longest a line waits in the buffer: a crash
	// loses at most the lines of the last interval (never data).
	logFlushInterval = 10 * time.Millisecond
	// logBufferLimit bounds the lines waiting; past it, lines are dropped
	// and counted until the output has caught up.
	logBufferLimit = 1 << 20
)

// logWriter buffers the lines written to it (JSON log lines from zerolog,
// one Write each) and writes them to w in large chunks, from a goroutine of
// its own, every interval or sooner when a quarter of the limit waits: one
// write(2) per interval instead of one per request.
//
// Write never blocks on w: it copies the line into memory and returns. When
// w is slower than the lines come (a stalled pipe), at most limit bytes
// wait and further lines are dropped; the number dropped is logged as a
// warning line when the output catches up. Close stops the goroutine and
// writes what waits; lines written after Close go straight to w. It is safe
// for concurrent use.
type logWriter struct {
	w        io.Writer
	interval time.Duration
	limit    int

	mu      sync.Mutex // guards the fields below
	buf     []byte     // lines not yet handed to the flusher
	dropped int64      // lines dropped since the last flush
	closed  bool

	outMu sync.Mutex    // serialises writes to w
	kick  chan struct{} // capacity 1: flush before the interval is over
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// newLogWriter starts a logWriter in front of w that flushes every
// interval and holds at most limit bytes.
func newLogWriter(w io.Writer, interval time.Duration, limit int) *logWriter {
	l := &logWriter{
		w: w, interval: interval, limit: limit,
		buf:  make([]byte, 0, min(limit, 64<<10)),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go l.run()
	return l
}

// Write buffers p, which must be whole lines. It always reports success:
// a line that does not fit is dropped and counted.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.outMu.Lock()
		defer l.outMu.Unlock()
		return l.w.Write(p)
	}
	if len(l.buf)+len(p) > l.limit {
		l.dropped++
		l.mu.Unlock()
		return len(p), nil
	}
	l.buf = append(l.buf, p...)
	early := len(l.buf) >= l.limit/4
	l.mu.Unlock()
	if early {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// run is the flusher goroutine; it ends when Close closes stop.
func (l *logWriter) run() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	var spare []byte
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		case <-l.kick:
		}
		spare = l.flush(spare, false)
	}
}

// flush takes the waiting lines, giving the buffer spare in their place,
// writes them to w and returns them as the next spare. With final set it
// also makes later writes go straight to w.
func (l *logWriter) flush(spare []byte, final bool) []byte {
	l.mu.Lock()
	out, dropped := l.buf, l.dropped
	l.buf, l.dropped = spare[:0], 0
	if final {
		l.closed = true
		l.buf = nil
		// Lines written from now on go straight to w: they must wait
		// until the buffered ones are out.
		l.outMu.Lock()
	}
	l.mu.Unlock()
	if !final {
		l.outMu.Lock()
	}
	if dropped > 0 {
		out = appendDropped(out, dropped)
	}
	if len(out) > 0 {
		_, _ = l.w.Write(out)
	}
	l.outMu.Unlock()
	if cap(out) > l.limit+4096 {
		// A notice made it grow: do not keep more than the bound.
		return nil
	}
	return out
}

// appendDropped appends the warning line about n dropped lines.
func appendDropped(dst []byte, n int64) []byte {
	var b bytes.Buffer
	log := zerolog.New(&b)
	log.Warn().Timestamp().Str("component", "http").Int64("dropped_lines", n).
		Msg("log lines dropped: the log output is slower than the requests")
	return append(dst, b.Bytes()...)
}

// Close stops the flusher and writes every waiting line. Later writes go
// straight to w. It is idempotent.
func (l *logWriter) Close() error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		l.flush(nil, true)
	})
	return nil
}
