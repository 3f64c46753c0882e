package sse

import (
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/watchgate/watchgate/kv"
)

// Request is a parsed watch request: what GET /v1/watch/{key} asks for.
type Request struct {
	// Key and End select the keys with the store's conventions
	// (kv.RangeRequest): End nil is the single key Key, otherwise
	// [Key, End), End {0} meaning every key from Key on.
	Key, End []byte
	// Format is the wire form: format=ndjson or Accept:
	// application/x-ndjson ask for NDJSON, anything else is SSE.
	Format Format
	// PrevKV puts each key's previous version inside its events' kv.
	PrevKV bool
	// NoPut and NoDelete filter event types (events=delete, events=put).
	NoPut, NoDelete bool
	// Snapshot asks for reset, the range's keys, synced, then live events.
	Snapshot bool
	// Progress is the idle time before a progress bookmark; 0 disables
	// bookmarks.
	Progress time.Duration
	// Resume is where the client resumes (Last-Event-ID header, else the
	// last_event_id parameter); zero when it gave none.
	Resume Position
	// Rev is the rev= start revision, used when Resume is zero; 0 means
	// the next revision.
	Rev int64
	// OnEnd, when set, is called once when Serve is done with the
	// request: when it returns, or, for a stream detached from its
	// handler (served by package h2srv), when the stream ends, which is
	// after Serve has returned. A caller that bounds open streams
	// releases its count there rather than after Serve. detachedBytes is
	// what the stream wrote without the ResponseWriter: the body bytes
	// after it was detached (0 when it was not), for a caller that counts
	// the bytes written through the ResponseWriter. It is not set by
	// ParseRequest.
	OnEnd func(detachedBytes int64)
}

// Start is the first revision and sub-revision the stream sends, in the
// order API.md gives: the resume id, else rev=, else (0, 0) for the next
// revision.
func (r *Request) Start() (rev int64, sub int32) {
	if r.Resume != (Position{}) {
		return r.Resume.Start()
	}
	return r.Rev, 0
}

// ParseRequest parses a watch request whose key the router has already
// taken from the path (percent-decoded). Errors wrap ErrBadRequest, or
// kv.ErrKeyTooLarge for a key or range_end over MaxKeySize, and say which
// parameter is wrong.
func (h *Handler) ParseRequest(r *http.Request, key []byte) (Request, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return Request{}, badRequest("malformed query string: %v", err)
	}
	req := Request{Key: key, Progress: h.opts.Progress}
	if err := h.parseRange(q, &req); err != nil {
		return Request{}, err
	}
	if req.PrevKV, err = queryBool(q, "prev_kv"); err != nil {
		return Request{}, err
	}
	if req.Snapshot, err = queryBool(q, "snapshot"); err != nil {
		return Request{}, err
	}
	if err := parseEvents(q, &req); err != nil {
		return Request{}, err
	}
	if q.Has("progress") {
		if req.Progress, err = h.parseProgress(q.Get("progress")); err != nil {
			return Request{}, err
		}
	}
	if req.Format, err = parseFormat(q, r.Header); err != nil {
		return Request{}, err
	}

	// Where the stream starts: Last-Event-ID > last_event_id > rev > now.
	switch id, from := r.Header.Get("Last-Event-ID"), "Last-Event-ID"; {
	case id != "":
		req.Resume, err = parseResume(id, from)
	case q.Get("last_event_id") != "":
		req.Resume, err = parseResume(q.Get("last_event_id"), "last_event_id")
	}
	if err != nil {
		return Request{}, err
	}
	if v := q.Get("rev"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return Request{}, badRequest("parameter rev must be a revision (an integer >= 0), not %q", v)
		}
		req.Rev = n
	}
	return req, nil
}

