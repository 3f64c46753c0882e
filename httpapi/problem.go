package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
	"github.com/watchgate/watchgate/sse"
)

var (
	// ErrBadRequest reports a malformed request: a bad parameter, header,
	// key encoding or body.
	ErrBadRequest = errors.New("httpapi: bad request")
	// ErrTooLarge reports a request body over its limit.
	ErrTooLarge = errors.New("httpapi: request too large")
	// ErrNotFound reports a path that no route serves.
	ErrNotFound = errors.New("httpapi: not found")
	// ErrMethodNotAllowed reports a method that the path's route does not
	// serve.
	ErrMethodNotAllowed = errors.New("httpapi: method not allowed")
	// ErrPreconditionFailed reports a conditional write (If-Match,
	// If-None-Match) whose condition did not hold.
	ErrPreconditionFailed = errors.New("httpapi: precondition failed")
	// ErrNotReady reports a server that is starting or shutting down.
	ErrNotReady = errors.New("httpapi: server is not ready")
	// ErrUnauthorized reports a request without a valid token when access
	// control is on.
	ErrUnauthorized = errors.New("httpapi: unauthorized")
	// ErrForbidden reports a request outside what its token may read or
	// write.
	ErrForbidden = errors.New("httpapi: forbidden")
	// ErrCrossOrigin reports an unsafe request that another site's page
	// sent with the browser's credentials (or none), refused as a
	// cross-site request forgery.
	ErrCrossOrigin = errors.New("httpapi: cross-origin request refused")
	// ErrRateLimited reports a write over the client's write rate; the
	// answer's Retry-After says when the next one is allowed.
	ErrRateLimited = errors.New("httpapi: write rate exceeded")
	// ErrTooManyStreams reports a watch stream or socket over the client's
	// limit of open streams.
	ErrTooManyStreams = errors.New("httpapi: too many open streams")
	// ErrInternal stands for every error that is not in the table.
	ErrInternal = errors.New("httpapi: internal error")
)

// ProblemTypePrefix starts the "type" URI of every problem document; the
// rest is the slug of the table entry (for example
// urn:watchgate:problem:compacted).
const ProblemTypePrefix = "urn:watchgate:problem:"

// problemKind is one row of the error→status table.
type problemKind struct {
	err    error
	status int
	slug   string
	title  string
	// revisions adds the store's current revision and compact revision as
	// members, for errors about revisions.
	revisions bool
}

// problemTable is the one error→status table: the first row whose err
// matches (errors.Is) decides the status. Every error a client can see goes
// through it.
var problemTable = []problemKind{
	{kv.ErrCompacted, http.StatusGone, "compacted", "Revision compacted", true},
	{kv.ErrFutureRev, http.StatusBadRequest, "future-revision", "Future revision", true},
	{kv.ErrAlreadyCompacted, http.StatusConflict, "already-compacted", "Already compacted", true},
	{kv.ErrKeyNotFound, http.StatusNotFound, "key-not-found", "Key not found", false},
	{kv.ErrEmptyKey, http.StatusBadRequest, "empty-key", "Empty key", false},
	{kv.ErrKeyTooLarge, http.StatusRequestEntityTooLarge, "key-too-large", "Key too large", false},
	{kv.ErrValueTooLarge, http.StatusRequestEntityTooLarge, "value-too-large", "Value too large", false},
	{kv.ErrTooManyOps, http.StatusRequestEntityTooLarge, "too-many-operations", "Too many operations", false},
	{kv.ErrInvalidCompare, http.StatusBadRequest, "invalid-compare", "Invalid compare", false},
	{kv.ErrClosed, http.StatusServiceUnavailable, "unavailable", "Store closed", false},
	// The etcd backend's own errors: a branch that writes a key twice
	// (the kv store allows it, etcd does not), a cluster out of reach,
	// and a gateway that must be restarted; clients of the last two
	// retry, through another gateway if they can.
	{etcdstore.ErrDuplicateKey, http.StatusBadRequest, "duplicate-key", "Duplicate key", false},
	{etcdstore.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "etcd unavailable", false},
	{etcdstore.ErrFeedLost, http.StatusServiceUnavailable, "unavailable", "Gateway failed", false},
	{ErrBadRequest, http.StatusBadRequest, "bad-request", "Bad request", false},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "request-too-large", "Request too large", false},
	{ErrNotFound, http.StatusNotFound, "not-found", "Not found", false},
	{ErrMethodNotAllowed, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", false},
	{ErrPreconditionFailed, http.StatusPreconditionFailed, "precondition-failed", "Precondition failed", true},
	{ErrNotReady, http.StatusServiceUnavailable, "not-ready", "Not ready", false},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized", "Unauthorized", false},
	{ErrForbidden, http.StatusForbidden, "forbidden", "Forbidden", false},
	{ErrCrossOrigin, http.StatusForbidden, "cross-origin", "Cross-origin request refused", false},
	{ErrRateLimited, http.StatusTooManyRequests, "rate-limited", "Too many writes", false},
	{ErrTooManyStreams, http.StatusTooManyRequests, "too-many-streams", "Too many streams", false},
	{sse.ErrBadRequest, http.StatusBadRequest, "bad-request", "Bad request", false},
	{sse.ErrUnavailable, http.StatusServiceUnavailable, "shutting-down", "Shutting down", false},
	// A client that went away never reads its answer; 499 (as nginx logs
	// it) keeps such requests apart from server errors in the access log.
	{context.Canceled, 499, "canceled", "Request canceled", false},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "timeout", "Timeout", false},
}

