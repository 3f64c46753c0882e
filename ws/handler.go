package ws

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/watchhub"
)

// Subprotocol is the WebSocket subprotocol the handler speaks. A handshake
// must offer it.
const Subprotocol = "watchgate.v1"

// Defaults of Options.
const (
	DefaultMaxWatches       = 10000
	DefaultMaxMessageSize   = 64 << 10
	DefaultWriteTimeout     = 10 * time.Second
	DefaultProgressInterval = 30 * time.Second
	DefaultMaxEventsMessage = 1 << 20
	// DefaultQueueResponses and DefaultQueueBytes bound a socket's queue on
	// the hub (Options.Stream); a socket carries many watches, so its
	// queue is larger than the hub's default for one stream.
	DefaultQueueResponses = 8192
	DefaultQueueBytes     = 8 << 20
	QueueBytesPerWatch    = 512
)

// Options configures a Handler. The zero value is the documented default.
type Options struct {
	// OriginPatterns lists the browser origins allowed to open a socket
	// besides the endpoint's own (an Origin whose host is the request's
	// Host is always allowed, and a handshake without Origin, which is not
	// from a browser, too). A pattern that contains "://" is matched
	// against the Origin's "scheme://host", any other against its host
	// (with port), with path.Match syntax, case-insensitively; "*" allows
	// every origin. A disallowed Origin is refused with 403 before any
	// upgrade. NewHandler rejects malformed patterns.
	OriginPatterns []string
	// Authorize, when set, is called for each watch with the handshake
	// request and the watch's normalised range (end nil: the single key
	// key; see WatchRequest); a non-nil error refuses the watch with an
	// error message of status 403, or with the error itself when it is a
	// *Problem. The request's context ends with the handshake and must not
	// be used; its values and headers may.
	Authorize func(r *http.Request, key, end []byte) error
	// Expires, when set, is called once per handshake; a non-zero time
	// closes the socket with 1008 (policy violation) when it is reached,
	// when the client's access token expires.
	Expires func(r *http.Request) time.Time
	// MaxWatches bounds the live watches of one socket (default
	// DefaultMaxWatches); a watch over it gets a 429 error message.
	MaxWatches int
	// MaxMessageSize bounds one client message in bytes (default
	// DefaultMaxMessageSize); a larger one closes the socket with 1009.
	MaxMessageSize int64
	// MaxKeySize bounds a watch's key and range_end in bytes (default
	// DefaultMaxKeySize, as the REST API).
	MaxKeySize int
	// WriteTimeout bounds every write to the socket (default
	// DefaultWriteTimeout): a client that reads nothing for that long while
	// the server has something to send is disconnected, and resumes its
	// watches by revision.
	WriteTimeout time.Duration
	// ProgressInterval is how long a socket may go without any message
	// before it is sent a progress message (when every watch of it is
	// caught up); default DefaultProgressInterval, negative disables. It
	// keeps proxies from closing idle sockets and resume points recent.
	ProgressInterval time.Duration
	// MaxEventsMessage is the size in bytes over which an events message
	// is split, at revision boundaries (default DefaultMaxEventsMessage).
	// A single revision larger than it still goes whole in one message.
	MaxEventsMessage int
	// Stream bounds the socket's queue on the hub (watchhub.StreamOptions;
	// its ProgressInterval is set from ProgressInterval). So that one
	// small write that reaches every watch of a socket fits its queue, a
	// zero MaxQueueResponses is the larger of DefaultQueueResponses and
	// MaxWatches, a zero MaxQueueBytes the larger of DefaultQueueBytes and
	// MaxWatches * QueueBytesPerWatch; a zero MaxPendingBytes is the hub's
	// default. A socket whose client stops
	// reading holds at most about MaxQueueBytes + MaxPendingBytes of
	// events (as the hub accounts them; events shared with other sockets
	// are counted in full), then its watches catch up from history.
	Stream watchhub.StreamOptions
	// Logger receives the handler's logs; nil means zerolog.Nop().
	Logger *zerolog.Logger
	// OnSend, when set, is called by a socket's write loop after each
	// batch it wrote to the connection that carried change events: events
	// is how many (snapshot entries are not counted), oldestNotify the
	// earliest watchhub.Event.Notified among them, the zero time when none
	// has one (all were read back from history). It must be fast and safe
	// for concurrent use; nil costs nothing.
	OnSend func(events int, oldestNotify time.Time)
}

