package reliability

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// opKind is what a recorded key-value request does.
type opKind uint8

const (
	opPut opKind = iota + 1
	opDelete
	opDeleteRange // DELETE ?prefix=true
	opTxn
	opGet
	opRange   // GET ?prefix=true at the current revision
	opRangeAt // GET ?prefix=true&rev=R (checked against the history, not porcupine)
)

var opNames = [...]string{opPut: "put", opDelete: "delete", opDeleteRange: "delete-prefix", opTxn: "txn",
	opGet: "get", opRange: "range", opRangeAt: "range-at"}

func (k opKind) String() string { return opNames[k] }

// condKind is the precondition of a PUT or DELETE.
type condKind uint8

const (
	condNone     condKind = iota
	condIfMatch           // If-Match: "<mod>"
	condIfExists          // If-Match: *
	condIfAbsent          // If-None-Match: *
)

// kvRec is a key-value as a response shows it. Value is "" and HasValue
// false when the response carries none (a put's answer).
type kvRec struct {
	Key            string
	Value          string
	HasValue       bool
	CreateRevision int64
	ModRevision    int64
	Version        int64
}

func (k kvRec) String() string {
	if k.HasValue {
		return fmt.Sprintf("%q=%q(c%d m%d v%d)", k.Key, trimValue(k.Value), k.CreateRevision, k.ModRevision, k.Version)
	}
	return fmt.Sprintf("%q(c%d m%d v%d)", k.Key, k.CreateRevision, k.ModRevision, k.Version)
}

// shrink replaces a long value by its start and a digest of the whole,
// everywhere the suite keeps values (requests, answers, the history,
// watch events), so that long runs keep little memory while equal values
// stay equal and different ones different.
func shrink(v string) string {
	if len(v) <= 64 {
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return v[:24] + "#" + hex.EncodeToString(sum[:16])
}

// shrinkInput shrinks the values a request wrote, once it was sent.
func shrinkInput(in *opInput) {
	in.Value = shrink(in.Value)
	if len(in.Success) > 0 {
		ops := slices.Clone(in.Success)
		for i := range ops {
			ops[i].Value = shrink(ops[i].Value)
		}
		in.Success = ops
	}
}

// trimValue shortens the padded values in messages.
func trimValue(v string) string {
	if i := strings.IndexByte(v, '|'); i >= 0 {
		return v[:i] + "|…"
	}
	return v
}

// txnCmp is one compare of a transaction: mod or version of Key = Num.
type txnCmp struct {
	Key    string
	Target string // "mod" or "version"
	Num    int64
}

// txnOp is one operation of a transaction branch.
type txnOp struct {
	Type   kv.OpType
	Key    string
	Value  string
	Prefix bool // delete only
}

// opInput is a request as issued.
type opInput struct {
	Kind  opKind
	Key   string // the key, or the prefix of a range
	Value string
	Cond  condKind
	Match int64 // If-Match revision
	Rev   int64 // opRangeAt
	// Txn
	Cmps             []txnCmp
	Success, Failure []txnOp
}

// opOutput is what the server answered.
type opOutput struct {
	// Unknown: the connection failed after the request may have been sent,
	// or the server answered 5xx; the outcome is unknown.
	Unknown bool
	Status  int
	Rev     int64
	// KV: get's kv, put's new kv (no value), a 412's current kv; nil when
	// absent.
	KV        *kvRec
	KVs       []kvRec // range
	Deleted   int64
	Succeeded bool
	Gets      [][]kvRec // a transaction's get results, in order
	Compact   int64     // X-Compact-Revision, when given
}

// op is one recorded request.
type op struct {
	Client int
	Epoch  int
	Call   int64 // ns since the run started
	Return int64 // ns; -1 when the outcome is unknown
	In     opInput
	Out    opOutput
}

func (o *op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "c%d e%d [%.3fs, ", o.Client, o.Epoch, float64(o.Call)/1e9)
	if o.Return < 0 {
		b.WriteString("?] ")
	} else {
		fmt.Fprintf(&b, "%.3fs] ", float64(o.Return)/1e9)
	}
	b.WriteString(describeInput(&o.In))
	b.WriteString(" -> ")
	b.WriteString(describeOutput(&o.Out))
	return b.String()
}

