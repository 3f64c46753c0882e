package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

type txnResp struct {
	Revision  int64             `json:"revision"`
	Succeeded bool              `json:"succeeded"`
	Responses []json.RawMessage `json:"responses"`
}

func (s *testServer) txn(tb testing.TB, body string) (response, txnResp) {
	tb.Helper()
	resp := s.do(tb, req{method: http.MethodPost, path: "/v1/txn", body: body})
	var out txnResp
	if resp.status == http.StatusOK {
		decodeJSON(tb, resp, &out)
	}
	return resp, out
}

func TestTxnExample(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	// The example of API.md: a is at mod 5, b does not exist.
	s.put(t, "x", "1")
	s.put(t, "c/1", "1")
	s.put(t, "c/2", "2")
	rev := s.put(t, "a", "0")
	if rev != 5 {
		t.Fatalf("setup: a at %d, want 5", rev)
	}
	body := `{"compare":[{"key":"a","target":"mod","op":"=","value":5},
	                      {"key":"b","target":"version","op":"=","value":0}],
	          "success":[{"put":{"key":"a","value":"1"}},{"delete":{"key":"c","prefix":true}},{"get":{"key":"b"}}],
	          "failure":[{"get":{"key":"a"}}]}`
	resp, got := s.txn(t, body)
	mustStatus(t, resp, http.StatusOK)
	want := txnResp{Revision: 6, Succeeded: true, Responses: []json.RawMessage{
		json.RawMessage(`{"put":{"kv":{"key":"a","create_revision":5,"mod_revision":6,"version":2}}}`),
		json.RawMessage(`{"delete":{"deleted":2}}`),
		json.RawMessage(`{"get":{"kvs":[],"count":0,"more":false}}`),
	}}
	if diff := cmp.Diff(want, got, cmpRawJSON); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	if resp.header.Get("X-Revision") != "6" {
		t.Errorf("X-Revision %s, want 6", resp.header.Get("X-Revision"))
	}

	// The same again fails (a is now at 6) and runs the failure branch,
	// writing nothing.
	resp, got = s.txn(t, body)
	mustStatus(t, resp, http.StatusOK)
	want = txnResp{Revision: 6, Succeeded: false, Responses: []json.RawMessage{
		json.RawMessage(`{"get":{"kvs":[{"key":"a","value":"1","create_revision":5,"mod_revision":6,"version":2}],"count":1,"more":false}}`),
	}}
	if diff := cmp.Diff(want, got, cmpRawJSON); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

// cmpRawJSON compares json.RawMessage by their bytes as text, for readable
// diffs.
var cmpRawJSON = cmp.Transformer("rawJSON", func(m json.RawMessage) string { return string(m) })

func TestTxnCompares(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	s.put(t, "k", "m") // create 2, mod 2, version 1
	s.put(t, "k", "m") // mod 3, version 2
	for _, tc := range []struct {
		cmp  string
		want bool
	}{
		{`{"key":"k","target":"version","op":"=","value":2}`, true},
		{`{"key":"k","target":"version","op":"!=","value":2}`, false},
		{`{"key":"k","target":"version","op":">","value":1}`, true},
		{`{"key":"k","target":"version","op":"<","value":2}`, false},
		{`{"key":"k","target":"create","op":"=","value":2}`, true},
		{`{"key":"k","target":"mod","op":"=","value":3}`, true},
		{`{"key":"k","target":"mod","op":"<","value":3}`, false},
		{`{"key":"k","target":"value","op":"=","value":"m"}`, true},
		{`{"key":"k","target":"value","op":">","value":"l"}`, true},
		{`{"key":"k","target":"value","op":"=","value_b64":"bQ=="}`, true},
		{`{"key_b64":"aw==","target":"value","op":"=","value":"m"}`, true},
		{`{"key":"none","target":"version","op":"=","value":0}`, true},
		{`{"key":"none","target":"mod","op":"=","value":0}`, true},
		{`{"key":"none","target":"value","op":"=","value":""}`, false},
	} {
		t.Run(tc.cmp, func(t *testing.T) {
			resp, got := s.txn(t, `{"compare":[`+tc.cmp+`]}`)
			mustStatus(t, resp, http.StatusOK)
			if got.Succeeded != tc.want || len(got.Responses) != 0 {
				t.Errorf("succeeded %v responses %d, want %v and none", got.Succeeded, len(got.Responses), tc.want)
			}
		})
	}
}

func TestTxnOps(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	s.put(t, "r/1", "a")
	s.put(t, "r/2", "b")
	resp, got := s.txn(t, `{"success":[
		{"put":{"key_b64":"/w==","value_b64":"AAE=","prev_kv":true}},
		{"put":{"key":"r/1","value":"c","prev_kv":true}},
		{"put":{"key":"empty"}},
		{"get":{"key":"r/","prefix":true,"keys_only":true,"limit":1}},
		{"get":{"key":"r/1","range_end":"r/3","count_only":true}},
		{"get":{"key_b64":"cg==","range_end_b64":"cw=="}},
		{"delete":{"key":"r/2","prev_kv":true}}]}`)
	mustStatus(t, resp, http.StatusOK)
	want := txnResp{Revision: 4, Succeeded: true, Responses: []json.RawMessage{
		json.RawMessage(`{"put":{"kv":{"key_b64":"/w==","create_revision":4,"mod_revision":4,"version":1}}}`),
		json.RawMessage(`{"put":{"kv":{"key":"r/1","create_revision":2,"mod_revision":4,"version":2},"prev_kv":{"key":"r/1","value":"a","create_revision":2,"mod_revision":2,"version":1}}}`),
		json.RawMessage(`{"put":{"kv":{"key":"empty","create_revision":4,"mod_revision":4,"version":1}}}`),
		json.RawMessage(`{"get":{"kvs":[{"key":"r/1","create_revision":2,"mod_revision":4,"version":2}],"count":2,"more":true}}`),
		json.RawMessage(`{"get":{"count":2,"more":false}}`),
		json.RawMessage(`{"get":{"kvs":[{"key":"r/1","value":"c","create_revision":2,"mod_revision":4,"version":2},{"key":"r/2","value":"b","create_revision":3,"mod_revision":3,"version":1}],"count":2,"more":false}}`),
		json.RawMessage(`{"delete":{"deleted":1,"prev_kvs":[{"key":"r/2","value":"b","create_revision":3,"mod_revision":3,"version":1}]}}`),
	}}
	if diff := cmp.Diff(want, got, cmpRawJSON); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	v := s.do(t, req{path: "/v1/kv/%FF"})
	if string(v.body) != "\x00\x01" {
		t.Errorf("binary put: read back %q", v.body)
	}

	t.Run("read-only txn makes no revision", func(t *testing.T) {
		before := s.revision()
		resp, got := s.txn(t, `{"success":[{"get":{"key":"r/1"}},{"delete":{"key":"nothing"}}]}`)
		mustStatus(t, resp, http.StatusOK)
		if got.Revision != before || s.revision() != before {
			t.Errorf("revision %d -> %d (answer %d)", before, s.revision(), got.Revision)
		}
	})
}

func TestTxnErrors(t *testing.T) {
	s := newTestServer(t, Options{MaxTxnOps: 4, MaxKeySize: 16, MaxValueSize: 32}, kvOptionsForTest())
	before := s.revision()
	for _, tc := range []struct {
		name   string
		body   string
		status int
		slug   string
	}{
		{"empty body", ``, 400, "bad-request"},
		{"not JSON", `compare`, 400, "bad-request"},
		{"array", `[]`, 400, "bad-request"},
		{"trailing data", `{} {}`, 400, "bad-request"},
		{"unknown member", `{"compares":[]}`, 400, "bad-request"},
		{"unknown op member", `{"success":[{"put":{"key":"a","val":"x"}}]}`, 400, "bad-request"},
		{"two ops in one", `{"success":[{"put":{"key":"a"},"get":{"key":"a"}}]}`, 400, "bad-request"},
		{"no op", `{"success":[{}]}`, 400, "bad-request"},
		{"key and key_b64", `{"success":[{"put":{"key":"a","key_b64":"YQ=="}}]}`, 400, "bad-request"},
		{"bad base64", `{"success":[{"put":{"key_b64":"%%%"}}]}`, 400, "bad-request"},
		{"put empty key", `{"success":[{"put":{"key":""}}]}`, 400, "empty-key"},
		{"put no key", `{"success":[{"put":{"value":"x"}}]}`, 400, "empty-key"},
		{"get no key", `{"success":[{"get":{}}]}`, 400, "bad-request"},
		{"get empty key without range", `{"success":[{"get":{"key":""}}]}`, 400, "empty-key"},
		{"prefix and range_end", `{"success":[{"delete":{"key":"a","prefix":true,"range_end":"b"}}]}`, 400, "bad-request"},
		{"limit 0", `{"success":[{"get":{"key":"a","limit":0}}]}`, 400, "bad-request"},
		{"limit on delete", `{"success":[{"delete":{"key":"a","limit":1}}]}`, 400, "bad-request"},
		{"bad target", `{"compare":[{"key":"a","target":"lease","op":"=","value":0}]}`, 400, "invalid-compare"},
		{"bad op", `{"compare":[{"key":"a","target":"mod","op":"==","value":0}]}`, 400, "invalid-compare"},
		{"number as string", `{"compare":[{"key":"a","target":"mod","op":"=","value":"5"}]}`, 400, "invalid-compare"},
		{"fraction", `{"compare":[{"key":"a","target":"mod","op":"=","value":5.5}]}`, 400, "invalid-compare"},
		{"value compare with number", `{"compare":[{"key":"a","target":"value","op":"=","value":5}]}`, 400, "invalid-compare"},
		{"value_b64 on mod", `{"compare":[{"key":"a","target":"mod","op":"=","value_b64":"AA=="}]}`, 400, "invalid-compare"},
		{"compare without key", `{"compare":[{"target":"mod","op":"=","value":0}]}`, 400, "invalid-compare"},
		{"compare without value", `{"compare":[{"key":"a","target":"mod","op":"="}]}`, 400, "invalid-compare"},
		{"wrong member type", `{"success":[{"put":{"key":5}}]}`, 400, "bad-request"},
		{"too many ops", `{"success":[` + strings.Repeat(`{"get":{"key":"a"}},`, 4) + `{"get":{"key":"a"}}]}`, 413, "too-many-operations"},
		{"too many compares", `{"compare":[` + strings.Repeat(`{"key":"a","target":"mod","op":"=","value":0},`, 4) + `{"key":"a","target":"mod","op":"=","value":0}]}`, 413, "too-many-operations"},
		{"key too large", `{"success":[{"put":{"key":"` + strings.Repeat("k", 17) + `"}}]}`, 413, "key-too-large"},
		{"value too large", `{"success":[{"put":{"key":"k","value":"` + strings.Repeat("v", 33) + `"}}]}`, 413, "value-too-large"},
		{"body too large", `{"success":[{"put":{"key":"k","value":"` + strings.Repeat("v", 7<<20) + `"}}]}`, 413, "request-too-large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := s.txn(t, tc.body)
			mustProblem(t, resp, tc.status, tc.slug)
		})
	}
	if s.revision() != before {
		t.Errorf("rejected transactions moved the revision from %d to %d", before, s.revision())
	}
}