// compactedRead is a read at rev that the store refused as compacted
// (kv.ErrCompacted). The store checks the compact revision inside its read
// transaction and publishes it to Revisions a moment after the compaction's
// own transaction commits; a read in between is refused while Revisions
// still reports a compact revision <= rev. The answer must not tell the
// client that rev is readable, so it reports at least rev+1.
type compactedRead struct {
	err error
	rev int64
}

func (e *compactedRead) Error() string { return e.err.Error() }
func (e *compactedRead) Unwrap() error { return e.err }

// readError wraps an error of a read at rev (0: the current revision).
func readError(err error, rev int64) error {
	if rev > 0 && errors.Is(err, kv.ErrCompacted) {
		return &compactedRead{err: err, rev: rev}
	}
	return err
}

// revisionsFor is the store's revision and compact revision as a problem
// about err reports them.
func (s *Server) revisionsFor(err error) (rev, compact int64) {
	rev, compact = s.store.Revisions()
	if pe, ok := errors.AsType[*preconditionError](err); ok && pe.rev > 0 {
		rev = pe.rev
	}
	if cr, ok := errors.AsType[*compactedRead](err); ok && compact <= cr.rev {
		compact = cr.rev + 1
	}
	return rev, compact
}

// errBrokenTxnResponse reports a store answer that does not fit its
// request; it is not in the table, so it is answered as an internal error.
var errBrokenTxnResponse = errors.New("httpapi: the store's transaction response does not match the request")

var internalKind = problemKind{ErrInternal, http.StatusInternalServerError, "internal", "Internal error", false}

// kindOf returns the table row for err, or the internal-error row.
func kindOf(err error) problemKind {
	for _, k := range problemTable {
		if errors.Is(err, k.err) {
			return k
		}
	}
	return internalKind
}

// StatusOf returns the HTTP status that err is answered with.
func StatusOf(err error) int { return kindOf(err).status }

// requestError is a client error with the text shown as the problem's
// detail; it unwraps to its kind (ErrBadRequest, ErrTooLarge, ...).
type requestError struct {
	kind error
	msg  string
}

func (e *requestError) Error() string { return e.kind.Error() + ": " + e.msg }
func (e *requestError) Unwrap() error { return e.kind }
func (e *requestError) detail() string {
	return e.msg
}

func badRequest(format string, args ...any) error {
	return &requestError{kind: ErrBadRequest, msg: fmt.Sprintf(format, args...)}
}

func tooLarge(format string, args ...any) error {
	return &requestError{kind: ErrTooLarge, msg: fmt.Sprintf(format, args...)}
}