func describeInput(in *opInput) string {
	switch in.Kind {
	case opPut, opDelete:
		s := fmt.Sprintf("%s %q", in.Kind, in.Key)
		if in.Kind == opPut {
			s += fmt.Sprintf("=%q", trimValue(in.Value))
		}
		switch in.Cond {
		case condIfMatch:
			s += fmt.Sprintf(" if-match %d", in.Match)
		case condIfExists:
			s += " if-match *"
		case condIfAbsent:
			s += " if-none-match *"
		}
		return s
	case opTxn:
		var parts []string
		for _, c := range in.Cmps {
			parts = append(parts, fmt.Sprintf("%s(%q)=%d", c.Target, c.Key, c.Num))
		}
		s := "txn if " + strings.Join(parts, " && ") + " then"
		for _, o := range in.Success {
			s += " " + describeTxnOp(o)
		}
		s += " else"
		for _, o := range in.Failure {
			s += " " + describeTxnOp(o)
		}
		return s
	case opRangeAt:
		return fmt.Sprintf("range %q at %d", in.Key, in.Rev)
	}
	return fmt.Sprintf("%s %q", in.Kind, in.Key)
}

func describeTxnOp(o txnOp) string {
	switch o.Type {
	case kv.OpPut:
		return fmt.Sprintf("put(%q=%q)", o.Key, trimValue(o.Value))
	case kv.OpDelete:
		if o.Prefix {
			return fmt.Sprintf("delete(%q*)", o.Key)
		}
		return fmt.Sprintf("delete(%q)", o.Key)
	}
	return fmt.Sprintf("get(%q)", o.Key)
}

func describeOutput(out *opOutput) string {
	if out.Unknown {
		return fmt.Sprintf("unknown (status %d)", out.Status)
	}
	s := fmt.Sprintf("%d rev %d", out.Status, out.Rev)
	if out.KV != nil {
		s += " kv " + out.KV.String()
	}
	if out.KVs != nil {
		s += fmt.Sprintf(" kvs %v", out.KVs)
	}
	if out.Deleted > 0 {
		s += fmt.Sprintf(" deleted %d", out.Deleted)
	}
	if out.Succeeded {
		s += " succeeded"
	}
	if out.Gets != nil {
		s += fmt.Sprintf(" gets %v", out.Gets)
	}
	return s
}

// restClient issues the recorded requests to base().
type restClient struct {
	c    *http.Client
	base func() string // "http://host:port"
	// unavailableOK makes a 503 a legal answer of unknown outcome (a
	// gateway whose etcd cluster is without a leader for a moment).
	unavailableOK bool
}

// errNotSent marks a request that certainly never reached the server (the
// connection to it was refused).
var errNotSent = errors.New("request not sent")

// escapeKey percent-encodes every byte of a key that is not unreserved, so
// that any byte can travel in the path.
func escapeKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~', c == '/':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// do sends a request and reads the whole answer. A transport error is
// errNotSent when the connection was refused, and returned as is
// otherwise.
func (r *restClient) do(ctx context.Context, method, path string, hdr http.Header, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base()+path, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := r.c.Do(req)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return nil, nil, fmt.Errorf("%w: %v", errNotSent, err)
		}
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, nil, err
	}
	return resp, b, nil
}

// exec runs in and fills its output. It returns errNotSent (nothing
// happened), or nil with out.Unknown set when the outcome is unknown.
// Answers that break the API's contract are returned as errors of their
// own (errContract).
func (r *restClient) exec(ctx context.Context, in *opInput) (opOutput, error) {
	var (
		method, path string
		hdr          = http.Header{}
		body         []byte
	)
	switch in.Kind {
	case opPut:
		method, path, body = http.MethodPut, "/v1/kv/"+escapeKey(in.Key), []byte(in.Value)
		setCond(hdr, in)
	case opDelete:
		method, path = http.MethodDelete, "/v1/kv/"+escapeKey(in.Key)
		setCond(hdr, in)
	case opDeleteRange:
		method, path = http.MethodDelete, "/v1/kv/"+escapeKey(in.Key)+"?prefix=true"
	case opTxn:
		method, path, body = http.MethodPost, "/v1/txn", txnBody(in)
		hdr.Set("Content-Type", "application/json")
	case opGet:
		method, path = http.MethodGet, "/v1/kv/"+escapeKey(in.Key)+"?format=json"
	case opRange:
		method, path = http.MethodGet, "/v1/kv/"+escapeKey(in.Key)+"?prefix=true&limit=10000"
	case opRangeAt:
		method, path = http.MethodGet, "/v1/kv/"+escapeKey(in.Key)+"?prefix=true&limit=10000&rev="+strconv.FormatInt(in.Rev, 10)
	}
	resp, b, err := r.do(ctx, method, path, hdr, body)
	if err != nil {
		if errors.Is(err, errNotSent) {
			return opOutput{}, err
		}
		return opOutput{Unknown: true}, nil
	}
	out := opOutput{Status: resp.StatusCode}
	out.Rev, _ = strconv.ParseInt(resp.Header.Get("X-Revision"), 10, 64)
	out.Compact, _ = strconv.ParseInt(resp.Header.Get("X-Compact-Revision"), 10, 64)
	if resp.StatusCode == http.StatusServiceUnavailable && r.unavailableOK {
		out.Unknown = true
		return out, nil
	}
	if resp.StatusCode >= 500 {
		out.Unknown = true
		return out, fmt.Errorf("%w: %s %s: status %d: %s", errContract, method, path, resp.StatusCode, b)
	}
	if err := decodeOutput(in, resp.StatusCode, b, &out); err != nil {
		return out, fmt.Errorf("%w: %s %s: %v: %s", errContract, method, path, err, b)
	}
	return out, nil
}

