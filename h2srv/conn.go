package h2srv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	clientPreface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	prefaceTimeout = 10 * time.Second
	// lingerTimeout is how long a connection that sent its last GOAWAY
	// waits for the peer to close, so that the GOAWAY is read rather than
	// lost to a TCP reset.
	lingerTimeout = time.Second
	maxWindow     = 1<<31 - 1
)

var (
	errClientReset = errors.New("h2srv: stream reset by client")
	errConnClosed  = errors.New("h2srv: connection closed")
	// errInadequateTLS is the error of a TLS connection that HTTP/2 may
	// not use (RFC 9113 section 9.2).
	errInadequateTLS = http2.ConnectionError(http2.ErrCodeInadequateSecurity)
)

// ctrlFrame is a frame the reader asks the writer to send.
type ctrlFrame struct {
	typ  http2.FrameType
	id   uint32
	val  uint32 // WINDOW_UPDATE increment, GOAWAY last stream id
	code http2.ErrCode
	data [8]byte
	ack  bool
}

// conn is one HTTP/2 connection: the reader runs serve, the writer
// writeLoop; handlers run on their own goroutines.
type conn struct {
	srv      *Server
	opts     Options
	hs       *http.Server
	nc       net.Conn
	tlsConn  *tls.Conn
	tlsState *tls.ConnectionState
	handler  http.Handler
	base     context.Context
	remote   string
	logf     func(string, ...any)

	br    *bufio.Reader
	fr    *http2.Framer // reading, owned by the reader
	empty emptyFrames   // owned by the reader

	// Owned by the writer, used under mu.
	wbuf bytes.Buffer
	wfr  *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder

	wake       chan struct{}
	writerDone chan struct{}

	// pmu guards pending: streams whose Source called ready, for the
	// writer to take (spare is the other half of the double buffer).
	pmu     sync.Mutex
	pending []*stream
	spare   []*stream

	mu           sync.Mutex
	streams      map[uint32]*stream
	lastStreamID uint32
	running      int // handlers running
	sendWindow   int64
	peerWindow   int64 // the peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame    uint32
	recvWindow   int64
	connCredit   int64
	ctrl         []ctrlFrame
	ready        []*stream
	connBlocked  []*stream
	goAwaySent   bool
	fatal        bool // the GOAWAY reports an error: close once written
	dead         bool
	idleTimer    *time.Timer
	resetTokens  float64
	resetAt      time.Time
	obuf         []byte      // the writer's buffer for a source's frame
	lastRead     time.Time   // when the last frame was read
	pingTimer    *time.Timer // nil without Options.PingInterval
	// stallTimer runs onStall while stallArmed; nil until a detached
	// stream first stalls.
	stallTimer *time.Timer
	stallArmed bool
	// connStalled is when a stream with bytes ready first found the
	// connection's send window at zero, zero while it is open: see
	// onStall.
	connStalled time.Time
	// unackedSettings counts the server's SETTINGS frames the peer has not
	// acknowledged; settingsTimer ends the connection when one waits
	// longer than Options.PingTimeout (RFC 9113 section 6.5.3).
	unackedSettings int
	settingsTimer   *time.Timer
	// noticeSent says that the first GOAWAY of a graceful shutdown (last
	// stream 2^31-1) is queued; noticeTimer sends the final one if the
	// PING that follows it is not acknowledged first.
	noticeSent  bool
	noticeTimer *time.Timer
	pingSent    time.Time // zero when no PING waits for its ACK
}

// pingData is the payload of the server's keepalive PINGs, noticePing
// that of the PING following the first GOAWAY of a graceful shutdown.
var (
	pingData   = [8]byte{'w', 'a', 't', 'c', 'h', 'g', 't', 'e'}
	noticePing = [8]byte{'g', 'o', 'a', 'w', 'a', 'y', '!', '!'}
)

