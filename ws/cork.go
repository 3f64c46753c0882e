package ws

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/watchgate/watchgate/watchhub"
)

// corkFlushSize is how much a corked connection gathers before it writes
// even though the batch is not finished, so that a burst costs one
// syscall per this many bytes and its memory stays bounded.
const corkFlushSize = 64 << 10

// corkConn is the hijacked connection under a socket's WebSocket library,
// and the socket's data path.
//
// The library does the handshake, reads, and writes the control frames
// (pongs, the close handshake); its writer flushes every frame as soon as
// it is written, and each flush reaches Write as one whole frame (a
// control frame always fits the library's empty 4 KiB buffer). The
// socket's data messages do not go through the library: the write loop
// appends each as one unmasked text frame (RFC 6455 section 5.2) with
// writeText, writeEvent or writeEvents. The library's writer costs two channel-based locks and a
// flush per message, a third of the time of a write that fans out to
// 100,000 watches; framing a text message is a few bytes of header.
//
// While the write loop sends a batch of messages it corks the connection,
// so the frames gather in one buffer and go out in a few large writes when
// it uncorks, instead of one syscall per message. Frames, the library's or
// the socket's, are appended whole under mu, so they never interleave, and
// once the library has written a close frame no data frame follows it.
//
// Every write to the network, corked or not, has a deadline of
// writeTimeout per writeChunk: a peer that reads nothing for that long
// fails the write, and the connection is closed.
type corkConn struct {
	net.Conn
	writeTimeout time.Duration

	mu        sync.Mutex // guards the fields below; held across the network write
	corked    bool
	closeSent bool // the library wrote a close frame
	buf       []byte
	err       error // the first write error; every later write fails with it
}

// Write is the library's: p is one whole frame. It is written now, or,
// corked, added to the buffer.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	isClose := len(p) > 0 && p[0]&0x0f == opClose
	if isClose {
		c.closeSent = true
	}
	if !c.corked {
		return c.writeLocked(p)
	}
	c.buf = append(c.buf, p...)
	var err error
	if isClose {
		// The library closes the connection right after it answers a
		// client's close: write it now, with what precedes it.
		err = c.flushLocked()
	} else {
		err = c.maybeFlushLocked()
	}
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// opClose is the close frame's opcode, in the low bits of a frame's first
// byte.
const opClose = 0x8

// writeText sends msg as one text message: a single unmasked frame.
func (c *corkConn) writeText(msg []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startTextLocked(len(msg)); err != nil {
		return err
	}
	c.buf = append(c.buf, msg...)
	return c.maybeFlushLocked()
}

// writeEvents sends one events message: head (appendEventsStart), the
// shared encodings of evs separated by commas, and the closing ]}. n is
// the size of the events' encodings, commas included. The events are
// copied once, from their shared encoding straight into the buffer.
func (c *corkConn) writeEvents(head []byte, evs []*watchhub.Event, prevKV bool, n int) error {
	n += len(head) + 2
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startTextLocked(n); err != nil {
		return err
	}
	start := len(c.buf)
	c.buf = append(c.buf, head...)
	for k, e := range evs {
		if k > 0 {
			c.buf = append(c.buf, ',')
		}
		c.buf = append(c.buf, e.JSON(prevKV)...)
	}
	c.buf = appendEventsEnd(c.buf)
	if len(c.buf)-start != n {
		panic(fmt.Sprintf("ws: message of %d bytes announced as %d", len(c.buf)-start, n))
	}
	return c.maybeFlushLocked()
}

// writeEvent sends one events message of one event: head
// (appendEventsStart), the event's shared encoding ev, and the closing ]}.
func (c *corkConn) writeEvent(head, ev []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startTextLocked(len(head) + len(ev) + 2); err != nil {
		return err
	}
	c.buf = append(c.buf, head...)
	c.buf = append(c.buf, ev...)
	c.buf = appendEventsEnd(c.buf)
	return c.maybeFlushLocked()
}

