package ws

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/watchgate/watchgate/kv"
)

// Op is what a client message asks for.
type Op uint8

const (
	// OpWatch starts a watch named by the message's id.
	OpWatch Op = iota + 1
	// OpCancel ends the watch named by the message's id.
	OpCancel
	// OpProgress asks for a progress message.
	OpProgress
	// OpPing asks for a pong.
	OpPing
)

var opNames = [...]string{OpWatch: "watch", OpCancel: "cancel", OpProgress: "progress", OpPing: "ping"}

// String returns the op as the protocol spells it.
func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// MaxIDSize is the longest watch id, in bytes, a client may use. Ids are
// echoed in every message of their watch and held for its lifetime, so
// they are kept short.
const MaxIDSize = 256

// DefaultMaxKeySize is the key size limit when ParseOptions.MaxKeySize is
// zero: 4 KiB, as the REST API.
const DefaultMaxKeySize = 4096

// Request is one parsed client message.
type Request struct {
	Op Op
	// ID names the watch; set for OpWatch and OpCancel. ParseRequest fills
	// it even when it reports an error, whenever the message had a valid id,
	// so that the error can name the watch.
	ID string
	// Watch holds the options of an OpWatch.
	Watch WatchRequest
}

// WatchRequest is what a watch message asks for, normalised to the
// [Key, End) form the hub matches with.
type WatchRequest struct {
	// Key and End select keys as in kv.RangeRequest: End nil is the single
	// key Key; otherwise [Key, End), where End = []byte{0} means every key
	// from Key on. A prefix is turned into its range with kv.PrefixEnd, so
	// the empty prefix is Key empty, End = []byte{0}.
	Key []byte
	End []byte
	// Rev is the first revision to send; 0 means the next one.
	Rev int64
	// PrevKV asks for each event's previous kv.
	PrevKV bool
	// NoPut and NoDelete filter event types out.
	NoPut    bool
	NoDelete bool
	// Snapshot asks for reset, the range's kvs, synced, then live events.
	Snapshot bool
}

// ParseOptions bounds what ParseRequest accepts. The zero value is the
// default.
type ParseOptions struct {
	// MaxKeySize is the longest key and range_end in bytes; 0 means
	// DefaultMaxKeySize.
	MaxKeySize int
}

// field indexes the members a client message may have.
type field uint8

const (
	fOp field = iota
	fID
	fKey
	fKeyB64
	fPrefix
	fRangeEnd
	fRangeEndB64
	fRev
	fPrevKV
	fEvents
	fSnapshot
	nFields
)

var fieldNames = [nFields]string{
	fOp: "op", fID: "id", fKey: "key", fKeyB64: "key_b64", fPrefix: "prefix",
	fRangeEnd: "range_end", fRangeEndB64: "range_end_b64", fRev: "rev",
	fPrevKV: "prev_kv", fEvents: "events", fSnapshot: "snapshot",
}

// opFields says which members each op takes, as a bit set over field.
var opFields = [...]uint32{
	OpWatch:    1<<fOp | 1<<fID | 1<<fKey | 1<<fKeyB64 | 1<<fPrefix | 1<<fRangeEnd | 1<<fRangeEndB64 | 1<<fRev | 1<<fPrevKV | 1<<fEvents | 1<<fSnapshot,
	OpCancel:   1<<fOp | 1<<fID,
	OpProgress: 1 << fOp,
	OpPing:     1 << fOp,
}

func lookupField(name []byte) (field, bool) {
	for f, n := range fieldNames {
		if n == string(name) {
			return field(f), true
		}
	}
	return 0, false
}

