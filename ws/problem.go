package ws

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/watchgate/watchgate/kvjson"
)

// Sentinel errors. Every error the protocol reports to a client is a
// *Problem that wraps one of them, so callers compare with errors.Is.
var (
	// ErrBadMessage is a message that is not a UTF-8 JSON text object, or
	// has a member of the wrong JSON type, a duplicate member or trailing
	// data.
	ErrBadMessage = errors.New("ws: malformed message")
	// ErrUnknownOp is a message whose op is missing or not one of watch,
	// cancel, progress, ping.
	ErrUnknownOp = errors.New("ws: unknown op")
	// ErrUnknownField is a member the op does not take.
	ErrUnknownField = errors.New("ws: unknown field")
	// ErrBadID is a watch or cancel without a usable id.
	ErrBadID = errors.New("ws: invalid watch id")
	// ErrBadKey is an invalid key or range: the empty key without prefix or
	// range_end, prefix with range_end, a range_end not above the key, or
	// bad base64.
	ErrBadKey = errors.New("ws: invalid key or range")
	// ErrKeyTooLarge is a key or range_end over the size limit.
	ErrKeyTooLarge = errors.New("ws: key is too large")
	// ErrBadEvents is an events filter that is empty or names an unknown
	// event type.
	ErrBadEvents = errors.New("ws: invalid events filter")
	// ErrBadRevision is a negative start revision.
	ErrBadRevision = errors.New("ws: invalid revision")
	// ErrDuplicateID is a watch whose id names a watch still active on the
	// socket.
	ErrDuplicateID = errors.New("ws: watch id is already in use")
	// ErrUnknownID is a cancel for an id that names no active watch.
	ErrUnknownID = errors.New("ws: no active watch with this id")
	// ErrTooManyWatches is a watch over the socket's watch limit.
	ErrTooManyWatches = errors.New("ws: too many watches on this socket")
	// ErrForbidden is a watch outside what the client may read
	// (Options.Authorize).
	ErrForbidden = errors.New("ws: watch not allowed")
	// ErrWatchFailed ends a watch the server could not serve (a store
	// failure); the client watches again from its last revision + 1.
	ErrWatchFailed = errors.New("ws: watch failed")

	// ErrNotWebSocket refuses a request to the endpoint that is not a
	// WebSocket handshake.
	ErrNotWebSocket = errors.New("ws: not a WebSocket handshake")
	// ErrSubprotocol refuses a handshake that does not offer watchgate.v1.
	ErrSubprotocol = errors.New("ws: subprotocol watchgate.v1 not offered")
	// ErrOrigin refuses a handshake from an Origin that is not allowed.
	ErrOrigin = errors.New("ws: origin not allowed")
	// ErrShuttingDown refuses a handshake once Shutdown has been called.
	ErrShuttingDown = errors.New("ws: server is shutting down")
)

// ProblemTypePrefix starts the "type" URI of every problem; the rest is
// the kind's slug (urn:watchgate:problem:unknown-op), as in the REST API.
const ProblemTypePrefix = "urn:watchgate:problem:"

// problemKinds gives each sentinel its problem slug, title and status.
var problemKinds = map[error]struct {
	slug   string
	title  string
	status int
}{
	ErrBadMessage:     {"malformed-message", "Malformed message", http.StatusBadRequest},
	ErrUnknownOp:      {"unknown-op", "Unknown op", http.StatusBadRequest},
	ErrUnknownField:   {"unknown-field", "Unknown field", http.StatusBadRequest},
	ErrBadID:          {"invalid-watch-id", "Invalid watch id", http.StatusBadRequest},
	ErrBadKey:         {"invalid-range", "Invalid key or range", http.StatusBadRequest},
	ErrKeyTooLarge:    {"key-too-large", "Key too large", http.StatusRequestEntityTooLarge},
	ErrBadEvents:      {"invalid-events", "Invalid events filter", http.StatusBadRequest},
	ErrBadRevision:    {"invalid-revision", "Invalid revision", http.StatusBadRequest},
	ErrDuplicateID:    {"duplicate-watch-id", "Duplicate watch id", http.StatusConflict},
	ErrUnknownID:      {"unknown-watch-id", "Unknown watch id", http.StatusNotFound},
	ErrTooManyWatches: {"too-many-watches", "Too many watches", http.StatusTooManyRequests},
	ErrForbidden:      {"forbidden", "Forbidden", http.StatusForbidden},
	ErrWatchFailed:    {"watch-failed", "Watch failed", http.StatusServiceUnavailable},
	ErrNotWebSocket:   {"not-websocket", "WebSocket handshake required", http.StatusUpgradeRequired},
	ErrSubprotocol:    {"subprotocol", "Subprotocol required", http.StatusBadRequest},
	ErrOrigin:         {"forbidden-origin", "Origin not allowed", http.StatusForbidden},
	ErrShuttingDown:   {"shutting-down", "Shutting down", http.StatusServiceUnavailable},
}

// Problem is an RFC 9457 problem as the protocol's error message carries it,
// and as a refused handshake's application/problem+json body:
// {"type":...,"title":...,"status":...,"detail":...}. It is an error that unwraps to
// its sentinel (Err).
type Problem struct {
	// Err is the sentinel the problem is an instance of; nil in a Problem
	// decoded from JSON.
	Err error `json:"-"`
	// Type is ProblemTypePrefix and the kind's slug.
	Type string `json:"type"`
	// Title is a short summary of the problem kind, the same for every
	// instance of Err.
	Title string `json:"title"`
	// Status is the HTTP status code the problem would have as a response.
	Status int `json:"status"`
	// Detail says what exactly was wrong with this message.
	Detail string `json:"detail"`
}

// newProblem returns the problem for sentinel err with the given detail.
// A sentinel missing from problemKinds is a broken invariant.
func newProblem(err error, format string, args ...any) *Problem {
	k, ok := problemKinds[err]
	if !ok {
		panic(fmt.Sprintf("ws: no problem kind for %v", err))
	}
	return &Problem{Err: err, Type: ProblemTypePrefix + k.slug, Title: k.title, Status: k.status, Detail: fmt.Sprintf(format, args...)}
}

// Error returns the sentinel's message and the detail.
func (p *Problem) Error() string {
	if p.Err == nil {
		return "ws: " + p.Title + ": " + p.Detail
	}
	return p.Err.Error() + ": " + p.Detail
}

// Unwrap returns the sentinel.
func (p *Problem) Unwrap() error { return p.Err }

// appendJSON appends the problem as a JSON object.
func (p *Problem) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"type":`...)
	dst = appendJSONString(dst, p.Type)
	dst = append(dst, `,"title":`...)
	dst = appendJSONString(dst, p.Title)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(p.Status), 10)
	dst = append(dst, `,"detail":`...)
	dst = appendJSONString(dst, p.Detail)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 in s (which
// can only come from an error text) is replaced by U+FFFD so that the
// output is always valid JSON text. Plain ASCII, the usual watch id, is
// copied without a conversion.
func appendJSONString(dst []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return kvjson.AppendString(dst, []byte(s))
}