// preconditionError is a failed If-Match / If-None-Match: the key's current
// version (nil when it does not exist) goes into the problem as "kv".
type preconditionError struct {
	cond    string
	current *kv.KeyValue
	// rev is the revision the failed transaction saw, so the problem's
	// "revision" agrees with its X-Revision and its "kv" even when later
	// writes were published before the answer was written.
	rev int64
}

func (e *preconditionError) Error() string {
	return ErrPreconditionFailed.Error() + ": " + e.cond
}
func (e *preconditionError) Unwrap() error { return ErrPreconditionFailed }
func (e *preconditionError) detail() string {
	if e.current == nil {
		return e.cond + " does not hold: the key does not exist"
	}
	return e.cond + " does not hold: the key's entity tag is \"" +
		strconv.FormatInt(e.current.ModRevision, 10) + "\""
}
func (e *preconditionError) appendMembers(dst []byte) []byte {
	if e.current == nil {
		return dst
	}
	dst = append(dst, `,"kv":`...)
	return kvjson.AppendKV(dst, e.current, false)
}

// writeError answers err as problem+json. Errors outside the table are
// logged with the request id and shown only as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	k := kindOf(err)
	switch {
	case k.err == ErrNotReady:
		// Polled by load balancers while starting or stopping; not news.
	case k.status >= 500:
		ev := s.log.Error()
		if k.err != ErrInternal {
			ev = s.log.Warn()
		}
		ev.Err(err).Str("request_id", RequestID(r.Context())).
			Str("method", r.Method).Str("path", r.URL.EscapedPath()).Msg("request failed")
	case k.status == 499:
		s.log.Debug().Err(err).Str("request_id", RequestID(r.Context())).Msg("request canceled")
	}
	b := s.appendProblem(make([]byte, 0, 256), err, RequestID(r.Context()))
	b = append(b, '\n')

	h := w.Header()
	if _, ok := errors.AsType[*compactedRead](err); ok {
		_, compact := s.revisionsFor(err)
		h.Set("X-Compact-Revision", strconv.FormatInt(compact, 10))
	}
	h.Del("Content-Length")
	h.Del("ETag")
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if k.err == ErrUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="watchgate"`)
	}
	var ra interface{ retryAfter() time.Duration }
	if errors.As(err, &ra) {
		// Whole seconds, rounded up: a client that waits that long is let in.
		if d := ra.retryAfter(); d > 0 {
			h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
		}
	}
	w.WriteHeader(k.status)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// WriteError answers err as an application/problem+json document through
// the server's error table, as every error of the API is answered. The
// watch transports use it for the errors they answer before streaming.
func (s *Server) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	s.writeError(w, r, err)
}

// ProblemJSON renders err as the problem document the error table gives
// it, without a request id: the body of an error event that ends a watch
// stream already started. Internal errors show only "internal error".
func (s *Server) ProblemJSON(err error) []byte {
	return s.appendProblem(nil, err, "")
}

// appendProblem appends err's problem document: type, title, status,
// detail, the revisions for errors about revisions, the error's own
// members, and requestID when not empty.
func (s *Server) appendProblem(b []byte, err error, requestID string) []byte {
	k := kindOf(err)
	detail := err.Error()
	var d interface{ detail() string }
	if errors.As(err, &d) {
		detail = d.detail()
	}
	if k.err == ErrInternal {
		detail = "internal error"
	}
	b = append(b, `{"type":`...)
	b = kvjson.AppendString(b, []byte(ProblemTypePrefix+k.slug))
	b = append(b, `,"title":`...)
	b = kvjson.AppendString(b, []byte(k.title))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(k.status), 10)
	b = append(b, `,"detail":`...)
	b = appendJSONString(b, detail)
	if k.revisions {
		rev, compact := s.revisionsFor(err)
		b = append(b, `,"revision":`...)
		b = strconv.AppendInt(b, rev, 10)
		b = append(b, `,"compact_revision":`...)
		b = strconv.AppendInt(b, compact, 10)
	}
	var m interface{ appendMembers([]byte) []byte }
	if errors.As(err, &m) {
		b = m.appendMembers(b)
	}
	if requestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendJSONString(b, requestID)
	}
	return append(b, '}')
}
