package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/watchgate/watchgate/access"
	"github.com/watchgate/watchgate/kvjson"
)

// createSession serves POST /v1/session: it checks the bearer token of the
// request and sets it as the session cookie (TokenCookie: HttpOnly,
// SameSite=Strict, Path=/, Secure over TLS or with Options.SecureCookies,
// expiring with the token), so that a browser's EventSource and WebSocket
// carry it. It answers the session (sessionJSON). Without access control
// there is nothing to sign in to: it answers the anonymous session and
// sets no cookie.
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	if err := s.crossOrigin.Check(r); err != nil {
		s.writeError(w, r, &requestError{kind: ErrCrossOrigin, msg: err.Error()})
		return
	}
	a := authOf(r.Context())
	if a.via != viaBearer && a.principal != access.Anonymous {
		s.metrics.authFailures.Inc()
		s.writeError(w, r, &requestError{kind: ErrUnauthorized, msg: "send the token to sign in with as Authorization: Bearer <token>"})
		return
	}
	if a.principal == nil {
		s.metrics.authFailures.Inc()
		s.writeError(w, r, a.err)
		return
	}
	if !a.principal.IsAnonymous() {
		if !validCookieValue(a.token) {
			s.writeError(w, r, badRequest("this token cannot be sent as a cookie (it holds characters a cookie value cannot); use it as a bearer token"))
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name:     TokenCookie,
			Value:    a.token,
			Path:     "/",
			Expires:  a.principal.Expires,
			HttpOnly: true,
			Secure:   r.TLS != nil || s.opts.SecureCookies,
			SameSite: http.SameSiteStrictMode,
		})
	}
	writeJSON(w, r, http.StatusOK, appendSession(nil, a.principal))
}

// getSession serves GET /v1/session: who the request acts as.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, r, http.StatusOK, appendSession(nil, Principal(r.Context())))
}

// deleteSession serves DELETE /v1/session: it expires the session cookie
// (204). It needs no valid token, so that a browser holding a revoked one
// can still sign out.
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) {
	if err := s.crossOrigin.Check(r); err != nil {
		s.writeError(w, r, &requestError{kind: ErrCrossOrigin, msg: err.Error()})
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     TokenCookie,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil || s.opts.SecureCookies,
		SameSite: http.SameSiteStrictMode,
	})
	w.WriteHeader(http.StatusNoContent)
}

// appendSession appends {"name":...,"read":[{"prefix":...}],"write":[...],
// "expires":"RFC 3339"} (expires only when the token expires); prefixes
// that are not UTF-8 are prefix_b64, as keys are.
func appendSession(b []byte, p *access.Principal) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, p.Name)
	for _, l := range []struct {
		member   string
		prefixes [][]byte
	}{{`,"read":[`, p.ReadPrefixes}, {`,"write":[`, p.WritePrefixes}} {
		b = append(b, l.member...)
		for i, pre := range l.prefixes {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			b = kvjson.AppendBytesField(b, "prefix", pre)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if !p.Expires.IsZero() {
		b = append(b, `,"expires":`...)
		b = appendJSONString(b, p.Expires.UTC().Format(time.RFC3339))
	}
	return append(b, '}')
}

// validCookieValue reports whether v can be a cookie value as it is
// (RFC 6265 cookie-octets), so that the cookie carries the token unchanged.
func validCookieValue(v string) bool {
	return v != "" && !strings.ContainsFunc(v, func(c rune) bool {
		return c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\'
	})
}