// FuzzParseTxn checks that the transaction parser never panics and that
// every error it returns is answered with a 4xx.
func FuzzParseTxn(f *testing.F) {
	for _, seed := range []string{
		`{"compare":[{"key":"a","target":"mod","op":"=","value":5}],"success":[{"put":{"key":"a","value":"1"}}],"failure":[{"get":{"key":"a"}}]}`,
		`{"success":[{"delete":{"key":"c","prefix":true,"prev_kv":true}},{"get":{"key_b64":"/w==","range_end_b64":"AA==","limit":3,"keys_only":true}}]}`,
		`{"compare":[{"key_b64":"AA==","target":"value","op":"<","value_b64":"AA=="},{"key":"b","target":"value","op":"!=","value":"x"}]}`,
		`{}`, `[]`, `null`, `{"success":[{}]}`, `{"compare":[{"value":1e99}]}`,
	} {
		f.Add([]byte(seed))
	}
	lim := txnLimits{maxOps: 8, maxKey: 64, maxValue: 256}
	f.Fuzz(func(t *testing.T, body []byte) {
		tr, err := parseTxn(body, lim)
		if err != nil {
			if st := StatusOf(err); st < 400 || st > 499 {
				t.Fatalf("parseTxn(%q): %v answered %d, want 4xx", body, err, st)
			}
			return
		}
		if len(tr.Compare) > lim.maxOps || len(tr.Success) > lim.maxOps || len(tr.Failure) > lim.maxOps {
			t.Fatalf("parseTxn(%q) accepted more than %d ops", body, lim.maxOps)
		}
		if len(tr.successPrev) != len(tr.Success) || len(tr.failurePrev) != len(tr.Failure) {
			t.Fatalf("parseTxn(%q): prev flags do not match the ops", body)
		}
		for _, op := range append(append([]kv.Op{}, tr.Success...), tr.Failure...) {
			if len(op.Key) > lim.maxKey || len(op.End) > lim.maxKey || len(op.Value) > lim.maxValue {
				t.Fatalf("parseTxn(%q) accepted an op over the limits: %+v", body, op)
			}
			if op.Type == kv.OpPut && len(op.Key) == 0 {
				t.Fatalf("parseTxn(%q) accepted a put of the empty key", body)
			}
			if op.Type == kv.OpGet && (op.Limit < 1 || op.Limit > maxLimit) {
				t.Fatalf("parseTxn(%q): get limit %d", body, op.Limit)
			}
		}
	})
}