// ParseRequest parses one client message. It is strict, so that a typo is
// reported rather than silently changing what is watched: the message must
// be one UTF-8 JSON object, every member must be one the op takes (an
// unknown member is ErrUnknownField, unlike etcd, which ignores them; the
// subprotocol name versions the message set), a member may appear once,
// and a member whose value is null counts as absent.
//
// A non-nil error is always a *Problem with a 4xx status. The returned
// Request then still carries the op and id when they could be read, so
// that the error can name the watch.
func ParseRequest(data []byte, opts ParseOptions) (Request, error) {
	var req Request
	if !utf8.Valid(data) {
		return req, newProblem(ErrBadMessage, "message is not valid UTF-8")
	}
	raw, unknown, err := splitObject(data)
	if err != nil {
		return req, err
	}
	// The id first, so that every later error can carry it.
	var id string
	if decodeField(raw, fID, &id) == nil && id != "" && len(id) <= MaxIDSize {
		req.ID = id
	}
	var op string
	if err := decodeField(raw, fOp, &op); err != nil {
		return req, err
	}
	switch op {
	case "watch":
		req.Op = OpWatch
	case "cancel":
		req.Op = OpCancel
	case "progress":
		req.Op = OpProgress
	case "ping":
		req.Op = OpPing
	case "":
		return req, newProblem(ErrUnknownOp, `message has no "op"; use one of watch, cancel, progress, ping`)
	default:
		return req, newProblem(ErrUnknownOp, "unknown op %q; use one of watch, cancel, progress, ping", op)
	}
	if unknown != "" {
		return req, newProblem(ErrUnknownField, "op %s does not take member %q", req.Op, unknown)
	}
	for f := range nFields {
		if raw[f] != nil && opFields[req.Op]&(1<<f) == 0 {
			return req, newProblem(ErrUnknownField, "op %s does not take member %q", req.Op, fieldNames[f])
		}
	}
	if req.Op == OpProgress || req.Op == OpPing {
		return req, nil
	}
	if err := parseID(raw); err != nil {
		return req, err
	}
	if req.Op == OpCancel {
		return req, nil
	}
	w, err := parseWatch(raw, opts)
	req.Watch = w
	return req, err
}

// splitObject splits a JSON object into its members' raw values, indexed
// by field; null values are left out. unknown is the first member name
// that is no field. The message is validated first, so the scan below only
// has to find where each member ends.
func splitObject(data []byte) (raw [nFields]json.RawMessage, unknown string, err error) {
	if !json.Valid(data) {
		// Only for the error message, which says what and where.
		return raw, "", badJSON(json.Unmarshal(data, new(json.RawMessage)))
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return raw, "", newProblem(ErrBadMessage, "message must be a JSON object")
	}
	var seen [nFields]bool
	for i = skipSpace(data, i+1); data[i] != '}'; {
		end := stringEnd(data, i)
		name := data[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			s, err := unquote(data[i:end])
			if err != nil {
				return raw, "", badJSON(err)
			}
			name = []byte(s)
		}
		i = skipSpace(data, skipSpace(data, end)+1) // past the colon
		end = valueEnd(data, i)
		v := data[i:end]
		if i = skipSpace(data, end); data[i] == ',' {
			i = skipSpace(data, i+1)
		}
		f, ok := lookupField(name)
		if !ok {
			if unknown == "" {
				unknown = string(name)
			}
			continue
		}
		if seen[f] {
			return raw, "", newProblem(ErrBadMessage, "member %q appears more than once", name)
		}
		seen[f] = true
		if string(v) != "null" {
			raw[f] = v
		}
	}
	return raw, unknown, nil
}

// The scanning helpers below run on valid JSON only, from the start of a
// token; each returns the index just past what it scans.

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd scans the string starting at data[i] == '"'.
func stringEnd(data []byte, i int) int {
	for i++; data[i] != '"'; i++ {
		if data[i] == '\\' {
			i++
		}
	}
	return i + 1
}

