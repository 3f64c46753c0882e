package h2srv

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults for the zero Options.
const (
	DefaultMaxConcurrentStreams = 250
	DefaultStreamWindow         = 1 << 20
	DefaultConnWindow           = 1 << 20
	DefaultWriteTimeout         = 10 * time.Second
	DefaultMaxReadFrameSize     = 1 << 20
	DefaultMaxResetsPerSecond   = 100
	DefaultPingTimeout          = 15 * time.Second
	// maxQueuedControlFrames bounds the control frames (SETTINGS and PING
	// acknowledgements, RST_STREAM, WINDOW_UPDATE) waiting for the writer:
	// a peer that makes more than this many without reading is flooding.
	maxQueuedControlFrames = 10000
	// responseBuffer is how much a handler's response is buffered before
	// it is sent without a Flush, and how much may wait for the writer
	// before Write blocks.
	responseBuffer = 16 << 10
	// writeBatch is how many bytes the writer gathers for one write(2).
	writeBatch = 64 << 10
	// keptOutBuffer is the capacity of a drained response buffer past
	// which it is released rather than kept for the next write.
	keptOutBuffer = 1 << 10
)

// Errors returned by the server and its ResponseWriter.
var (
	// ErrServerClosed is returned by ServeConn for a connection handed
	// over after Shutdown or Close.
	ErrServerClosed = errors.New("h2srv: server closed")
	// ErrStreamClosed is returned by a ResponseWriter's Write and
	// FlushError once the stream was reset or its connection closed.
	ErrStreamClosed = errors.New("h2srv: stream closed")
	// ErrBodyClosed is returned by a request body's Read after the handler
	// closed it.
	ErrBodyClosed = errors.New("h2srv: request body closed")
	// ErrUnencryptedHandoff is returned by ServeConn's TLSNextProto entry
	// for cleartext HTTP/2 when net/http hands over a connection it cannot
	// unwrap.
	ErrUnencryptedHandoff = errors.New("h2srv: unexpected connection in cleartext handoff")
)

// Options configures a Server. The zero value of every field is its
// documented default.
type Options struct {
	// MaxConcurrentStreams is the number of streams a peer may have open
	// at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS); a
	// stream over it is refused with REFUSED_STREAM. Default: the
	// http.Server's HTTP2.MaxConcurrentStreams, else 250. So for the
	// windows, MaxReadFrameSize and WriteTimeout, whose defaults come from
	// HTTP2.MaxReceiveBufferPerStream, MaxReceiveBufferPerConnection,
	// MaxReadFrameSize and WriteByteTimeout.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes limits a request's header list (as HPACK counts it,
	// SETTINGS_MAX_HEADER_LIST_SIZE). Default: the http.Server's
	// MaxHeaderBytes, else http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// StreamWindow is the receive window of each stream for request
	// bodies, ConnWindow that of the connection: request body bytes that
	// handlers have not read yet are buffered up to StreamWindow a stream
	// and ConnWindow a connection. Defaults: the http.Server's
	// HTTP2.MaxReceiveBufferPerStream and PerConnection, else 1 MiB and
	// 1 MiB, as net/http (ConnWindow is at least StreamWindow).
	StreamWindow int32
	ConnWindow   int32
	// MaxReadFrameSize is the largest frame the server accepts
	// (SETTINGS_MAX_FRAME_SIZE), between 16 KiB and 16 MiB. Default 1 MiB.
	MaxReadFrameSize uint32
	// IdleTimeout closes a connection (with GOAWAY) that has had no open
	// stream for that long. Default: the http.Server's IdleTimeout, else
	// its ReadTimeout; zero there means never.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write(2) of a batch of frames; a connection
	// whose peer does not read for that long is closed. A stream whose
	// send window stays at zero that long while it has bytes to send is
	// reset with RST_STREAM CANCEL (its handler's Write fails, a detached
	// stream's Source is closed), and a connection whose send window does
	// gets GOAWAY ENHANCE_YOUR_CALM. Default: the http.Server's
	// HTTP2.WriteByteTimeout, else 10 s.
	WriteTimeout time.Duration
	// PingInterval is how long a connection may stay silent before the
	// server sends a PING; a PING not acknowledged within PingTimeout
	// closes the connection. PingTimeout also bounds the wait for the
	// acknowledgement of the server's SETTINGS, which ends the connection
	// with GOAWAY SETTINGS_TIMEOUT. Defaults: the http.Server's
	// HTTP2.SendPingTimeout (zero: no PING) and HTTP2.PingTimeout, else
	// 15 s.
	PingInterval time.Duration
	PingTimeout  time.Duration
	// MaxResetsPerSecond is the rate at which a peer may reset streams
	// whose handler has not finished (the rapid reset attack,
	// CVE-2023-44487), with a burst of MaxConcurrentStreams; past it the
	// connection gets GOAWAY with ENHANCE_YOUR_CALM. Default 100.
	MaxResetsPerSecond int
	// PermitProhibitedCipherSuites lets HTTP/2 run over TLS 1.2 with the
	// cipher suites RFC 9113 prohibits (appendix A), which otherwise get
	// GOAWAY INADEQUATE_SECURITY; TLS older than 1.2 always does. Default:
	// the http.Server's HTTP2.PermitProhibitedCipherSuites.
	PermitProhibitedCipherSuites bool
}

