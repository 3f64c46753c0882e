package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/go-chi/chi/v5"
)

// requestState is what the middleware learns of one request, in one
// allocation and one context value: the request id, the authentication, the
// response writer that the access log reads, and the router's context.
// The outermost layer (Server.ServeHTTP, or requestIDMiddleware on its
// own) makes it; the inner ones fill it in. Each field is written before
// the handlers that read it run, and not after.
type requestState struct {
	rw      responseWriter
	id      string
	auth    authInfo
	authSet bool
	// rctx is the router's context, taken from the server's pool for the
	// request's lifetime; nil outside Server.ServeHTTP.
	rctx *chi.Context
	// idVal and idHex back the X-Request-Id header value and a generated
	// id, written once by requestIDMiddleware.
	idVal [1]string
	idHex [24]byte

	// stream is the phase of a watch stream served by this request (see
	// the stream* constants): a stream detached from its handler, as h2srv
	// serves one, ends after the handler returns, and the access log's
	// line, with the stream's duration, is written at its end.
	stream atomic.Int32
	// logLine writes the access log's line; set before stream moves to
	// streamHandlerDone, read by whoever ends the stream after that.
	logLine func()
}

// The phases of a request's watch stream.
const (
	streamNone        = iota // not a stream: the line is written when the handler returns
	streamOpen               // a stream is being served
	streamHandlerDone        // the handler returned, the stream goes on
	streamEnded              // the stream ended
)

// openStream marks the request as serving a watch stream and returns
// what to call when the stream ends, with the bytes it wrote without the
// response writer (a detached stream's body).
func (st *requestState) openStream() (end func(detachedBytes int64)) {
	st.stream.Store(streamOpen)
	return func(detachedBytes int64) {
		// Nothing writes through rw any more; counted before the swap,
		// which orders it before whichever side writes the line.
		st.rw.bytes += detachedBytes
		if st.stream.Swap(streamEnded) == streamHandlerDone {
			st.logLine()
		}
	}
}

// deferLog is called by the access log when the handler returns: it
// keeps line for the end of a stream that goes on, and reports whether
// it did.
func (st *requestState) deferLog(line func()) bool {
	if st.stream.Load() != streamOpen {
		return false
	}
	st.logLine = line
	return st.stream.CompareAndSwap(streamOpen, streamHandlerDone)
}

// stateKey is the context key of the *requestState.
type stateKey struct{}

// stateContext is a request's context: its parent plus the request's
// state, which it also answers for the router's key, so that the router
// finds its context there instead of copying the request to add one.
type stateContext struct {
	context.Context
	st *requestState
}

func (c *stateContext) Value(key any) any {
	switch key {
	case stateKey{}:
		return c.st
	case chi.RouteCtxKey:
		if c.st.rctx != nil {
			return c.st.rctx
		}
	}
	return c.Context.Value(key)
}

// stateOf returns the request's state, or nil outside the middleware.
func stateOf(ctx context.Context) *requestState {
	st, _ := ctx.Value(stateKey{}).(*requestState)
	return st
}

// withState returns r with a new state in its context.
func withState(r *http.Request, st *requestState) *http.Request {
	return r.WithContext(&stateContext{Context: r.Context(), st: st})
}

// routeContexts pools the router's contexts, as the router itself does.
var routeContexts = sync.Pool{New: func() any { return chi.NewRouteContext() }}

// maxRequestIDLen bounds an X-Request-Id taken from a client.
const maxRequestIDLen = 128

// RequestID returns the request id that the request-id middleware put in
// ctx, or "" outside it.
func RequestID(ctx context.Context) string {
	if st := stateOf(ctx); st != nil {
		return st.id
	}
	return ""
}

// requestIDMiddleware gives every request an id: the client's X-Request-Id
// when it is short printable ASCII (so a proxy's id carries through),
// otherwise a new random one. The id is echoed in X-Request-Id, logged
// and put in problem documents. It makes the request's state unless an
// outer layer has.
func requestIDMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r.Context())
		if st == nil {
			st = &requestState{}
			r = withState(r, st)
		}
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = st.newRequestID()
		}
		st.id = id
		st.idVal[0] = id
		w.Header()["X-Request-Id"] = st.idVal[:]
		next.ServeHTTP(w, r)
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// newRequestID returns a new random id of 24 hex digits, kept in st.
func (st *requestState) newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	hex.Encode(st.idHex[:], b[:])
	return unsafe.String(&st.idHex[0], len(st.idHex))
}
