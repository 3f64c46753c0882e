package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

// accessLogMiddleware wraps the response in a responseWriter and writes one
// JSON log line per request when it ends: method, path, query string (with
// any access_token value redacted), the principal, status, bytes, duration,
// peer and request id. It also records the request's metrics.
func (s *Server) accessLogMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var rw *responseWriter
		if st := stateOf(r.Context()); st != nil {
			rw = &st.rw
		} else {
			rw = new(responseWriter)
		}
		*rw = responseWriter{ResponseWriter: w, revisions: s.store.Revisions}
		st := stateOf(r.Context())
		defer func() {
			status := rw.status
			if !rw.wroteHeader {
				// net/http answers 200 for a handler that wrote nothing.
				status = http.StatusOK
			}
			s.metrics.observe(r, status, time.Since(start))
			line := func() {
				ev := s.log.Info().
					Str("method", r.Method).
					Str("path", r.URL.EscapedPath())
				if r.URL.RawQuery != "" {
					ev = ev.Str("query", redactQuery(r.URL.RawQuery))
				}
				if rw.principal != "" {
					ev = ev.Str("principal", rw.principal)
				}
				ev.Int("status", status).
					Int64("bytes", rw.bytes).
					Dur("duration", time.Since(start)).
					Str("proto", r.Proto).
					Str("remote", r.RemoteAddr).
					Str("request_id", RequestID(r.Context())).
					Msg("request")
			}
			if st != nil && st.deferLog(line) {
				return // the stream goes on: its end writes the line
			}
			line()
		}()
		next.ServeHTTP(rw, r)
	})
}

// redactQuery returns the raw query with the value of every access_token
// parameter replaced by REDACTED, whatever its spelling (a percent-encoded
// name included), so that no token reaches the log.
func redactQuery(raw string) string {
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err != nil || n == QueryTokenParam || strings.Contains(strings.ToLower(n), "token") {
			parts[i] = name + "=REDACTED"
		}
	}
	return strings.Join(parts, "&")
}