// goAwayNoticeTimeout is how long a graceful shutdown waits for the
// acknowledgement of the PING after its first GOAWAY before it sends the
// final one: about a round trip is enough for requests in flight to
// arrive. A variable so that tests may shorten it.
var goAwayNoticeTimeout = time.Second

func newConn(s *Server, hs *http.Server, nc net.Conn, tc *tls.Conn, h http.Handler, base context.Context) *conn {
	c := &conn{srv: s, opts: resolve(s.opts, hs), hs: hs, nc: nc, tlsConn: tc, handler: h, base: base,
		wake: make(chan struct{}, 1), writerDone: make(chan struct{}),
		streams: map[uint32]*stream{}, sendWindow: 65535, peerWindow: 65535,
		peerFrame: 16384, recvWindow: 65535,
		resetTokens: float64(resolve(s.opts, hs).MaxConcurrentStreams), resetAt: time.Now()}
	if a := nc.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	c.logf = log.Printf
	if hs != nil && hs.ErrorLog != nil {
		c.logf = hs.ErrorLog.Printf
	}
	if tc != nil {
		st := tc.ConnectionState()
		c.tlsState = &st
	}
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.fr = http2.NewFramer(nil, &frameSniffer{r: c.br, empty: &c.empty})
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.fr.MaxHeaderListSize = uint32(c.maxHeaderBytes())
	c.fr.SetMaxReadFrameSize(c.opts.MaxReadFrameSize)
	// The server's connection preface comes first, before a GOAWAY that
	// a shutdown may queue as soon as the connection is known.
	c.ctrl = append(c.ctrl, ctrlFrame{typ: http2.FrameSettings})
	c.unackedSettings = 1
	if inc := c.opts.ConnWindow - 65535; inc > 0 {
		c.ctrl = append(c.ctrl, ctrlFrame{typ: http2.FrameWindowUpdate, val: uint32(inc)})
		c.recvWindow += int64(inc)
	}
	c.wfr = http2.NewFramer(&c.wbuf, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// adequateTLS checks a TLS connection against RFC 9113 section 9.2: TLS
// 1.2 or later, and for TLS 1.2 a cipher suite with ephemeral key
// exchange and AEAD (of those crypto/tls implements, the six ECDHE ones
// with AES-GCM or ChaCha20-Poly1305; the others are on the list of
// appendix A), unless permitAnySuite. As in net/http, a connection that
// fails it gets GOAWAY INADEQUATE_SECURITY.
func adequateTLS(st *tls.ConnectionState, permitAnySuite bool) error {
	switch {
	case st.Version < tls.VersionTLS12:
		return fmt.Errorf("%w: %s", errInadequateTLS, tls.VersionName(st.Version))
	case st.Version > tls.VersionTLS12 || permitAnySuite:
		return nil
	}
	switch st.CipherSuite {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return nil
	}
	return fmt.Errorf("%w: TLS 1.2 with %s", errInadequateTLS, tls.CipherSuiteName(st.CipherSuite))
}

func (c *conn) maxHeaderBytes() int { return c.opts.MaxHeaderBytes }

func (c *conn) idleTimeout() time.Duration { return c.opts.IdleTimeout }

// serve runs the reader until the connection ends, then waits for the
// writer.
func (c *conn) serve(sawPreface bool) error {
	if c.tlsState != nil {
		if err := adequateTLS(c.tlsState, c.opts.PermitProhibitedCipherSuites); err != nil {
			// Only the GOAWAY goes out, before the writer starts.
			c.logf("h2srv: %v: %v", c.remote, err)
			c.goAway(http2.ErrCodeInadequateSecurity, true)
			go c.writeLoop()
			return c.end(err)
		}
	}
	go c.writeLoop()
	o := c.opts
	c.mu.Lock()
	if d := c.idleTimeout(); d > 0 {
		c.idleTimer = time.AfterFunc(d, c.onIdle)
	}
	c.lastRead = time.Now()
	if d := o.PingInterval; d > 0 {
		c.pingTimer = time.AfterFunc(d, c.onPingTimer)
	}
	c.settingsTimer = time.AfterFunc(o.PingTimeout, c.onSettingsTimeout)
	if isClosed(c.srv.shutdown) {
		c.goAwayLocked(http2.ErrCodeNo, false)
	}
	c.mu.Unlock()
	c.kick()

	return c.end(c.readLoop(sawPreface))
}

// end closes the connection after the reader's error err, once a GOAWAY
// that reports an error has been written and read, and waits for the
// writer.
func (c *conn) end(err error) error {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.goAway(http2.ErrCode(ce), true)
	}
	c.mu.Lock()
	fatal := c.fatal
	c.mu.Unlock()
	if fatal {
		// Let the writer send the GOAWAY, then read what the peer still
		// sends until it closes, so that the GOAWAY is not lost.
		select {
		case <-c.writerDone:
			_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, c.nc, 1<<20)
		case <-time.After(c.opts.WriteTimeout):
		}
	}
	c.closeNow()
	<-c.writerDone
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (c *conn) readLoop(sawPreface bool) error {
	_ = c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	if !sawPreface {
		buf := make([]byte, len(clientPreface))
		if _, err := io.ReadFull(c.br, buf); err != nil {
			return err
		}
		if string(buf) != clientPreface {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
	}
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err == nil && first {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
			first = false
			_ = c.nc.SetReadDeadline(time.Time{})
		}
		if err == nil {
			err = c.processFrame(f)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, http2.ErrFrameTooLarge) {
			return http2.ConnectionError(http2.ErrCodeFrameSize)
		}
		if errors.Is(err, errEmptyFrames) {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			if f == nil {
				// A frame the Framer found malformed, such as a zero
				// WINDOW_UPDATE increment: it did nothing.
				if err := c.empty.note(); err != nil {
					return err
				}
			}
			if err := c.resetStream(se.StreamID, se.Code); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

func (c *conn) processFrame(f http2.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return errConnClosed
	}
	if c.pingTimer != nil {
		c.lastRead = time.Now()
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.processSettings(f)
	case *http2.MetaHeadersFrame:
		return c.processHeaders(f)
	case *http2.DataFrame:
		return c.processData(f)
	case *http2.WindowUpdateFrame:
		return c.processWindowUpdate(f)
	case *http2.PingFrame:
		if f.IsAck() {
			switch f.Data {
			case pingData:
				c.pingSent = time.Time{}
			case noticePing:
				// Every request the peer sent before it read the first
				// GOAWAY has arrived: the final GOAWAY names the last.
				if c.noticeSent {
					c.goAwayLocked(http2.ErrCodeNo, false)
				}
			}
			return nil
		}
		return c.queueCtrl(ctrlFrame{typ: http2.FramePing, ack: true, data: f.Data})
	case *http2.RSTStreamFrame:
		return c.processReset(f)
	case *http2.GoAwayFrame:
		// The peer opens no more streams: finish those in flight and close.
		c.goAwayLocked(http2.ErrCodeNo, false)
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
		return nil
	case *http2.PushPromiseFrame, *http2.ContinuationFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	default:
		// Unknown frame types are ignored (RFC 9113 section 4.1).
		return nil
	}
}

// queueCtrl queues a control frame for the writer; a peer that makes the
// server queue too many without reading them is flooding it.
func (c *conn) queueCtrl(f ctrlFrame) error {
	if len(c.ctrl) >= maxQueuedControlFrames {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	c.ctrl = append(c.ctrl, f)
	c.kick()
	return nil
}

func (c *conn) processSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.unackedSettings--
		switch {
		case c.unackedSettings < 0:
			// An acknowledgement of nothing, as net/http treats it.
			return http2.ConnectionError(http2.ErrCodeProtocol)
		case c.unackedSettings == 0:
			c.settingsTimer.Stop()
		}
		return nil
	}
	if err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peerWindow
			c.peerWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				if delta > 0 {
					c.readyLocked(st)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerFrame = s.Val
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	}); err != nil {
		return err
	}
	return c.queueCtrl(ctrlFrame{typ: http2.FrameSettings, ack: true})
}

func (c *conn) processWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		if c.sendWindow > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.connStalled = time.Time{}
		for _, st := range c.connBlocked {
			st.blocked = false
			c.readyLocked(st)
		}
		clear(c.connBlocked)
		c.connBlocked = c.connBlocked[:0]
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.lastStreamID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	st.sendWindow += int64(f.Increment)
	if st.sendWindow > maxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	st.stalled = time.Time{}
	c.readyLocked(st)
	return nil
}

