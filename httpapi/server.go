package httpapi

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/sse"
	"github.com/watchgate/watchgate/watchhub"
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
}

// Server is the HTTP API of one store. It is an http.Handler; create it
// with New. It starts no goroutine and owns nothing that needs closing: the
// caller closes the store after the http.Server has shut down.
type Server struct {
	store   Store
	opts    Options
	log     zerolog.Logger
	ready   atomic.Bool
	handler http.Handler

	// sse and ws are the watch transports; nil without Options.Hub.
	sse *sse.Handler
	ws  *ws.Handler
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
	s := &Server{store: store, opts: opts, log: zerolog.Nop()}
	if opts.Logger != nil {
		s.log = *opts.Logger
	}
	if opts.Hub != nil {
		if err := s.newWatchHandlers(); err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	return s, nil
}

// SetReady sets what GET /readyz answers: 200 when ready, 503 otherwise.
// The server is not ready until it listens, and stops being ready when it
// begins to shut down.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// routes builds the router. Middleware order, outermost first: request id,
// access log (which also adds the revision headers), recoverer.
func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(requestIDMiddleware, s.accessLogMiddleware, s.recovererMiddleware)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &requestError{kind: ErrNotFound,
			msg: "no resource at " + r.URL.EscapedPath()})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		allowed := allowedMethods(r, req)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		s.writeError(w, req, &requestError{kind: ErrMethodNotAllowed,
			msg: req.Method + " is not allowed here; allowed: " + strings.Join(allowed, ", ")})
	})

	r.Get("/v1/kv/*", s.getKV)
	r.Head("/v1/kv/*", s.getKV)
	r.Put("/v1/kv/*", s.putKV)
	r.Delete("/v1/kv/*", s.deleteKV)
	r.Post("/v1/txn", s.txn)
	r.Post("/v1/compact", s.compact)
	r.Get("/v1/status", s.status)
	r.Get("/v1/snapshot", s.snapshot)
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Get("/openapi.yaml", s.openapi)
	if s.sse != nil {
		r.Get("/v1/watch/*", s.watch)
		r.Get("/v1/ws", s.ws.ServeHTTP)
	}
	return r
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
// it starts or shuts down.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		s.writeError(w, r, &requestError{kind: ErrNotReady, msg: "the server is starting or shutting down"})
		return
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