// Server serves HTTP/2 connections handed over by an http.Server through
// TLSNextProto, running an http.Handler for each request stream. It keeps
// one reading and one writing goroutine per connection and one goroutine
// per running handler. Shutdown or Close stops it; a Server is not reused
// after that.
type Server struct {
	handler http.Handler
	opts    Options

	mu       sync.Mutex
	conns    map[*conn]struct{}
	closed   bool
	shutdown chan struct{} // closed when graceful shutdown begins
	connWG   sync.WaitGroup
	handlers sync.WaitGroup
	hooked   map[*http.Server]bool
}

// New returns a Server that runs h for every request. A nil h runs the
// handler net/http hands over with each connection (the http.Server's
// Handler).
func New(h http.Handler, opts Options) *Server {
	return &Server{handler: h, opts: opts, conns: map[*conn]struct{}{},
		shutdown: make(chan struct{}), hooked: map[*http.Server]bool{}}
}

// resolve fills the zero fields of o from the http.Server's HTTP2 config
// (hs may be nil), then with the defaults.
func resolve(o Options, hs *http.Server) Options {
	var hc http.HTTP2Config
	if hs != nil {
		if hs.HTTP2 != nil {
			hc = *hs.HTTP2
		}
		if o.MaxHeaderBytes <= 0 {
			o.MaxHeaderBytes = hs.MaxHeaderBytes
		}
		if o.IdleTimeout <= 0 {
			o.IdleTimeout = cmp.Or(hs.IdleTimeout, hs.ReadTimeout)
		}
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = uint32(max(0, hc.MaxConcurrentStreams))
	}
	o.MaxConcurrentStreams = cmp.Or(o.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	if o.StreamWindow <= 0 {
		o.StreamWindow = int32(min(max(0, hc.MaxReceiveBufferPerStream), maxWindow))
	}
	o.StreamWindow = max(cmp.Or(o.StreamWindow, DefaultStreamWindow), 65535)
	if o.ConnWindow <= 0 {
		o.ConnWindow = int32(min(max(0, hc.MaxReceiveBufferPerConnection), maxWindow))
	}
	o.ConnWindow = max(cmp.Or(o.ConnWindow, DefaultConnWindow), o.StreamWindow)
	if o.MaxReadFrameSize == 0 {
		o.MaxReadFrameSize = uint32(max(0, hc.MaxReadFrameSize))
	}
	o.MaxReadFrameSize = min(max(cmp.Or(o.MaxReadFrameSize, DefaultMaxReadFrameSize), 1<<14), 1<<24-1)
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = cmp.Or(hc.WriteByteTimeout, DefaultWriteTimeout)
	}
	if o.PingInterval == 0 {
		o.PingInterval = hc.SendPingTimeout
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = cmp.Or(hc.PingTimeout, DefaultPingTimeout)
	}
	o.PermitProhibitedCipherSuites = o.PermitProhibitedCipherSuites || hc.PermitProhibitedCipherSuites
	if o.MaxResetsPerSecond <= 0 {
		o.MaxResetsPerSecond = DefaultMaxResetsPerSecond
	}
	return o
}