// valueEnd scans the value starting at data[i].
func valueEnd(data []byte, i int) int {
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for {
			switch data[i] {
			case '"':
				i = stringEnd(data, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	for i < len(data) && !strings.ContainsRune(",}] \t\n\r", rune(data[i])) {
		i++
	}
	return i
}

// unquote decodes a JSON string; one without escapes is just copied.
func unquote(v []byte) (string, error) {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), nil
	}
	var s string
	err := json.Unmarshal(v, &s)
	return s, err
}

// parseInt parses a JSON number that must be an integer: ok is false for
// any other number, inRange false for one that does not fit an int64.
func parseInt(r []byte) (n int64, ok, inRange bool) {
	neg := r[0] == '-'
	digits := r
	if neg {
		digits = r[1:]
	}
	var u uint64
	inRange = true
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		if u > (1<<63)/10 || u*10+uint64(c-'0') > 1<<63 {
			inRange = false
		}
		u = u*10 + uint64(c-'0')
	}
	if !inRange || !neg && u == 1<<63 {
		return 0, true, false
	}
	if neg {
		return -int64(u), true, true
	}
	return int64(u), true, true
}

// parseStrings parses a JSON array of strings.
func parseStrings(r []byte) ([]string, bool) {
	if r[0] != '[' {
		return nil, false
	}
	out := []string{}
	for i := skipSpace(r, 1); r[i] != ']'; {
		if r[i] != '"' {
			return nil, false
		}
		end := stringEnd(r, i)
		s, err := unquote(r[i:end])
		if err != nil {
			return nil, false
		}
		out = append(out, s)
		if i = skipSpace(r, end); r[i] == ',' {
			i = skipSpace(r, i+1)
		}
	}
	return out, true
}

