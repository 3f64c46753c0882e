package httpapi

import (
	"net/http"
	"time"
)

// accessLogMiddleware wraps the response in a responseWriter and writes one
// JSON log line per request when it ends: method, path (never the query
// string, which may carry a token), status, bytes, duration and request id.
func (s *Server) accessLogMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rw := &responseWriter{ResponseWriter: w, revisions: s.store.Revisions}
		defer func() {
			status := rw.status
			if !rw.wroteHeader {
				// net/http answers 200 for a handler that wrote nothing.
				status = http.StatusOK
			}
			s.log.Info().
				Str("method", r.Method).
				Str("path", r.URL.EscapedPath()).
				Int("status", status).
				Int64("bytes", rw.bytes).
				Dur("duration", time.Since(start)).
				Str("proto", r.Proto).
				Str("request_id", RequestID(r.Context())).
				Msg("request")
		}()
		next.ServeHTTP(rw, r)
	})
}
