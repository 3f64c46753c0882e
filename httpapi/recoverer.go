package httpapi

import (
	"fmt"
	"net/http"
	"runtime/debug"
)

// recovererMiddleware turns a panic in a handler into a logged error and,
// when the response has not started, a 500 problem; when it has, the
// connection is aborted so the client sees a broken response rather than a
// short one. http.ErrAbortHandler passes through untouched.
func (s *Server) recovererMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler {
				panic(rec)
			}
			s.log.Error().
				Str("request_id", RequestID(r.Context())).
				Str("method", r.Method).
				Str("path", r.URL.EscapedPath()).
				Str("panic", fmt.Sprint(rec)).
				Bytes("stack", debug.Stack()).
				Msg("handler panicked")
			if rw, ok := w.(*responseWriter); ok && rw.wroteHeader {
				panic(http.ErrAbortHandler)
			}
			s.writeError(w, r, fmt.Errorf("panic: %v", rec))
		}()
		next.ServeHTTP(w, r)
	})
}