func badJSON(err error) *Problem {
	var syn *json.SyntaxError
	if errors.As(err, &syn) && syn.Offset >= 0 && strings.HasPrefix(syn.Error(), "unexpected end of JSON input") {
		return newProblem(ErrBadMessage, "message is not a complete JSON object")
	}
	return newProblem(ErrBadMessage, "message is not valid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonTypeName names the Go types decodeField decodes into, as a client
// would say them.
func jsonTypeName(v any) string {
	switch v.(type) {
	case *string:
		return "a string"
	case *bool:
		return "a boolean"
	case *int64:
		return "an integer"
	case *[]string:
		return "an array of strings"
	}
	return fmt.Sprintf("%T", v)
}

// decodeField decodes member f, when present, into v: a *string, *bool,
// *int64 or *[]string.
func decodeField(raw [nFields]json.RawMessage, f field, v any) error {
	r := raw[f]
	if r == nil {
		return nil
	}
	ok := true
	switch v := v.(type) {
	case *string:
		if ok = r[0] == '"'; ok {
			var err error
			*v, err = unquote(r)
			ok = err == nil
		}
	case *bool:
		switch string(r) {
		case "true":
			*v = true
		case "false":
			*v = false
		default:
			ok = false
		}
	case *int64:
		var inRange bool
		*v, ok, inRange = parseInt(r)
		if ok && !inRange {
			return newProblem(ErrBadMessage, "member %q is out of range", fieldNames[f])
		}
	case *[]string:
		*v, ok = parseStrings(r)
	default:
		panic(fmt.Sprintf("ws: decodeField into %T", v))
	}
	if !ok {
		return newProblem(ErrBadMessage, "member %q must be %s", fieldNames[f], jsonTypeName(v))
	}
	return nil
}

func parseID(raw [nFields]json.RawMessage) error {
	if raw[fID] == nil {
		return newProblem(ErrBadID, `message has no "id"; watch and cancel name their watch with a string id`)
	}
	var id string
	if decodeField(raw, fID, &id) != nil {
		return newProblem(ErrBadID, `"id" must be a string`)
	}
	switch {
	case id == "":
		return newProblem(ErrBadID, `"id" must not be empty`)
	case len(id) > MaxIDSize:
		return newProblem(ErrBadID, `"id" is %d bytes long; the limit is %d`, len(id), MaxIDSize)
	}
	return nil
}

// parseWatch validates and normalises the members of a watch message.
func parseWatch(raw [nFields]json.RawMessage, opts ParseOptions) (WatchRequest, error) {
	var w WatchRequest
	maxKey := opts.MaxKeySize
	if maxKey <= 0 {
		maxKey = DefaultMaxKeySize
	}
	key, err := bytesField(raw, fKey, fKeyB64, maxKey)
	if err != nil {
		return w, err
	}
	end, err := bytesField(raw, fRangeEnd, fRangeEndB64, maxKey)
	if err != nil {
		return w, err
	}
	var prefix bool
	if err := decodeField(raw, fPrefix, &prefix); err != nil {
		return w, err
	}
	if err := decodeField(raw, fRev, &w.Rev); err != nil {
		return w, err
	}
	if w.Rev < 0 {
		return w, newProblem(ErrBadRevision, `"rev" is %d; it must be 0 (from the next revision) or a revision to start from`, w.Rev)
	}
	if err := decodeField(raw, fPrevKV, &w.PrevKV); err != nil {
		return w, err
	}
	if err := decodeField(raw, fSnapshot, &w.Snapshot); err != nil {
		return w, err
	}
	var events []string
	if err := decodeField(raw, fEvents, &events); err != nil {
		return w, err
	}
	if raw[fEvents] != nil {
		if len(events) == 0 {
			return w, newProblem(ErrBadEvents, `"events" must name at least one of put, delete (or be left out for both)`)
		}
		w.NoPut, w.NoDelete = true, true
		for _, e := range events {
			switch e {
			case "put":
				w.NoPut = false
			case "delete":
				w.NoDelete = false
			default:
				return w, newProblem(ErrBadEvents, `unknown event type %q in "events"; use put, delete`, e)
			}
		}
	}
	hasEnd := raw[fRangeEnd] != nil || raw[fRangeEndB64] != nil
	switch {
	case prefix && hasEnd:
		return w, newProblem(ErrBadKey, `"prefix" and "range_end" cannot be used together`)
	case prefix:
		end = kv.PrefixEnd(key)
	case hasEnd:
		if !(len(end) == 1 && end[0] == 0) && bytes.Compare(end, key) <= 0 {
			return w, newProblem(ErrBadKey, `"range_end" must be above the key ("\u0000" selects every key from the key on)`)
		}
	case len(key) == 0:
		return w, newProblem(ErrBadKey, `the empty key is allowed only with "prefix" (every key) or "range_end"`)
	}
	w.Key, w.End = key, end
	return w, nil
}

// bytesField decodes a text/base64 member pair, at most one present, into
// at most max bytes.
func bytesField(raw [nFields]json.RawMessage, text, b64 field, max int) ([]byte, error) {
	var s, s64 string
	if err := decodeField(raw, text, &s); err != nil {
		return nil, err
	}
	if err := decodeField(raw, b64, &s64); err != nil {
		return nil, err
	}
	var b []byte
	name := fieldNames[text]
	switch {
	case raw[text] == nil && raw[b64] == nil:
		return nil, nil
	case raw[text] != nil && raw[b64] != nil:
		return nil, newProblem(ErrBadKey, "%q and %q cannot be used together", fieldNames[text], fieldNames[b64])
	case raw[b64] != nil:
		name = fieldNames[b64]
		if base64.StdEncoding.DecodedLen(len(s64)) > max+3 {
			return nil, newProblem(ErrKeyTooLarge, "%q is longer than the %d byte limit", fieldNames[b64], max)
		}
		var err error
		if b, err = base64.StdEncoding.DecodeString(s64); err != nil {
			return nil, newProblem(ErrBadKey, "%q is not standard base64: %v", fieldNames[b64], err)
		}
	default:
		b = []byte(s)
	}
	if len(b) > max {
		return nil, newProblem(ErrKeyTooLarge, "%q is %d bytes long; the limit is %d", name, len(b), max)
	}
	if len(b) == 0 {
		return nil, nil
	}
	return b, nil
}