// errContract marks an answer the API does not allow.
var errContract = errors.New("answer outside the API contract")

func setCond(h http.Header, in *opInput) {
	switch in.Cond {
	case condIfMatch:
		h.Set("If-Match", `"`+strconv.FormatInt(in.Match, 10)+`"`)
	case condIfExists:
		h.Set("If-Match", "*")
	case condIfAbsent:
		h.Set("If-None-Match", "*")
	}
}

// jsonBytesField writes "name":"s" or "name_b64":"..." as the API wants.
func jsonBytesField(m map[string]any, name, s string) {
	if utf8.ValidString(s) {
		m[name] = s
	} else {
		m[name+"_b64"] = base64.StdEncoding.EncodeToString([]byte(s))
	}
}

func txnBody(in *opInput) []byte {
	var cmps []map[string]any
	for _, c := range in.Cmps {
		m := map[string]any{"target": c.Target, "op": "=", "value": c.Num}
		jsonBytesField(m, "key", c.Key)
		cmps = append(cmps, m)
	}
	branch := func(ops []txnOp) []map[string]any {
		out := []map[string]any{}
		for _, o := range ops {
			m := map[string]any{}
			jsonBytesField(m, "key", o.Key)
			switch o.Type {
			case kv.OpPut:
				jsonBytesField(m, "value", o.Value)
				out = append(out, map[string]any{"put": m})
			case kv.OpDelete:
				if o.Prefix {
					m["prefix"] = true
				}
				out = append(out, map[string]any{"delete": m})
			default:
				out = append(out, map[string]any{"get": m})
			}
		}
		return out
	}
	b, _ := json.Marshal(map[string]any{"compare": cmps, "success": branch(in.Success), "failure": branch(in.Failure)})
	return b
}

// Response shapes.
type (
	kvAnswer struct {
		Revision  int64             `json:"revision"`
		KV        *kvjson.KeyValue  `json:"kv"`
		KVs       []kvjson.KeyValue `json:"kvs"`
		Count     *int64            `json:"count"`
		More      bool              `json:"more"`
		Deleted   *int64            `json:"deleted"`
		Succeeded *bool             `json:"succeeded"`
		Responses []struct {
			Put *struct {
				KV kvjson.KeyValue `json:"kv"`
			} `json:"put"`
			Delete *struct {
				Deleted int64 `json:"deleted"`
			} `json:"delete"`
			Get *struct {
				KVs []kvjson.KeyValue `json:"kvs"`
			} `json:"get"`
		} `json:"responses"`
	}
)

// toRec converts a decoded kv.
func toRec(k *kvjson.KeyValue) (kvRec, error) {
	key, err := k.KeyBytes()
	if err != nil {
		return kvRec{}, err
	}
	v, err := k.ValueBytes()
	if err != nil {
		return kvRec{}, err
	}
	return kvRec{Key: string(key), Value: shrink(string(v)), HasValue: k.Value != nil || k.ValueB64 != nil,
		CreateRevision: k.CreateRevision, ModRevision: k.ModRevision, Version: k.Version}, nil
}

