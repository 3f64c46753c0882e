package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/access"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/sse"
	"github.com/watchgate/watchgate/watchhub"
	"github.com/watchgate/watchgate/web"
	"github.com/watchgate/watchgate/ws"
)

// Store is what the API needs of the key-value store; *kv.Store provides it.
type Store interface {
	Revisions() (rev, compact int64)
	Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error)
	Txn(ctx context.Context, t kv.TxnRequest) (kv.TxnResponse, error)
	Compact(ctx context.Context, rev int64) error
	WriteSnapshot(w io.Writer) (rev int64, n int64, err error)
	Status() (kv.Status, error)
}

var _ Store = (*kv.Store)(nil)

// Default limits, as the command line documents them.
const (
	DefaultMaxKeySize   = 4096
	DefaultMaxValueSize = 1 << 20
	DefaultMaxTxnOps    = 128
	// DefaultMaxStreams bounds the open SSE streams and WebSockets of one
	// client.
	DefaultMaxStreams = 1000
)

// Options configures a Server. The zero value is the documented default.
type Options struct {
	// Logger receives the access log and error logs; nil means
	// zerolog.Nop().
	Logger *zerolog.Logger

	// MaxKeySize (default 4096), MaxValueSize (default 1 MiB) and MaxTxnOps
	// (default 128) bound requests; larger ones get 413. They should equal
	// the store's own limits (kv.Options).
	MaxKeySize   int
	MaxValueSize int
	MaxTxnOps    int

	// OpenAPI is the document served at GET /openapi.yaml; nil serves 404.
	OpenAPI []byte
	// Version is reported by GET /v1/status; empty means "dev".
	Version string
	// TempDir holds a snapshot while GET /v1/snapshot stages it (so the
	// response can carry its exact revision and length); empty means
	// os.TempDir(). Best on the store's file system.
	TempDir string

	// Hub, when set, serves the watch endpoints: GET /v1/watch/{key} as
	// Server-Sent Events or NDJSON (package sse) and GET /v1/ws, the
	// multiplexed WebSocket (package ws); nil answers 404 on both. The
	// caller owns the hub: it closes it after the http.Server has shut down
	// and WaitStreams has returned.
	Hub *watchhub.Hub
	// SSE and WS tune the two transports. New overrides what the API
	// decides for them: the key limit, the logger, how SSE errors are
	// rendered (through the error table) and the path prefix.
	SSE sse.Options
	WS  ws.Options

	// Access is the access policy at the start (SetAccess replaces it);
	// nil lets every request in as access.Anonymous, with every right.
	Access *access.Policy
	// AllowQueryToken also takes a token from the access_token query
	// parameter, for clients that can send neither a header nor a cookie.
	// A URL ends up in histories and proxy logs, so it is off by default;
	// the access log never shows it.
	AllowQueryToken bool
	// SecureCookies marks the session cookie Secure on cleartext requests
	// too, for a server behind a TLS-terminating proxy (it is always Secure
	// over TLS).
	SecureCookies bool
	// CORSOrigins lists the browser origins ("https://app.example.com",
	// scheme://host[:port]) whose pages may call the API (CORS, with
	// credentials) and open WebSockets, and whose unsafe requests are not
	// refused as cross-origin; "*" allows every origin for CORS and
	// WebSocket (without credentials) but trusts none for cookie-carrying
	// writes. Empty: same origin only. New rejects malformed origins.
	CORSOrigins []string
	// WriteRate, when > 0, limits every client (its token, or its IP
	// address without one) to that many write requests a second on average,
	// in bursts of WriteBurst (default: WriteRate rounded down, at least
	// 1); over it a write gets 429 with Retry-After.
	WriteRate  float64
	WriteBurst int
	// MaxStreams bounds the open SSE streams and WebSockets of each client
	// (token or IP address), default DefaultMaxStreams; over it, 429.
	MaxStreams int
	// Metrics is what GET /metrics serves; nil makes new ones
	// (NewMetrics).
	Metrics *Metrics
	// Pprof serves net/http/pprof under /debug/pprof/, behind the same
	// access control as the API.
	Pprof bool
	// Ready, when set, is asked by every GET /readyz of a server that
	// SetReady made ready: an error answers 503 (not-ready) with the
	// error's text as the detail, for a store that can be open but unable
	// to serve (an etcd cluster out of reach). It must be cheap and safe
	// for concurrent use.
	Ready func() error
}

// Server is the HTTP API of one store. It is an http.Handler; create it
// with New. It starts no goroutine and owns nothing that needs closing: the
// caller closes the store after the http.Server has shut down.
type Server struct {
	store   Store
	opts    Options
	log     zerolog.Logger
	ready   atomic.Bool
	handler *chi.Mux

	// sse and ws are the watch transports; nil without Options.Hub.
	sse *sse.Handler
	ws  *ws.Handler

	policy      atomic.Pointer[access.Policy]
	crossOrigin *http.CrossOriginProtection
	cors        func(http.Handler) http.Handler // nil: same origin only
	writes      *writeLimiter                   // nil: no write rate limit
	streams     *streamLimiter
	metrics     *Metrics
	web         http.Handler
}

