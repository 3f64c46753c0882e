package sse

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/h2srv"
	"github.com/watchgate/watchgate/watchhub"
)

// RevisionSource gives the store's current and compact revisions, for the
// X-Revision and X-Compact-Revision headers; *kv.Store is one.
type RevisionSource interface {
	Revisions() (rev, compact int64)
}

// Options configures a Handler. The zero value is the documented default.
type Options struct {
	// PathPrefix is the escaped path that precedes the key in ServeHTTP's
	// requests (default "/v1/watch/").
	PathPrefix string
	// MaxKeySize bounds the key and range_end (default 4096); over it a
	// request fails with kv.ErrKeyTooLarge.
	MaxKeySize int
	// Progress is the bookmark interval of a request without progress=
	// (default 15s; negative: no bookmarks unless asked for).
	Progress time.Duration
	// MinProgress is the shortest progress= accepted, other than 0
	// (default 1s).
	MinProgress time.Duration
	// Heartbeat is how long an SSE stream may stay silent before a
	// ": heartbeat" comment keeps proxies from closing it and detects a
	// dead client, for streams whose bookmarks are off or held back
	// (default 30s; negative disables). NDJSON streams have no comments.
	Heartbeat time.Duration
	// RetryMin and RetryMax bound the reconnection time sent to each SSE
	// stream in its retry: field, picked at random per stream (default 1s
	// to 3s).
	RetryMin, RetryMax time.Duration
	// WriteTimeout bounds each write and flush to a client (default 10s).
	// A client that takes longer is cut off and resumes with its last id.
	// The stream's timer checks a write in progress WriteTimeout after it
	// began and cuts it as an expired write deadline would (over HTTP/2
	// the stream is reset, over HTTP/1.1 the connection closed); an idle
	// stream has nothing armed.
	WriteTimeout time.Duration
	// Stream bounds each stream's queue in the hub (watchhub defaults);
	// its ProgressInterval is set from the request.
	Stream watchhub.StreamOptions
	// WriteError answers an error before streaming as problem+json; nil
	// uses a minimal writer (400 for ErrBadRequest, 413 for
	// kv.ErrKeyTooLarge, 503 for ErrUnavailable, 500 otherwise). A server
	// passes its own so that every error goes through one table.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
	// ProblemJSON renders an error that ends a stream already started
	// (event: error); nil renders a 500 "internal error" problem. The
	// error is logged either way.
	ProblemJSON func(err error) []byte
	// Logger receives the handler's logs; nil means zerolog.Nop().
	Logger *zerolog.Logger
	// OnSend, when set, is called by a stream's goroutine after each
	// write and flush to its client that carried change events: events is
	// how many (snapshot entries are not counted), oldestNotify the
	// earliest watchhub.Event.Notified among them, the zero time when none
	// has one (all were read back from history). It must be fast and safe
	// for concurrent use; nil costs nothing.
	OnSend func(events int, oldestNotify time.Time)
}