// startTextLocked appends the header of one text message of n bytes: a
// single unmasked frame. The caller appends the n bytes.
func (c *corkConn) startTextLocked(n int) error {
	if c.err != nil {
		return c.err
	}
	if c.closeSent {
		return net.ErrClosed
	}
	if c.buf == nil {
		c.buf = getBuf()
	}
	// Room for the header and the whole message at once: a large events
	// message (catch-up) would otherwise regrow the buffer as it is
	// appended.
	c.buf = slices.Grow(c.buf, n+10)
	const finText = 0x81
	switch {
	case n < 126:
		c.buf = append(c.buf, finText, byte(n))
	case n < 1<<16:
		c.buf = append(c.buf, finText, 126, byte(n>>8), byte(n))
	default:
		c.buf = append(c.buf, finText, 127)
		c.buf = binary.BigEndian.AppendUint64(c.buf, uint64(n))
	}
	return nil
}

// maybeFlushLocked writes the buffer unless corked with less than
// corkFlushSize gathered.
func (c *corkConn) maybeFlushLocked() error {
	if c.corked && len(c.buf) < corkFlushSize {
		return nil
	}
	err := c.flushLocked()
	if !c.corked {
		putBuf(c.buf)
		c.buf = nil
	}
	return err
}

// cork starts gathering writes, in a buffer from a pool shared by the
// sockets, so that an idle socket holds none.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	if c.buf == nil && c.err == nil {
		c.buf = getBuf()
	}
	c.mu.Unlock()
}

// uncork writes what was gathered, stops gathering and gives the buffer
// back.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.err != nil {
		return c.err
	}
	err := c.flushLocked()
	putBuf(c.buf)
	c.buf = nil
	return err
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.writeLocked(c.buf)
	if c.buf != nil {
		c.buf = c.buf[:0]
	}
	return err
}

// bufPool holds cork buffers of corkFlushSize plus room for one ordinary
// message; one that a large message grew is not kept.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 0, corkFlushSize+8<<10)
	return &b
}}

func getBuf() []byte { return (*bufPool.Get().(*[]byte))[:0] }

func putBuf(b []byte) {
	if b != nil && cap(b) <= corkFlushSize+8<<10 {
		bufPool.Put(&b)
	}
}

// writeChunk is the most writeLocked writes under one deadline: a peer
// that reads anything at all keeps the connection alive, one that reads
// nothing for the write timeout fails it, however large the buffer. (A
// timed-out write cannot simply be resumed: after one, a TLS connection is
// broken for good.) It is larger than a corked flush (corkFlushSize and
// one message), so that a flush is one write(2) under one deadline.
const writeChunk = 128 << 10

// writeLocked writes p to the network, each writeChunk with the write
// deadline. On error the connection is closed, which also ends the
// socket's read loop.
func (c *corkConn) writeLocked(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		end := min(len(p), n+writeChunk)
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
			c.fail(err)
			return n, err
		}
		m, err := c.Conn.Write(p[n:end])
		n += m
		if err != nil {
			c.fail(err)
			return n, err
		}
	}
	return n, nil
}

func (c *corkConn) fail(err error) {
	c.err = err
	c.buf = nil
	c.Conn.Close()
}

// timedOut reports whether the connection failed because a write reached
// its deadline.
func (c *corkConn) timedOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return errors.Is(c.err, os.ErrDeadlineExceeded)
}

// corkWriter is the http.ResponseWriter handed to websocket.Accept: its
// Hijack puts a corkConn between the library and the connection. It
// embeds the server's ResponseWriter for the handshake response.
type corkWriter struct {
	http.ResponseWriter
	writeTimeout time.Duration
	conn         *corkConn // set by Hijack
}

// Hijack takes over the connection through http.ResponseController, so
// that wrappers with Unwrap in front of the server's writer are followed.
func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: conn, writeTimeout: w.writeTimeout}
	// Reuse the server's write buffer in front of the cork.
	brw.Writer.Reset(w.conn)
	return w.conn, brw, nil
}

// Unwrap returns the server's ResponseWriter.
func (w *corkWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