// New returns the API for store, not ready (GET /readyz answers 503) until
// SetReady(true). It fails on options the transports reject (a malformed
// origin pattern).
func New(store Store, opts Options) (*Server, error) {
	if opts.MaxKeySize <= 0 {
		opts.MaxKeySize = DefaultMaxKeySize
	}
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = DefaultMaxValueSize
	}
	if opts.MaxTxnOps <= 0 {
		opts.MaxTxnOps = DefaultMaxTxnOps
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = DefaultMaxStreams
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics()
	}
	s := &Server{store: store, opts: opts, log: zerolog.Nop(), metrics: opts.Metrics,
		streams: newStreamLimiter(opts.MaxStreams)}
	if opts.Logger != nil {
		s.log = *opts.Logger
	}
	s.policy.Store(opts.Access)
	if err := s.setOrigins(); err != nil {
		return nil, err
	}
	if opts.WriteRate > 0 {
		s.writes = newWriteLimiter(opts.WriteRate, opts.WriteBurst)
	}
	s.web = web.NewHandler(web.Options{NotFound: http.HandlerFunc(s.notFound)})
	if opts.Hub != nil {
		if err := s.newWatchHandlers(); err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	s.metrics.registerServer(s)
	return s, nil
}

// SetReady sets what GET /readyz answers: 200 when ready, 503 otherwise.
// The server is not ready until it listens, and stops being ready when it
// begins to shut down.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// ServeHTTP serves the API. The request's state (requestState) and the
// router's context enter the request's context together, in one copy of
// the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := &requestState{}
	rctx := routeContexts.Get().(*chi.Context)
	rctx.Reset()
	rctx.Routes = s.handler
	st.rctx = rctx
	s.handler.ServeHTTP(w, withState(r, st))
	routeContexts.Put(rctx)
}

// routes builds the router. Middleware order, outermost first: request
// id, access log (which also adds the revision headers and records the
// metrics), recoverer, CORS, authentication. Public routes (health, the
// dashboard, the document, signing in) need no token; every other route
// needs one when access control is on, and writes count against the write
// rate.
func (s *Server) routes() *chi.Mux {
	r := chi.NewRouter()
	r.Use(requestIDMiddleware, s.accessLogMiddleware, s.recovererMiddleware)
	if s.cors != nil {
		r.Use(s.cors)
	}
	r.Use(s.authenticate)
	r.NotFound(s.notFound)
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		allowed := allowedMethods(r, req)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.writeError(w, req, &requestError{kind: ErrMethodNotAllowed,
			msg: req.Method + " is not allowed here; allowed: " + strings.Join(allowed, ", ")})
	})

	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Get("/openapi.yaml", s.openapi)
	for _, p := range web.Patterns {
		r.Get(p, s.web.ServeHTTP)
		r.Head(p, s.web.ServeHTTP)
	}
	r.Post("/v1/session", s.createSession)
	r.Delete("/v1/session", s.deleteSession)

	r.Group(func(r chi.Router) {
		r.Use(s.requireAuth)
		r.Get("/v1/session", s.getSession)
		r.Get("/v1/kv/*", s.getKV)
		r.Head("/v1/kv/*", s.getKV)
		r.Get("/v1/status", s.status)
		r.Get("/v1/snapshot", s.snapshot)
		r.Method(http.MethodGet, "/metrics", s.serveMetrics())
		if s.sse != nil {
			r.Get("/v1/watch/*", s.watch)
			r.Get("/v1/ws", s.serveWS)
		}
		if s.opts.Pprof {
			r.HandleFunc("/debug/pprof/*", pprof.Index)
			r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			r.HandleFunc("/debug/pprof/profile", pprof.Profile)
			r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		r.Group(func(r chi.Router) {
			r.Use(s.limitWrites)
			r.Put("/v1/kv/*", s.putKV)
			r.Delete("/v1/kv/*", s.deleteKV)
			r.Post("/v1/txn", s.txn)
			r.Post("/v1/compact", s.compact)
		})
	})
	return r
}

// notFound answers a path no route serves.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, &requestError{kind: ErrNotFound, msg: "no resource at " + r.URL.EscapedPath()})
}

// allowedMethods lists the methods that some route serves at req's path,
// for the Allow header of a 405.
func allowedMethods(mux *chi.Mux, req *http.Request) []string {
	path := req.URL.RawPath
	if path == "" {
		path = req.URL.Path
	}
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete} {
		if mux.Match(chi.NewRouteContext(), m, path) {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// healthz answers 200 while the process serves at all.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, []byte(`{"status":"ok"}`))
}

// readyz answers 200 when the server is ready to take traffic and 503 while
// it starts or shuts down, or while Options.Ready reports an error.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		s.writeError(w, r, &requestError{kind: ErrNotReady, msg: "the server is starting or shutting down"})
		return
	}
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			s.writeError(w, r, &requestError{kind: ErrNotReady, msg: "the store cannot serve: " + err.Error()})
			return
		}
	}
	writeJSON(w, r, http.StatusOK, []byte(`{"status":"ready"}`))
}

// openapi serves the API's OpenAPI document.
func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	if s.opts.OpenAPI == nil {
		s.writeError(w, r, &requestError{kind: ErrNotFound, msg: "this server carries no OpenAPI document"})
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(s.opts.OpenAPI)
}
