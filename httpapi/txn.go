package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// The JSON shapes of POST /v1/txn. Strings that hold bytes come as text or
// as standard base64 in the _b64 member (kvjson.Bytes); unknown members are
// rejected so a misspelt option is an error rather than silently ignored.
type (
	txnJSON struct {
		Compare []compareJSON `json:"compare"`
		Success []opJSON      `json:"success"`
		Failure []opJSON      `json:"failure"`
	}
	compareJSON struct {
		Key    *string `json:"key"`
		KeyB64 *string `json:"key_b64"`
		Target string  `json:"target"`
		Op     string  `json:"op"`
		// Value is a number for the version, create and mod targets and a
		// string for the value target.
		Value    json.RawMessage `json:"value"`
		ValueB64 *string         `json:"value_b64"`
	}
	opJSON struct {
		Put    *putOpJSON    `json:"put"`
		Delete *deleteOpJSON `json:"delete"`
		Get    *getOpJSON    `json:"get"`
	}
	putOpJSON struct {
		Key      *string `json:"key"`
		KeyB64   *string `json:"key_b64"`
		Value    *string `json:"value"`
		ValueB64 *string `json:"value_b64"`
		PrevKV   bool    `json:"prev_kv"`
	}
	deleteOpJSON struct {
		rangeJSON
		PrevKV bool `json:"prev_kv"`
	}
	getOpJSON struct {
		rangeJSON
		Limit     *int64 `json:"limit"`
		KeysOnly  bool   `json:"keys_only"`
		CountOnly bool   `json:"count_only"`
	}
	rangeJSON struct {
		Key         *string `json:"key"`
		KeyB64      *string `json:"key_b64"`
		RangeEnd    *string `json:"range_end"`
		RangeEndB64 *string `json:"range_end_b64"`
		Prefix      bool    `json:"prefix"`
	}
)

// txnRequest is a parsed POST /v1/txn body: the store transaction and, per
// operation of each branch, whether its answer shows previous versions.
type txnRequest struct {
	kv.TxnRequest
	successPrev, failurePrev []bool
}

// txnLimits bounds a transaction body.
type txnLimits struct {
	maxOps, maxKey, maxValue int
}

var compareTargets = map[string]kv.CompareTarget{
	"version": kv.CompareVersion,
	"create":  kv.CompareCreate,
	"mod":     kv.CompareMod,
	"value":   kv.CompareValue,
}

var compareOps = map[string]kv.CompareOp{
	"=":  kv.CompareEqual,
	"!=": kv.CompareNotEqual,
	"<":  kv.CompareLess,
	">":  kv.CompareGreater,
}

// parseTxn decodes a transaction body. Malformed JSON or a bad member is
// ErrBadRequest; a branch or compare list over maxOps, a key over maxKey or
// a value over maxValue is a 413 error.
func parseTxn(body []byte, lim txnLimits) (txnRequest, error) {
	var tj txnJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tj); err != nil {
		return txnRequest{}, badRequest("transaction body: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return txnRequest{}, badRequest("transaction body: data after the JSON object")
	}
	for _, l := range []struct {
		name string
		n    int
	}{{"compare", len(tj.Compare)}, {"success", len(tj.Success)}, {"failure", len(tj.Failure)}} {
		if name, n := l.name, l.n; n > lim.maxOps {
			return txnRequest{}, &requestError{kind: kv.ErrTooManyOps,
				msg: name + " has " + itoa(int64(n)) + " entries, over the limit of " + itoa(int64(lim.maxOps))}
		}
	}
	var t txnRequest
	for i := range tj.Compare {
		c, err := parseCompare(&tj.Compare[i], lim)
		if err != nil {
			return txnRequest{}, prefixErr("compare["+strconv.Itoa(i)+"]", err)
		}
		t.Compare = append(t.Compare, c)
	}
	var err error
	if t.Success, t.successPrev, err = parseOps("success", tj.Success, lim); err != nil {
		return txnRequest{}, err
	}
	if t.Failure, t.failurePrev, err = parseOps("failure", tj.Failure, lim); err != nil {
		return txnRequest{}, err
	}
	return t, nil
}

