package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/watchgate/watchgate/access"
)

// TokenCookie is the cookie that POST /v1/session sets: the token itself,
// HttpOnly (no script reads it) and SameSite=Strict (no other site's page
// sends it), for browsers whose EventSource cannot send an Authorization
// header.
const TokenCookie = "watchgate_token"

// QueryTokenParam is the query parameter that carries a token when
// Options.AllowQueryToken is set. The access log never shows it.
const QueryTokenParam = "access_token"

// How a request presented its token.
const (
	viaNone   = ""
	viaBearer = "bearer"
	viaCookie = "cookie"
	viaQuery  = "query"
)

// authInfo is what the authentication middleware learned of a request.
type authInfo struct {
	principal *access.Principal // nil when err is set
	err       error             // why the request is not authenticated
	via       string
	token     string
}

// authOf returns the request's authentication, as the middleware put it.
func authOf(ctx context.Context) *authInfo {
	if st := stateOf(ctx); st != nil && st.authSet {
		return &st.auth
	}
	return noAuth
}

// noAuth is the authentication of a request that the middleware did not
// see. It is shared: nothing writes to it.
var noAuth = &authInfo{err: &requestError{kind: ErrUnauthorized, msg: "no authentication"}}

// Principal returns who the request acts as, or nil when it is not
// authenticated (or outside the server's middleware).
func Principal(ctx context.Context) *access.Principal {
	return authOf(ctx).principal
}

// SetAccess replaces the access policy: nil lets every request in as
// access.Anonymous, a policy requires every protected request to carry one
// of its tokens. Requests and streams already admitted keep the check they
// passed; new requests, and new watches on open WebSockets, are checked
// against the new policy. It is safe to call at any time (SIGHUP).
func (s *Server) SetAccess(p *access.Policy) { s.policy.Store(p) }

// authenticate resolves the request's token into a principal and puts it
// in the context; it rejects nothing (public routes do not need a
// principal, requireAuth answers 401 for the others). The token comes from
// the first of: the Authorization: Bearer header, the session cookie, the
// access_token query parameter (only with Options.AllowQueryToken).
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := stateOf(r.Context())
		if st == nil {
			st = &requestState{}
			r = withState(r, st)
		}
		a := &st.auth
		*a = authInfo{}
		policy := s.policy.Load()
		token, via, err := tokenOf(r, s.opts.AllowQueryToken)
		a.token, a.via = token, via
		switch {
		case err != nil:
			a.err = err
		case policy == nil:
			a.principal = access.Anonymous
		default:
			p, err := policy.Authenticate(token, time.Now())
			if err != nil {
				a.err = unauthorized(err)
			} else {
				a.principal = p
			}
		}
		if rw, ok := w.(*responseWriter); ok && a.principal != nil {
			rw.principal = a.principal.Name
		}
		st.authSet = true
		next.ServeHTTP(w, r)
	})
}

// tokenOf finds the request's token and how it came. A malformed
// Authorization header is an error rather than a fall back to the cookie.
func tokenOf(r *http.Request, allowQuery bool) (token, via string, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", viaNone, &requestError{kind: ErrUnauthorized,
				msg: "the Authorization header must be \"Bearer <token>\""}
		}
		return tok, viaBearer, nil
	}
	if c, err := r.Cookie(TokenCookie); err == nil && c.Value != "" {
		return c.Value, viaCookie, nil
	}
	if allowQuery {
		if q, err := parseQuery(r); err == nil && q.Get(QueryTokenParam) != "" {
			return q.Get(QueryTokenParam), viaQuery, nil
		}
	}
	return "", viaNone, nil
}

// unauthorized turns an access error into the 401 the client sees.
func unauthorized(err error) error {
	switch {
	case errors.Is(err, access.ErrNoToken):
		return &requestError{kind: ErrUnauthorized, msg: "a token is required: send Authorization: Bearer <token>, or sign in with POST /v1/session"}
	case errors.Is(err, access.ErrExpired):
		return &requestError{kind: ErrUnauthorized, msg: "the token has expired"}
	}
	return &requestError{kind: ErrUnauthorized, msg: "the token is not valid"}
}

// requireAuth answers 401 for a request without a valid token, and 403 for
// an unsafe request from another origin that a browser could have sent on
// its own (one without a bearer token: cookie-authenticated or anonymous),
// as http.CrossOriginProtection decides with Sec-Fetch-Site and Origin;
// the origins of Options.CORSOrigins are trusted.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := authOf(r.Context())
		if a.principal == nil {
			s.metrics.authFailures.Inc()
			s.writeError(w, r, a.err)
			return
		}
		if a.via != viaBearer {
			if err := s.crossOrigin.Check(r); err != nil {
				s.writeError(w, r, &requestError{kind: ErrCrossOrigin, msg: err.Error() +
					"; send the token as Authorization: Bearer, or add the page's origin to --cors-origins"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// accessMode is what a request does to a range of keys.
type accessMode bool

const (
	modeRead  accessMode = false
	modeWrite accessMode = true
)

// authorize checks that the request's principal may read or write every key
// of the range (key, end) in the store's conventions (end nil: the key;
// {0}: every key from key on). The error is a 403 problem naming the range.
func (s *Server) authorize(r *http.Request, mode accessMode, key, end []byte) error {
	p := Principal(r.Context())
	if p == nil {
		return authOf(r.Context()).err
	}
	ok := p.CanRead(key, end)
	verb := "read"
	if mode == modeWrite {
		ok, verb = p.CanWrite(key, end), "write"
	}
	if ok {
		return nil
	}
	return &requestError{kind: ErrForbidden, msg: "token " + strconv.Quote(p.Name) + " may not " + verb + " " + describeRange(key, end)}
}

// describeRange names a range for an error message.
func describeRange(key, end []byte) string {
	switch {
	case len(end) == 0:
		return "the key " + strconv.Quote(string(key))
	case len(end) == 1 && end[0] == 0 && len(key) == 0:
		return "every key"
	case len(end) == 1 && end[0] == 0:
		return "every key from " + strconv.Quote(string(key)) + " on"
	}
	return "the range [" + strconv.Quote(string(key)) + ", " + strconv.Quote(string(end)) + ")"
}

// everyKey is the range of all keys, for operations on the whole store
// (compaction, snapshots).
var everyKey = []byte{0}
