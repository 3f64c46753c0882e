package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/go-chi/cors"
)

// corsAllowedHeaders are the request headers a page of an allowed origin
// may send: the API's own (conditional requests, request ids), bearer
// tokens and Last-Event-ID, which a resuming EventSource polyfill sends.
var corsAllowedHeaders = []string{"Authorization", "Content-Type", "If-Match", "If-None-Match", "Last-Event-ID", "X-Request-Id"}

// corsExposedHeaders are the response headers such a page may read: the
// revisions it resumes from, entity tags, key metadata, request ids and
// Retry-After.
var corsExposedHeaders = []string{"X-Revision", "X-Compact-Revision", "ETag", "X-Create-Revision", "X-Mod-Revision",
	"X-Version", "X-Request-Id", "Retry-After"}

// setOrigins applies Options.CORSOrigins to CORS, to the WebSocket Origin
// check and to the cross-origin protection of unsafe requests.
func (s *Server) setOrigins() error {
	s.crossOrigin = http.NewCrossOriginProtection()
	if len(s.opts.CORSOrigins) == 0 {
		return nil
	}
	var exact []string
	any := false
	for _, o := range s.opts.CORSOrigins {
		if o == "*" {
			any = true
			continue
		}
		norm, err := NormalizeOrigin(o)
		if err != nil {
			return err
		}
		exact = append(exact, norm)
		if err := s.crossOrigin.AddTrustedOrigin(norm); err != nil {
			return fmt.Errorf("httpapi: origin %q: %w", o, err)
		}
	}
	co := cors.Options{
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete},
		AllowedHeaders: corsAllowedHeaders,
		ExposedHeaders: corsExposedHeaders,
		MaxAge:         600,
	}
	if any {
		// Any page may read, but not with the user's cookies: "*" and
		// credentials do not go together.
		co.AllowedOrigins = []string{"*"}
		s.opts.WS.OriginPatterns = []string{"*"}
	} else {
		co.AllowedOrigins = exact
		co.AllowCredentials = true
		for _, o := range exact {
			s.opts.WS.OriginPatterns = append(s.opts.WS.OriginPatterns, escapeGlob(o))
		}
	}
	s.cors = cors.Handler(co)
	return nil
}

// NormalizeOrigin checks that o is a browser origin, scheme://host[:port]
// with scheme http or https and nothing after the host, and returns it in
// lower case as browsers send it.
func NormalizeOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("httpapi: origin %q: want scheme://host[:port] with scheme http or https, or *", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// escapeGlob quotes the path.Match metacharacters of s (an IPv6 host has
// brackets), so that the WebSocket origin pattern matches s exactly.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