func parseCompare(cj *compareJSON, lim txnLimits) (kv.Compare, error) {
	key, err := bytesMember("key", cj.Key, cj.KeyB64, lim.maxKey)
	if err != nil {
		return kv.Compare{}, err
	}
	if key == nil {
		return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare, msg: "key or key_b64 is required"}
	}
	target, ok := compareTargets[cj.Target]
	if !ok {
		return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare,
			msg: "target must be version, create, mod or value, not " + strconv.Quote(cj.Target)}
	}
	op, ok := compareOps[cj.Op]
	if !ok {
		return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare,
			msg: "op must be =, !=, < or >, not " + strconv.Quote(cj.Op)}
	}
	c := kv.Compare{Key: key, Target: target, Op: op}
	if target == kv.CompareValue {
		var text *string
		if len(cj.Value) > 0 {
			var s string
			if err := json.Unmarshal(cj.Value, &s); err != nil {
				return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare, msg: "value of a value compare must be a string (or use value_b64)"}
			}
			text = &s
		}
		v, err := bytesMember("value", text, cj.ValueB64, lim.maxValue)
		if err != nil {
			return kv.Compare{}, err
		}
		if v == nil {
			return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare, msg: "value or value_b64 is required"}
		}
		c.Value = v
		return c, nil
	}
	if cj.ValueB64 != nil {
		return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare, msg: "value_b64 applies only to the value target"}
	}
	if len(cj.Value) == 0 {
		return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare, msg: "value (a number) is required"}
	}
	n, err := strconv.ParseInt(string(cj.Value), 10, 64)
	if err != nil {
		return kv.Compare{}, &requestError{kind: kv.ErrInvalidCompare,
			msg: "value of a " + cj.Target + " compare must be an integer, not " + string(cj.Value)}
	}
	c.Number = n
	return c, nil
}

func parseOps(branch string, ojs []opJSON, lim txnLimits) (ops []kv.Op, prev []bool, err error) {
	for i := range ojs {
		oj := &ojs[i]
		where := branch + "[" + strconv.Itoa(i) + "]"
		n := 0
		for _, set := range []bool{oj.Put != nil, oj.Delete != nil, oj.Get != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return nil, nil, badRequest("%s: an operation is exactly one of put, delete or get", where)
		}
		var op kv.Op
		var p bool
		switch {
		case oj.Put != nil:
			op, err = parsePut(oj.Put, lim)
			p = oj.Put.PrevKV
		case oj.Delete != nil:
			op, err = parseRangeOp(kv.OpDelete, &oj.Delete.rangeJSON, lim)
			p = oj.Delete.PrevKV
		default:
			g := oj.Get
			op, err = parseRangeOp(kv.OpGet, &g.rangeJSON, lim)
			op.Limit = defaultLimit
			if g.Limit != nil {
				if *g.Limit < 1 || *g.Limit > maxLimit {
					err = badRequest("limit must be from 1 to %d", maxLimit)
				}
				op.Limit = *g.Limit
			}
			op.KeysOnly, op.CountOnly = g.KeysOnly, g.CountOnly
		}
		if err != nil {
			return nil, nil, prefixErr(where, err)
		}
		ops = append(ops, op)
		prev = append(prev, p)
	}
	return ops, prev, nil
}

func parsePut(pj *putOpJSON, lim txnLimits) (kv.Op, error) {
	key, err := bytesMember("key", pj.Key, pj.KeyB64, lim.maxKey)
	if err != nil {
		return kv.Op{}, err
	}
	if len(key) == 0 {
		return kv.Op{}, &requestError{kind: kv.ErrEmptyKey, msg: "put needs a non-empty key or key_b64"}
	}
	value, err := bytesMember("value", pj.Value, pj.ValueB64, lim.maxValue)
	if err != nil {
		return kv.Op{}, err
	}
	if value == nil {
		value = []byte{}
	}
	return kv.Op{Type: kv.OpPut, Key: key, Value: value}, nil
}

func parseRangeOp(typ kv.OpType, rj *rangeJSON, lim txnLimits) (kv.Op, error) {
	key, err := bytesMember("key", rj.Key, rj.KeyB64, lim.maxKey)
	if err != nil {
		return kv.Op{}, err
	}
	if key == nil {
		return kv.Op{}, badRequest("key or key_b64 is required (\"\" with prefix selects every key)")
	}
	end, err := bytesMember("range_end", rj.RangeEnd, rj.RangeEndB64, lim.maxKey)
	if err != nil {
		return kv.Op{}, err
	}
	if len(end) == 0 {
		end = nil // an empty range_end selects the single key, as in etcd
	}
	switch {
	case rj.Prefix && end != nil:
		return kv.Op{}, badRequest("give prefix or range_end, not both")
	case rj.Prefix:
		end = kv.PrefixEnd(key)
	case end == nil && len(key) == 0:
		return kv.Op{}, &requestError{kind: kv.ErrEmptyKey, msg: "the empty key is allowed only with prefix or range_end"}
	}
	return kv.Op{Type: typ, Key: key, End: end}, nil
}

// bytesMember resolves a text/base64 member pair, bounded by max bytes;
// neither present gives nil.
func bytesMember(name string, text, b64 *string, max int) ([]byte, error) {
	b, err := kvjson.Bytes(name, text, b64)
	if err != nil {
		return nil, badRequest("%v", strings.TrimPrefix(err.Error(), "kvjson: "))
	}
	if len(b) > max {
		kind := kv.ErrKeyTooLarge
		if name == "value" {
			kind = kv.ErrValueTooLarge
		}
		return nil, &requestError{kind: kind, msg: name + " is " + itoa(int64(len(b))) +
			" bytes, over the limit of " + formatSize(int64(max))}
	}
	return b, nil
}

