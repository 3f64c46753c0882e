package h2srv

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// writeLoop is the connection's writer: it owns the socket's writes, the
// write buffer and the HPACK encoder. Each round it gathers the queued
// control frames and the ready streams' frames, within the send windows,
// into one buffer and writes it with one write(2) under the write
// timeout.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	for {
		c.mu.Lock()
		for !c.dead && len(c.ctrl) == 0 && len(c.ready) == 0 && !c.doneLocked() && !c.hasPending() {
			c.mu.Unlock()
			<-c.wake
			c.mu.Lock()
		}
		if c.dead {
			c.mu.Unlock()
			return
		}
		c.wbuf.Reset()
		c.fillLocked()
		last := c.doneLocked()
		c.mu.Unlock()
		if c.wbuf.Len() > 0 {
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
			if _, err := c.nc.Write(c.wbuf.Bytes()); err != nil {
				c.closeNow()
				return
			}
		}
		if c.wbuf.Cap() > 4*writeBatch {
			c.wbuf = bytesBufferReset()
		}
		if last {
			// The last GOAWAY is out: half-close, and let the reader see the
			// peer close, or give up after lingerTimeout.
			if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
			return
		}
	}
}

// doneLocked reports whether the connection has nothing left to do but
// close: a GOAWAY was queued and written, and no stream is left (or the
// GOAWAY reports an error).
func (c *conn) doneLocked() bool {
	return c.goAwaySent && len(c.ctrl) == 0 && (c.fatal || len(c.streams) == 0)
}

func (c *conn) fillLocked() {
	o := c.opts
	for _, f := range c.ctrl {
		switch f.typ {
		case http2.FrameSettings:
			if f.ack {
				_ = c.wfr.WriteSettingsAck()
				continue
			}
			_ = c.wfr.WriteSettings(
				http2.Setting{ID: http2.SettingMaxFrameSize, Val: o.MaxReadFrameSize},
				http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: o.MaxConcurrentStreams},
				http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(c.maxHeaderBytes())},
				http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(o.StreamWindow)},
			)
		case http2.FramePing:
			_ = c.wfr.WritePing(f.ack, f.data)
		case http2.FrameWindowUpdate:
			_ = c.wfr.WriteWindowUpdate(f.id, f.val)
		case http2.FrameRSTStream:
			_ = c.wfr.WriteRSTStream(f.id, f.code)
		case http2.FrameGoAway:
			_ = c.wfr.WriteGoAway(f.val, f.code, nil)
		}
	}
	clear(c.ctrl)
	c.ctrl = c.ctrl[:0]
	if c.fatal {
		clear(c.ready)
		c.ready = c.ready[:0]
		return
	}
	c.takePendingLocked()
	// Round-robin: a stream with more to send goes to the back. The list
	// is consumed from the front and compacted after the round, so that
	// its array is kept rather than reallocated every round.
	i := 0
	for i < len(c.ready) && c.wbuf.Len() < writeBatch {
		st := c.ready[i]
		c.ready[i] = nil
		i++
		st.queued = false
		if c.writeStreamLocked(st) {
			st.queued = true
			c.ready = append(c.ready, st)
		}
	}
	n := copy(c.ready, c.ready[i:])
	clear(c.ready[n:])
	c.ready = c.ready[:n]
}

// writeStreamLocked writes what st has to send, within the windows and
// up to a frame of data; it reports whether st has more to send now.
func (c *conn) writeStreamLocked(st *stream) bool {
	if st.closed {
		return false
	}
	if st.hdrPending {
		st.hdrPending = false
		end := st.handlerDone && len(st.out) == 0 && st.trailers == nil
		c.writeHeaderBlock(st.id, end, st.status, st.header)
		st.header = nil
		if end {
			c.endSentLocked(st)
			return false
		}
	}
	if len(st.out) > 0 {
		n := min(int64(len(st.out)), int64(c.peerFrame), st.sendWindow, c.sendWindow)
		if n <= 0 {
			c.noteStallLocked(st)
			return c.queueBlocked(st)
		}
		end := st.handlerDone && n == int64(len(st.out)) && st.trailers == nil
		_ = c.wfr.WriteData(st.id, end, st.out[:n])
		switch {
		case n < int64(len(st.out)):
			st.out = st.out[n:]
		case st.outBuf == nil && cap(st.out) <= keptOutBuffer:
			// An idle stream keeps a small buffer for its next event, not
			// a large one.
			st.out = st.out[:0]
		default:
			st.releaseOut()
		}
		st.sendWindow -= n
		c.sendWindow -= n
		st.signal()
		if end {
			c.endSentLocked(st)
			return false
		}
		if len(st.out) > 0 {
			c.noteStallLocked(st)
			return st.sendWindow > 0 && c.sendWindow > 0 || c.queueBlocked(st)
		}
	}
	if st.src != nil {
		if len(st.out) > 0 || !st.srcReady {
			return false
		}
		return c.writeSourceLocked(st)
	}
	if st.handlerDone && len(st.out) == 0 && !st.endSent {
		if st.trailers != nil {
			c.writeHeaderBlock(st.id, true, 0, st.trailers)
		} else {
			_ = c.wfr.WriteData(st.id, true, nil)
		}
		c.endSentLocked(st)
	}
	return false
}

// queueBlocked notes st as waiting for the connection's send window, and
// when the connection began to hold back ready streams (see onStall); it
// returns false, for writeStreamLocked.
func (c *conn) queueBlocked(st *stream) bool {
	if c.sendWindow <= 0 && st.sendWindow > 0 && !st.blocked {
		st.blocked = true
		c.connBlocked = append(c.connBlocked, st)
		if c.connStalled.IsZero() {
			c.connStalled = time.Now()
			c.armStallLocked(c.opts.WriteTimeout)
		}
	}
	return false
}

// endSentLocked follows the server's END_STREAM: the stream is closed
// when the peer had ended too; otherwise the peer is told with
// RST_STREAM NO_ERROR that the rest of its request is not needed (RFC
// 9113 section 8.1).
func (c *conn) endSentLocked(st *stream) {
	st.endSent = true
	if !st.remoteClosed {
		_ = c.wfr.WriteRSTStream(st.id, http2.ErrCodeNo)
	}
	c.closeStreamLocked(st, errConnClosed)
}

// writeHeaderBlock encodes a response header block (status 0: trailers)
// into HEADERS and CONTINUATION frames.
func (c *conn) writeHeaderBlock(id uint32, end bool, status int, h http.Header) {
	c.hbuf.Reset()
	if status != 0 {
		c.encodeField(":status", strconv.Itoa(status))
	}
	for k, vv := range h {
		lk := strings.ToLower(k)
		if connectionHeaders[lk] || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			c.encodeField(lk, v)
		}
	}
	block := c.hbuf.Bytes()
	max := int(c.peerFrame)
	first := true
	for first || len(block) > 0 {
		frag := block[:min(len(block), max)]
		block = block[len(frag):]
		if first {
			_ = c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag,
				EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			_ = c.wfr.WriteContinuation(id, len(block) == 0, frag)
		}
	}
}

func (c *conn) encodeField(name, value string) {
	_ = c.henc.WriteField(hpackField(name, value))
}

func hpackField(name, value string) hpack.HeaderField {
	return hpack.HeaderField{Name: name, Value: value, Sensitive: name == "set-cookie"}
}

func bytesBufferReset() bytes.Buffer { return bytes.Buffer{} }