func (o *Options) setDefaults() {
	if o.MaxWatches <= 0 {
		o.MaxWatches = DefaultMaxWatches
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = DefaultMaxMessageSize
	}
	if o.MaxKeySize <= 0 {
		o.MaxKeySize = DefaultMaxKeySize
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	switch {
	case o.ProgressInterval == 0:
		o.ProgressInterval = DefaultProgressInterval
	case o.ProgressInterval < 0:
		o.ProgressInterval = 0
	}
	if o.MaxEventsMessage <= 0 {
		o.MaxEventsMessage = DefaultMaxEventsMessage
	}
	if o.Stream.MaxQueueResponses <= 0 {
		o.Stream.MaxQueueResponses = max(DefaultQueueResponses, o.MaxWatches)
	}
	if o.Stream.MaxQueueBytes <= 0 {
		o.Stream.MaxQueueBytes = max(DefaultQueueBytes, o.MaxWatches*QueueBytesPerWatch)
	}
	o.Stream.ProgressInterval = o.ProgressInterval
}

// Handler serves the watchgate.v1 protocol: an http.Handler for the
// WebSocket endpoint (GET /v1/ws). Each accepted socket gets a stream on
// the hub and exactly two goroutines: the ServeHTTP goroutine runs its
// write loop and starts one read loop. Hijacked connections are not
// closed by http.Server.Shutdown: the server calls Handler.Shutdown (from
// http.Server.RegisterOnShutdown, before closing the hub) to close them.
type Handler struct {
	hub  *watchhub.Hub
	opts Options
	log  zerolog.Logger

	shutdownc chan struct{} // closed by Shutdown

	mu       sync.Mutex // guards the fields below
	closing  bool
	active   int           // ServeHTTP calls past the handshake checks
	sockets  int           // accepted sockets
	idle     chan struct{} // closed when closing and active reaches 0
	idleDone bool
}

// NewHandler returns a handler that serves watches from hub. It fails on
// a malformed origin pattern.
func NewHandler(hub *watchhub.Hub, opts Options) (*Handler, error) {
	if hub == nil {
		return nil, errors.New("ws: nil hub")
	}
	for _, p := range opts.OriginPatterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("ws: origin pattern %q: %w", p, err)
		}
	}
	opts.setDefaults()
	h := &Handler{
		hub:       hub,
		opts:      opts,
		log:       zerolog.Nop(),
		shutdownc: make(chan struct{}),
		idle:      make(chan struct{}),
	}
	if opts.Logger != nil {
		h.log = *opts.Logger
	}
	return h, nil
}

// Connections reports the number of open sockets, for /v1/status.
func (h *Handler) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sockets
}

// Shutdown refuses new handshakes (503), closes every socket with 1001
// (going away) and waits until their handlers have returned or ctx ends.
// Clients resume their watches by revision on another server or after a
// restart. It may be called more than once.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.closing {
		h.closing = true
		close(h.shutdownc)
	}
	h.idleLocked()
	h.mu.Unlock()
	select {
	case <-h.idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Handler) idleLocked() {
	if h.closing && h.active == 0 && !h.idleDone {
		h.idleDone = true
		close(h.idle)
	}
}

// enter counts a handshake in, unless the handler is shutting down.
func (h *Handler) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.active++
	return true
}

func (h *Handler) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active--
	h.idleLocked()
}

func (h *Handler) countSocket(d int) {
	h.mu.Lock()
	h.sockets += d
	h.mu.Unlock()
}

// ServeHTTP checks the handshake, upgrades the connection and serves the
// socket until it closes. A refused handshake gets an
// application/problem+json response: 426 when it is no WebSocket
// handshake, 403 for a disallowed Origin, 400 without the watchgate.v1
// subprotocol, 503 while shutting down.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := h.checkHandshake(r); p != nil {
		writeProblem(w, p)
		return
	}
	if !h.enter() {
		writeProblem(w, newProblem(ErrShuttingDown, "the server is shutting down; connect again shortly"))
		return
	}
	defer h.leave()
	stream, err := h.hub.NewStream(h.opts.Stream)
	if err != nil {
		writeProblem(w, newProblem(ErrShuttingDown, "the server is shutting down; connect again shortly"))
		return
	}
	defer stream.Close()
	cw := &corkWriter{ResponseWriter: w, writeTimeout: h.opts.WriteTimeout}
	conn, err := websocket.Accept(cw, r, &websocket.AcceptOptions{
		Subprotocols: []string{Subprotocol},
		// checkHandshake has already checked the Origin, with the same
		// rules as the library plus "*".
		InsecureSkipVerify: true,
	})
	if err != nil {
		// Accept has answered; only a handshake checkHandshake let through
		// but the library refused (a bad key or version) gets here.
		h.log.Debug().Err(err).Msg("websocket handshake refused")
		return
	}
	conn.SetReadLimit(h.opts.MaxMessageSize)
	h.countSocket(1)
	defer h.countSocket(-1)
	s := newSocket(h, r, conn, cw.conn, stream)
	s.serve()
}

// checkHandshake checks what must be refused before any upgrade, so that
// the refusal is a problem+json response.
func (h *Handler) checkHandshake(r *http.Request) *Problem {
	if r.Method != http.MethodGet || !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return newProblem(ErrNotWebSocket, "this endpoint serves the %s WebSocket protocol: send GET with Connection: Upgrade and Upgrade: websocket over HTTP/1.1", Subprotocol)
	}
	if err := h.checkOrigin(r); err != nil {
		return newProblem(ErrOrigin, "%v", err)
	}
	if !headerHasToken(r.Header, "Sec-WebSocket-Protocol", Subprotocol) {
		return newProblem(ErrSubprotocol, "offer the subprotocol %s (Sec-WebSocket-Protocol: %s)", Subprotocol, Subprotocol)
	}
	return nil
}

// checkOrigin allows a handshake without Origin, from the request's own
// host, or matching Options.OriginPatterns (see there).
func (h *Handler) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not allowed", origin)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	for _, p := range h.opts.OriginPatterns {
		if p == "*" {
			return nil
		}
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not allowed to open a socket on %q", origin, r.Host)
}

// headerHasToken reports whether the comma-separated header key holds
// token, case-insensitively.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// writeProblem answers a refused handshake.
func writeProblem(w http.ResponseWriter, p *Problem) {
	hd := w.Header()
	hd.Set("Content-Type", "application/problem+json")
	hd.Set("Cache-Control", "no-store")
	if p.Status == http.StatusUpgradeRequired {
		hd.Set("Connection", "Upgrade")
		hd.Set("Upgrade", "websocket")
	}
	w.WriteHeader(p.Status)
	w.Write(append(p.appendJSON(nil), '\n'))
}