// prefixErr puts where (a position in the body) in front of a request
// error's message.
func prefixErr(where string, err error) error {
	if re, ok := errors.AsType[*requestError](err); ok {
		return &requestError{kind: re.kind, msg: where + ": " + re.msg}
	}
	return err
}

// jsonErrorText makes a JSON decoding error readable without Go type names.
func jsonErrorText(err error) string {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if te.Field != "" {
			return "member " + te.Field + " has the wrong type (" + te.Value + ")"
		}
		return "wrong type (" + te.Value + "): expected an object"
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return "invalid JSON at byte " + itoa(se.Offset) + ": " + se.Error()
	}
	if err == io.EOF {
		return "empty body"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// txnBodyLimit bounds a transaction body: room for a value of the largest
// size in its most verbose JSON form (\u escapes), plus keys and syntax.
func (s *Server) txnBodyLimit() int64 {
	return 6*int64(s.opts.MaxValueSize) + 1<<20
}

// txn serves POST /v1/txn: {"revision":R,"succeeded":bool,"responses":[...]}
// with one entry per operation of the branch that ran, in order.
func (s *Server) txn(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, s.txnBodyLimit(), ErrTooLarge, "the transaction body")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := parseTxn(body, txnLimits{maxOps: s.opts.MaxTxnOps, maxKey: s.opts.MaxKeySize, maxValue: s.opts.MaxValueSize})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.authorizeTxn(r, &t.TxnRequest); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.store.Txn(r.Context(), t.TxnRequest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ops, prev := t.Success, t.successPrev
	if !resp.Succeeded {
		ops, prev = t.Failure, t.failurePrev
	}
	if len(resp.Responses) != len(ops) {
		s.writeError(w, r, errBrokenTxnResponse)
		return
	}
	setRevisionHeaders(w, resp.Revision, 0)
	b := appendRevision(make([]byte, 0, 256), resp.Revision)
	b = append(b, `,"succeeded":`...)
	b = strconv.AppendBool(b, resp.Succeeded)
	b = append(b, `,"responses":[`...)
	for i := range resp.Responses {
		if i > 0 {
			b = append(b, ',')
		}
		b, err = appendOpResult(b, &resp.Responses[i], &ops[i], prev[i])
		if err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	b = append(b, "]}"...)
	writeJSON(w, r, http.StatusOK, b)
}

// appendOpResult appends one entry of a transaction's responses:
// {"put":{"kv":{...},"prev_kv":{...}}}, {"delete":{"deleted":N,"prev_kvs":[...]}}
// or {"get":{"kvs":[...],"count":N,"more":bool}}.
func appendOpResult(b []byte, res *kv.OpResult, op *kv.Op, prev bool) ([]byte, error) {
	switch op.Type {
	case kv.OpPut:
		if res.KV == nil {
			return nil, errBrokenTxnResponse
		}
		b = append(b, `{"put":{"kv":`...)
		b = kvjson.AppendKV(b, res.KV, true)
		if prev && res.PrevKV != nil {
			b = append(b, `,"prev_kv":`...)
			b = kvjson.AppendKV(b, res.PrevKV, false)
		}
	case kv.OpDelete:
		b = append(b, `{"delete":{"deleted":`...)
		b = strconv.AppendInt(b, res.Deleted, 10)
		if prev {
			b = append(b, `,"prev_kvs":`...)
			b = appendKVs(b, res.PrevKVs, false)
		}
	default:
		if res.Range == nil {
			return nil, errBrokenTxnResponse
		}
		b = append(b, `{"get":{`...)
		if !op.CountOnly {
			b = append(b, `"kvs":`...)
			b = appendKVs(b, res.Range.KVs, op.KeysOnly)
			b = append(b, ',')
		}
		b = append(b, `"count":`...)
		b = strconv.AppendInt(b, res.Range.Count, 10)
		b = append(b, `,"more":`...)
		b = strconv.AppendBool(b, res.Range.More && !op.CountOnly)
	}
	return append(b, "}}"...), nil
}

// authorizeTxn checks every key a transaction may touch, whichever branch
// runs: a compare reads its key (its outcome tells of the value), a get
// reads its range, a put writes its key, a delete writes its range.
func (s *Server) authorizeTxn(r *http.Request, t *kv.TxnRequest) error {
	for i := range t.Compare {
		if err := s.authorize(r, modeRead, t.Compare[i].Key, nil); err != nil {
			return prefixErr("compare["+strconv.Itoa(i)+"]", err)
		}
	}
	for _, br := range []struct {
		name string
		ops  []kv.Op
	}{{"success", t.Success}, {"failure", t.Failure}} {
		for i := range br.ops {
			op := &br.ops[i]
			mode := modeWrite
			if op.Type == kv.OpGet {
				mode = modeRead
			}
			if err := s.authorize(r, mode, op.Key, op.End); err != nil {
				return prefixErr(br.name+"["+strconv.Itoa(i)+"]", err)
			}
		}
	}
	return nil
}