// TLSNextProto returns the entries to set in http.Server.TLSNextProto:
// "h2" for HTTP/2 over TLS (ALPN) and "unencrypted_http2" for cleartext
// HTTP/2 with prior knowledge, which net/http hands over when the
// server's Protocols include UnencryptedHTTP2. Each entry serves the
// connection until it closes, and registers the Server's graceful
// shutdown with the http.Server's Shutdown.
func (s *Server) TLSNextProto() map[string]func(*http.Server, *tls.Conn, http.Handler) {
	return map[string]func(*http.Server, *tls.Conn, http.Handler){
		"h2": func(hs *http.Server, tc *tls.Conn, h http.Handler) {
			s.serve(hs, tc, tc, h, false)
		},
		"unencrypted_http2": func(hs *http.Server, tc *tls.Conn, h http.Handler) {
			nc, ok := tc.NetConn().(interface{ UnencryptedNetConn() net.Conn })
			if !ok {
				if hs != nil && hs.ErrorLog != nil {
					hs.ErrorLog.Print(ErrUnencryptedHandoff)
				}
				return
			}
			// net/http has read the client preface already.
			s.serve(hs, nc.UnencryptedNetConn(), nil, h, true)
		},
	}
}

// ServeConn serves one HTTP/2 connection (beginning with the client
// preface) until it closes, running h for each request (nil: the
// Server's handler). It is for connections that do not come through an
// http.Server. A *tls.Conn is handshaken first if it was not yet.
func (s *Server) ServeConn(c net.Conn, h http.Handler) error {
	var tc *tls.Conn
	if t, ok := c.(*tls.Conn); ok {
		tc = t
		if !tc.ConnectionState().HandshakeComplete {
			// The TLS state decides whether HTTP/2 may run (RFC 9113
			// section 9.2), so the handshake comes first.
			ctx, cancel := context.WithTimeout(context.Background(), prefaceTimeout)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				c.Close()
				return err
			}
		}
	}
	return s.serve(nil, c, tc, h, false)
}

func (s *Server) serve(hs *http.Server, nc net.Conn, tc *tls.Conn, h http.Handler, sawPreface bool) error {
	if s.handler != nil {
		h = s.handler
	}
	if h == nil {
		h = http.NotFoundHandler()
	}
	base := context.Background()
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		base = bc.BaseContext()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return ErrServerClosed
	}
	if hs != nil && !s.hooked[hs] {
		s.hooked[hs] = true
		hs.RegisterOnShutdown(s.startShutdown)
	}
	c := newConn(s, hs, nc, tc, h, base)
	s.conns[c] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connWG.Done()
	}()
	return c.serve(sawPreface)
}

// startShutdown sends GOAWAY on every connection; each closes once its
// streams in flight have finished.
func (s *Server) startShutdown() {
	s.mu.Lock()
	if !isClosed(s.shutdown) {
		close(s.shutdown)
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAwayGraceful()
	}
}

// Shutdown stops the server gracefully: every connection gets GOAWAY,
// finishes its streams in flight and closes; then the handlers still
// running are waited for. When ctx ends first, the connections are
// closed at once and ctx's error returned. Connections handed over
// afterwards are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.startShutdown()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes every connection at once, cancelling the contexts of the
// requests in flight, and waits until each connection's goroutines have
// ended. Handlers are not waited for: their writes fail.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if !isClosed(s.shutdown) {
		close(s.shutdown)
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeNow()
	}
	s.connWG.Wait()
	return nil
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