func toRecs(ks []kvjson.KeyValue) ([]kvRec, error) {
	out := make([]kvRec, 0, len(ks))
	for i := range ks {
		r, err := toRec(&ks[i])
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// decodeOutput checks the status against the request and decodes the body.
func decodeOutput(in *opInput, status int, body []byte, out *opOutput) error {
	var a kvAnswer
	if len(body) > 0 {
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("body is not JSON: %v", err)
		}
	}
	// A success shows its revision in the body and in X-Revision; an
	// error's X-Revision is the revision of the state it reports (a 412's
	// kv, a 404's absence), while its problem's "revision" member is the
	// current revision when the answer was written, which may be later.
	if a.Revision > 0 && status < 300 {
		if out.Rev != 0 && out.Rev != a.Revision {
			return fmt.Errorf("X-Revision %d but revision %d in the body", out.Rev, a.Revision)
		}
		out.Rev = a.Revision
	}
	if a.KV != nil {
		r, err := toRec(a.KV)
		if err != nil {
			return err
		}
		out.KV = &r
	}
	allowed := map[opKind][]int{
		opPut:         {200, 201, 412},
		opDelete:      {200, 404, 412},
		opDeleteRange: {200},
		opTxn:         {200},
		opGet:         {200, 404},
		opRange:       {200},
		opRangeAt:     {200, 410},
	}[in.Kind]
	ok := false
	for _, s := range allowed {
		ok = ok || s == status
	}
	if !ok {
		return fmt.Errorf("status %d", status)
	}
	if out.Rev <= 0 && status != 410 {
		return errors.New("no revision in the answer")
	}
	switch in.Kind {
	case opPut:
		if status != 412 && out.KV == nil {
			return errors.New("put answer without kv")
		}
	case opDelete, opDeleteRange:
		if status == 200 {
			if a.Deleted == nil {
				return errors.New("delete answer without deleted")
			}
			out.Deleted = *a.Deleted
		}
	case opTxn:
		if a.Succeeded == nil {
			return errors.New("txn answer without succeeded")
		}
		out.Succeeded = *a.Succeeded
		branch := in.Failure
		if out.Succeeded {
			branch = in.Success
		}
		if len(a.Responses) != len(branch) {
			return fmt.Errorf("%d responses for %d operations", len(a.Responses), len(branch))
		}
		for i, o := range branch {
			r := a.Responses[i]
			switch {
			case o.Type == kv.OpPut && r.Put != nil:
			case o.Type == kv.OpDelete && r.Delete != nil:
				out.Deleted += r.Delete.Deleted
			case o.Type == kv.OpGet && r.Get != nil:
				recs, err := toRecs(r.Get.KVs)
				if err != nil {
					return err
				}
				out.Gets = append(out.Gets, recs)
			default:
				return fmt.Errorf("response %d does not answer a %v", i, o.Type)
			}
		}
	case opRange, opRangeAt:
		if status == 200 {
			if a.More {
				return errors.New("range cut short by the limit")
			}
			recs, err := toRecs(a.KVs)
			if err != nil {
				return err
			}
			out.KVs = recs
		}
	}
	return nil
}

// getJSON fetches path and decodes its JSON answer into v, failing on any
// status but 200.
func (r *restClient) getJSON(ctx context.Context, path string, v any) (*http.Response, error) {
	resp, b, err := r.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp, fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, b)
	}
	return resp, json.Unmarshal(b, v)
}

// statusAnswer is GET /v1/status.
type statusAnswer struct {
	Revision        int64 `json:"revision"`
	CompactRevision int64 `json:"compact_revision"`
	Keys            int64 `json:"keys"`
}

func (r *restClient) status(ctx context.Context) (statusAnswer, error) {
	var s statusAnswer
	_, err := r.getJSON(ctx, "/v1/status", &s)
	return s, err
}

// compact asks for compaction at rev and returns the status code.
func (r *restClient) compact(ctx context.Context, rev int64) (int, error) {
	resp, b, err := r.do(ctx, http.MethodPost, "/v1/compact", http.Header{"Content-Type": {"application/json"}},
		[]byte(`{"revision":`+strconv.FormatInt(rev, 10)+`}`))
	if err != nil {
		return 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusConflict:
		return resp.StatusCode, nil
	case http.StatusServiceUnavailable:
		if r.unavailableOK {
			return resp.StatusCode, fmt.Errorf("POST /v1/compact %d: status %d: %s", rev, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, fmt.Errorf("%w: POST /v1/compact %d: status %d: %s", errContract, rev, resp.StatusCode, b)
}

// rangeAll reads every key under prefix at the current revision.
func (r *restClient) rangeAll(ctx context.Context, prefix string) (int64, []kvRec, error) {
	in := opInput{Kind: opRange, Key: prefix}
	out, err := r.exec(ctx, &in)
	if err != nil {
		return 0, nil, err
	}
	if out.Unknown {
		return 0, nil, errors.New("range read failed")
	}
	return out.Rev, out.KVs, nil
}

// pathQuery joins a path and query values.
func pathQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}