func (c *conn) processReset(f *http2.RSTStreamFrame) error {
	st := c.streams[f.StreamID]
	if st == nil {
		if f.StreamID > c.lastStreamID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	if st.running {
		// Rapid reset (CVE-2023-44487): a token bucket of resets of
		// streams whose handler had not finished.
		now := time.Now()
		o := c.opts
		c.resetTokens = min(float64(o.MaxConcurrentStreams),
			c.resetTokens+now.Sub(c.resetAt).Seconds()*float64(o.MaxResetsPerSecond))
		c.resetAt = now
		c.resetTokens--
		if c.resetTokens < 0 {
			c.closeStreamLocked(st, errClientReset)
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
	}
	c.closeStreamLocked(st, errClientReset)
	return nil
}

// resetStream sends RST_STREAM and forgets the stream.
func (c *conn) resetStream(id uint32, code http2.ErrCode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resetStreamLocked(id, code)
}

func (c *conn) resetStreamLocked(id uint32, code http2.ErrCode) error {
	if st := c.streams[id]; st != nil {
		c.closeStreamLocked(st, fmt.Errorf("%w: %v", ErrStreamClosed, code))
	}
	if c.dead {
		return nil
	}
	c.countError(errName("stream", code))
	return c.queueCtrl(ctrlFrame{typ: http2.FrameRSTStream, id: id, code: code})
}

// countError reports an error of the connection to the http.Server's
// HTTP2.CountError, if set: a connection or stream error the server
// sends ("conn_enhance_your_calm", "stream_refused_stream", see errName)
// or a connection closed for an unanswered PING ("conn_ping_timeout").
// It is called with the connection's lock held.
func (c *conn) countError(name string) {
	if c.hs == nil || c.hs.HTTP2 == nil || c.hs.HTTP2.CountError == nil {
		return
	}
	c.hs.HTTP2.CountError(name)
}

// errName is kind_code in lower case, for CountError.
func errName(kind string, code http2.ErrCode) string {
	return kind + "_" + strings.ToLower(code.String())
}

// closeStreamLocked forgets st: its request's context is cancelled, its
// body fails with err, its handler's writes fail.
func (c *conn) closeStreamLocked(st *stream, err error) {
	if st.closed {
		return
	}
	st.closed = true
	delete(c.streams, st.id)
	if st.body != nil {
		st.body.failLocked(err)
	}
	st.releaseOut()
	if st.src != nil {
		st.src.Close()
		st.src = nil
	}
	if st.cancel != nil {
		st.cancel()
	}
	st.signal()
	if len(c.streams) == 0 {
		if c.goAwaySent {
			c.kick()
		} else if c.idleTimer != nil {
			c.idleTimer.Reset(c.idleTimeout())
		}
	}
}

// readyLocked puts st on the ready list if it has something to send.
func (c *conn) readyLocked(st *stream) {
	if st.queued || st.closed || st.blocked {
		return
	}
	if !st.hasControlOutput() && ((len(st.out) == 0 && !st.srcReady) || st.sendWindow <= 0) {
		return
	}
	st.queued = true
	c.ready = append(c.ready, st)
	c.kick()
}

func (c *conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) onIdle() {
	c.mu.Lock()
	idle := len(c.streams) == 0 && !c.dead
	c.mu.Unlock()
	if idle {
		c.goAwayGraceful()
	}
}

// onPingTimer sends a PING after PingInterval of silence, and closes the
// connection when a PING has waited PingTimeout for its ACK.
func (c *conn) onPingTimer() {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	now := time.Now()
	if !c.pingSent.IsZero() {
		if wait := c.pingSent.Add(c.opts.PingTimeout).Sub(now); wait > 0 {
			c.pingTimer.Reset(wait)
			c.mu.Unlock()
			return
		}
		c.countError("conn_ping_timeout")
		c.mu.Unlock()
		c.closeNow()
		return
	}
	if idle := now.Sub(c.lastRead); idle < c.opts.PingInterval {
		c.pingTimer.Reset(c.opts.PingInterval - idle)
		c.mu.Unlock()
		return
	}
	c.pingSent = now
	_ = c.queueCtrl(ctrlFrame{typ: http2.FramePing, data: pingData})
	c.pingTimer.Reset(c.opts.PingTimeout)
	c.mu.Unlock()
}

// onSettingsTimeout ends the connection whose peer has not acknowledged
// the server's SETTINGS within PingTimeout with GOAWAY SETTINGS_TIMEOUT
// (RFC 9113 section 6.5.3): until it does, the server cannot count on
// its limits being known.
func (c *conn) onSettingsTimeout() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || c.unackedSettings == 0 {
		return
	}
	c.logf("h2srv: %v: SETTINGS not acknowledged within %v, closing", c.remote, c.opts.PingTimeout)
	c.goAwayLocked(http2.ErrCodeSettingsTimeout, true)
}

// goAwayGraceful begins a graceful shutdown of the connection in two
// steps, so that requests the peer sends while the GOAWAY is on its way
// are served rather than ignored (RFC 9113 section 6.8): first GOAWAY
// NO_ERROR with the last stream 2^31-1 and a PING; then, when the PING is
// acknowledged or after goAwayNoticeTimeout, GOAWAY NO_ERROR with the
// last stream the server has taken. The streams in flight finish, and
// the connection closes after the last.
func (c *conn) goAwayGraceful() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || c.goAwaySent || c.noticeSent {
		return
	}
	c.noticeSent = true
	c.ctrl = append(c.ctrl,
		ctrlFrame{typ: http2.FrameGoAway, val: maxWindow, code: http2.ErrCodeNo},
		ctrlFrame{typ: http2.FramePing, data: noticePing})
	c.noticeTimer = time.AfterFunc(goAwayNoticeTimeout, func() {
		c.goAway(http2.ErrCodeNo, false)
	})
	c.kick()
}

func (c *conn) goAway(code http2.ErrCode, fatal bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.goAwayLocked(code, fatal)
}

func (c *conn) goAwayLocked(code http2.ErrCode, fatal bool) {
	if c.dead || (c.goAwaySent && !fatal) || c.fatal {
		return
	}
	c.goAwaySent = true
	c.fatal = fatal
	if fatal {
		// A connection error: only the GOAWAY goes out.
		c.ctrl = c.ctrl[:0]
		c.countError(errName("conn", code))
	}
	c.ctrl = append(c.ctrl, ctrlFrame{typ: http2.FrameGoAway, val: c.lastStreamID, code: code})
	c.kick()
}

// closeNow closes the connection at once and fails every stream.
func (c *conn) closeNow() {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	for _, st := range c.streams {
		c.closeStreamLocked(st, errConnClosed)
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	if c.stallTimer != nil {
		c.stallTimer.Stop()
	}
	if c.settingsTimer != nil {
		c.settingsTimer.Stop()
	}
	if c.noticeTimer != nil {
		c.noticeTimer.Stop()
	}
	c.mu.Unlock()
	c.nc.Close()
	c.kick()
}