// parseRange combines the key with prefix= and range_end= as the REST API
// does: prefix=true selects every key starting with the key (every key
// when it is empty), range_end=END selects [key, END) ("\x00" meaning every
// key from key on). The empty key is allowed only for a range.
func (h *Handler) parseRange(q url.Values, req *Request) error {
	if len(req.Key) > h.opts.MaxKeySize {
		return fmt.Errorf("%w: key is %d bytes, over the limit of %d", kv.ErrKeyTooLarge, len(req.Key), h.opts.MaxKeySize)
	}
	prefix, err := queryBool(q, "prefix")
	if err != nil {
		return err
	}
	end := q.Get("range_end")
	switch {
	case prefix && end != "":
		return badRequest("give prefix=true or range_end, not both")
	case prefix:
		req.End = kv.PrefixEnd(req.Key)
	case end != "":
		if len(end) > h.opts.MaxKeySize {
			return fmt.Errorf("%w: range_end is %d bytes, over the limit of %d", kv.ErrKeyTooLarge, len(end), h.opts.MaxKeySize)
		}
		if end != "\x00" && end <= string(req.Key) {
			return badRequest("range_end %q is not after the key %q: the range is empty", end, req.Key)
		}
		req.End = []byte(end)
	case len(req.Key) == 0:
		return badRequest("the empty key can be watched only as a range: add prefix=true (every key) or range_end")
	}
	return nil
}

// queryBool reads a boolean parameter as the REST API does: absent is
// false, present without a value ("?prev_kv") is true, otherwise
// strconv.ParseBool's spellings.
func queryBool(q url.Values, name string) (bool, error) {
	if !q.Has(name) {
		return false, nil
	}
	v := q.Get(name)
	if v == "" {
		return true, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, badRequest("parameter %s must be true or false, not %q", name, v)
	}
	return b, nil
}

// parseEvents reads events=put, events=delete or both (comma-separated or
// repeated); absent means both.
func parseEvents(q url.Values, req *Request) error {
	vals, ok := q["events"]
	if !ok {
		return nil
	}
	var put, del bool
	for _, v := range vals {
		for _, t := range strings.Split(v, ",") {
			switch strings.TrimSpace(t) {
			case "put":
				put = true
			case "delete":
				del = true
			default:
				return badRequest("parameter events must be put, delete or put,delete, not %q", v)
			}
		}
	}
	req.NoPut, req.NoDelete = !put, !del
	return nil
}

// parseProgress reads progress=: a Go duration ("15s", "1m") or a number
// of seconds; 0 disables bookmarks.
func (h *Handler) parseProgress(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseInt(v, 10, 64)
		if nerr != nil || n > math.MaxInt64/int64(time.Second) {
			return 0, badRequest("parameter progress must be a duration such as 15s, or 0 to disable bookmarks, not %q", v)
		}
		d = time.Duration(n) * time.Second
	}
	switch {
	case d < 0:
		return 0, badRequest("parameter progress must not be negative, got %q", v)
	case d > 0 && d < h.opts.MinProgress:
		return 0, badRequest("parameter progress must be 0 or at least %v, got %q", h.opts.MinProgress, v)
	}
	return d, nil
}

// parseFormat picks the wire form: format= wins, then the Accept header.
func parseFormat(q url.Values, hdr http.Header) (Format, error) {
	switch v := q.Get("format"); v {
	case "":
	case "sse":
		return FormatSSE, nil
	case "ndjson":
		return FormatNDJSON, nil
	default:
		return 0, badRequest("parameter format must be sse or ndjson, not %q", v)
	}
	for _, accept := range hdr.Values("Accept") {
		for _, part := range strings.Split(accept, ",") {
			if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == "application/x-ndjson" {
				return FormatNDJSON, nil
			}
		}
	}
	return FormatSSE, nil
}

func parseResume(id, from string) (Position, error) {
	p, err := ParsePosition(id)
	if err != nil {
		return Position{}, fmt.Errorf("%w: %s: %w", ErrBadRequest, from, err)
	}
	return p, nil
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
}

// keyFromPath returns the key an escaped request path carries after
// prefix: the whole rest of the path, percent-decoded, so %2F, %00 and any
// byte can be part of a key and a literal '/' stays in it.
func keyFromPath(escapedPath, prefix string) ([]byte, error) {
	rest, ok := strings.CutPrefix(escapedPath, prefix)
	if !ok {
		return nil, badRequest("path %q is not under %s", escapedPath, prefix)
	}
	key, err := url.PathUnescape(rest)
	if err != nil {
		return nil, badRequest("key is not a valid percent-encoded path: %v", err)
	}
	return []byte(key), nil
}