func (o *Options) setDefaults() {
	if o.PathPrefix == "" {
		o.PathPrefix = "/v1/watch/"
	}
	if o.MaxKeySize <= 0 {
		o.MaxKeySize = 4096
	}
	switch {
	case o.Progress == 0:
		o.Progress = 15 * time.Second
	case o.Progress < 0:
		o.Progress = 0
	}
	if o.MinProgress <= 0 {
		o.MinProgress = time.Second
	}
	switch {
	case o.Heartbeat == 0:
		o.Heartbeat = 30 * time.Second
	case o.Heartbeat < 0:
		o.Heartbeat = 0
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
}

// Handler serves watches as SSE and NDJSON streams, GET /v1/watch/{key}.
// Each request opens one hub stream with one watch and is served by the
// request's own goroutine: it waits for the hub's responses, encodes every
// response it drains in one buffer, and sends it with one write and one
// flush under the write timeout.
//
// Before streaming, errors are answered with a status (Options.WriteError);
// after, with an error event that ends the stream. A compacted start ends
// the stream with a compacted event, and a client resuming from the
// compacted id gets 204 so that a browser stops retrying.
//
// Shutdown ends every stream; the clients reconnect and resume from their
// last id.
type Handler struct {
	hub  *watchhub.Hub
	revs RevisionSource
	opts Options
	log  zerolog.Logger

	done     chan struct{} // closed by Shutdown
	shutOnce sync.Once
	active   atomic.Int64

	// conns lists the streams being served, for Shutdown to wake them.
	mu    sync.Mutex
	conns *conn
	// sources lists the detached streams, hbTimer scans them for
	// heartbeats while there are any.
	sources *source
	hbTimer *time.Timer
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a handler of watches on hub; revs gives the revision
// headers (the store the hub is fed by).
func NewHandler(hub *watchhub.Hub, revs RevisionSource, opts Options) *Handler {
	opts.setDefaults()
	h := &Handler{hub: hub, revs: revs, opts: opts, log: zerolog.Nop(), done: make(chan struct{})}
	if opts.Logger != nil {
		h.log = *opts.Logger
	}
	return h
}

// Shutdown ends every stream, now and to come: open streams end after the
// write in progress (their clients reconnect, to another instance or after
// the restart, and resume exactly), new requests get ErrUnavailable. It
// returns at once; http.Server.Shutdown waits for the handlers to return.
// It suits http.Server.RegisterOnShutdown and is idempotent.
func (h *Handler) Shutdown() {
	h.shutOnce.Do(func() {
		close(h.done)
		h.mu.Lock()
		for c := h.conns; c != nil; c = c.next {
			c.kick()
		}
		for src := h.sources; src != nil; src = src.next {
			src.onReady()
		}
		if h.hbTimer != nil {
			h.hbTimer.Stop()
		}
		h.mu.Unlock()
	})
}

// Streams is the number of streams being served, for GET /v1/status.
func (h *Handler) Streams() int64 { return h.active.Load() }

// ServeHTTP serves a watch whose key is the request path after
// Options.PathPrefix, percent-decoded.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, err := keyFromPath(r.URL.EscapedPath(), h.opts.PathPrefix)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	req, err := h.ParseRequest(r, key)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.Serve(w, r, req)
}

// Serve serves the parsed watch req until the client goes away, the watch
// ends (compacted, error), the hub closes or Shutdown. Served by package
// h2srv, it returns once the header is out and the stream is detached
// (see Request.OnEnd for its end).
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request, req Request) {
	detached := false
	if req.OnEnd != nil {
		defer func() {
			if !detached {
				req.OnEnd(0)
			}
		}()
	}
	select {
	case <-h.done:
		h.writeError(w, r, ErrUnavailable)
		return
	default:
	}
	if req.Resume.Compacted {
		// The client was told its position is gone: 204 makes a browser's
		// EventSource stop reconnecting.
		rev, compact := h.revs.Revisions()
		setRevisionHeaders(w.Header(), rev, compact)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	so := h.opts.Stream
	so.ProgressInterval = req.Progress
	var src *source
	if h2srv.CanDetach(w) {
		// Served by the connection's writer once the header is out: the
		// hub wakes it through OnReady rather than a goroutine's Ready.
		src = new(source)
		so.OnReady = src.onReady
	}
	st, err := h.hub.NewStream(so)
	if err != nil {
		h.writeError(w, r, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	defer func() {
		if !detached {
			st.Close()
		}
	}()
	startRev, startSub := req.Start()
	created, err := st.Watch(watchhub.WatchRequest{
		Key: req.Key, End: req.End,
		StartRev: startRev, StartSub: startSub,
		PrevKV: req.PrevKV, NoPut: req.NoPut, NoDelete: req.NoDelete,
		Snapshot: req.Snapshot,
	})
	if err != nil {
		switch {
		case errors.Is(err, watchhub.ErrInvalidRange), errors.Is(err, watchhub.ErrInvalidRequest):
			err = fmt.Errorf("%w: %w", ErrBadRequest, err)
		case errors.Is(err, watchhub.ErrClosed), errors.Is(err, watchhub.ErrStreamClosed):
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		h.writeError(w, r, err)
		return
	}

	_, compact := h.revs.Revisions()
	hd := w.Header()
	// The fixed values are shared by every stream (net/http copies the
	// header when it writes it, and only reads it afterwards).
	if req.Format == FormatNDJSON {
		hd["Content-Type"] = ndjsonContentType
	} else {
		hd["Content-Type"] = sseContentType
	}
	hd["Cache-Control"] = noCache
	hd["X-Accel-Buffering"] = no
	hd["X-Content-Type-Options"] = nosniff
	setRevisionHeaders(hd, created, compact)
	w.WriteHeader(http.StatusOK)

	f := feed{h: h, path: r.URL.EscapedPath(),
		enc:      Encoder{Format: req.Format, PrevKV: req.PrevKV},
		startRev: startRev, startSub: startSub,
	}
	if src != nil {
		// The response goes on without this goroutine.
		src.onEnd = req.OnEnd
		detached = h.detach(w, src, st, f)
		return
	}
	h.active.Add(1)
	defer h.active.Add(-1)
	c := &conn{wake: make(chan struct{}, 1),
		w: w, r: r, rc: http.NewResponseController(w), st: st, feed: f,
	}
	if !h.add(c) {
		return
	}
	defer h.remove(c)
	c.run()
}

// add lists c for Shutdown, unless Shutdown has begun.
func (h *Handler) add(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
		return false
	default:
	}
	c.next = h.conns
	if h.conns != nil {
		h.conns.prev = c
	}
	h.conns = c
	return true
}

// remove takes c off the list.
func (h *Handler) remove(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		h.conns = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
}

// Header values of every stream.
var (
	sseContentType    = []string{FormatSSE.ContentType()}
	ndjsonContentType = []string{FormatNDJSON.ContentType()}
	noCache           = []string{"no-cache"}
	no                = []string{"no"}
	nosniff           = []string{"nosniff"}
)

// setRevisionHeaders sets X-Revision and X-Compact-Revision, both values
// in one allocation.
func setRevisionHeaders(h http.Header, rev, compact int64) {
	var buf [40]byte
	b := strconv.AppendInt(buf[:0], rev, 10)
	n := len(b)
	b = strconv.AppendInt(b, compact, 10)
	s := string(b)
	v := []string{s[:n], s[n:]}
	h["X-Revision"] = v[0:1:1]
	h["X-Compact-Revision"] = v[1:2:2]
}

// writeError answers err before streaming.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if h.opts.WriteError != nil {
		h.opts.WriteError(w, r, err)
		return
	}
	writeProblem(w, err)
}
