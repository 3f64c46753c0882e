package ws

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParseRequest(t *testing.T) {
	long := strings.Repeat("k", DefaultMaxKeySize)
	tests := []struct {
		name string
		msg  string
		want Request
	}{
		{"ping", `{"op":"ping"}`, Request{Op: OpPing}},
		{"progress", `{"op":"progress"}`, Request{Op: OpProgress}},
		{"cancel", `{"op":"cancel","id":"w1"}`, Request{Op: OpCancel, ID: "w1"}},
		{"single key", `{"op":"watch","id":"w1","key":"config/a"}`,
			Request{Op: OpWatch, ID: "w1", Watch: WatchRequest{Key: []byte("config/a")}}},
		{"prefix", `{"op":"watch","id":"w1","key":"config/","prefix":true,"rev":0,"prev_kv":false,"events":["put","delete"],"snapshot":false}`,
			Request{Op: OpWatch, ID: "w1", Watch: WatchRequest{Key: []byte("config/"), End: []byte("config0")}}},
		{"every key", `{"op":"watch","id":"all","key":"","prefix":true}`,
			Request{Op: OpWatch, ID: "all", Watch: WatchRequest{End: []byte{0}}}},
		{"every key without key member", `{"op":"watch","id":"all","prefix":true}`,
			Request{Op: OpWatch, ID: "all", Watch: WatchRequest{End: []byte{0}}}},
		{"range", `{"op":"watch","id":"r","key":"a","range_end":"c"}`,
			Request{Op: OpWatch, ID: "r", Watch: WatchRequest{Key: []byte("a"), End: []byte("c")}}},
		{"range from the empty key", `{"op":"watch","id":"r","key":"","range_end":"c"}`,
			Request{Op: OpWatch, ID: "r", Watch: WatchRequest{End: []byte("c")}}},
		{"range to the end", `{"op":"watch","id":"r","key":"m","range_end":"\u0000"}`,
			Request{Op: OpWatch, ID: "r", Watch: WatchRequest{Key: []byte("m"), End: []byte{0}}}},
		{"binary key and end", `{"op":"watch","id":"b","key_b64":"/wA=","range_end_b64":"/wE="}`,
			Request{Op: OpWatch, ID: "b", Watch: WatchRequest{Key: []byte{0xff, 0}, End: []byte{0xff, 1}}}},
		{"binary prefix of 0xff", `{"op":"watch","id":"b","key_b64":"//8=","prefix":true}`,
			Request{Op: OpWatch, ID: "b", Watch: WatchRequest{Key: []byte{0xff, 0xff}, End: []byte{0}}}},
		{"options", `{"op":"watch","id":"o","key":"k","rev":42,"prev_kv":true,"events":["delete"],"snapshot":true}`,
			Request{Op: OpWatch, ID: "o", Watch: WatchRequest{Key: []byte("k"), Rev: 42, PrevKV: true, NoPut: true, Snapshot: true}}},
		{"puts only, repeated", `{"op":"watch","id":"o","key":"k","events":["put","put"]}`,
			Request{Op: OpWatch, ID: "o", Watch: WatchRequest{Key: []byte("k"), NoDelete: true}}},
		{"nulls are absent", `{"op":"watch","id":"n","key":"k","range_end":null,"rev":null,"events":null,"prev_kv":null}`,
			Request{Op: OpWatch, ID: "n", Watch: WatchRequest{Key: []byte("k")}}},
		{"member order does not matter", `{"key":"k","id":"x","op":"watch"}`,
			Request{Op: OpWatch, ID: "x", Watch: WatchRequest{Key: []byte("k")}}},
		{"key at the limit", `{"op":"watch","id":"l","key":"` + long + `"}`,
			Request{Op: OpWatch, ID: "l", Watch: WatchRequest{Key: []byte(long)}}},
		{"unicode id and key", `{"op":"watch","id":"wé\u2028","key":"ключ"}`,
			Request{Op: OpWatch, ID: "wé\u2028", Watch: WatchRequest{Key: []byte("ключ")}}},
		{"whitespace", " \n{ \"op\" : \"ping\" }\n ", Request{Op: OpPing}},
		{"escaped member name", `{"\u006fp":"cancel","i\u0064":"a\"b"}`, Request{Op: OpCancel, ID: `a"b`}},
		{"largest rev", `{"op":"watch","id":"w","key":"k","rev":9223372036854775807}`,
			Request{Op: OpWatch, ID: "w", Watch: WatchRequest{Key: []byte("k"), Rev: 9223372036854775807}}},
		{"spaced events", `{"op":"watch","id":"w","key":"k","events":[ "delete" , "put" ]}`,
			Request{Op: OpWatch, ID: "w", Watch: WatchRequest{Key: []byte("k")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(tt.msg), ParseOptions{})
			if err != nil {
				t.Fatalf("ParseRequest(%s): %v", tt.msg, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRequest(%s) (-want +got):\n%s", tt.msg, diff)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	long := strings.Repeat("k", DefaultMaxKeySize+1)
	tests := []struct {
		name   string
		msg    string
		opts   ParseOptions
		err    error
		status int
		id     string // the id the failed request still carries
		detail string // a part of the detail
	}{
		{"not utf-8", "{\"op\":\"ping\",\"id\":\"\xff\"}", ParseOptions{}, ErrBadMessage, 400, "", "UTF-8"},
		{"empty", ``, ParseOptions{}, ErrBadMessage, 400, "", "complete"},
		{"not json", `op=ping`, ParseOptions{}, ErrBadMessage, 400, "", "not valid JSON"},
		{"array", `[{"op":"ping"}]`, ParseOptions{}, ErrBadMessage, 400, "", "object"},
		{"string", `"ping"`, ParseOptions{}, ErrBadMessage, 400, "", "object"},
		{"truncated", `{"op":"ping"`, ParseOptions{}, ErrBadMessage, 400, "", "complete"},
		{"trailing comma", `{"op":"ping",}`, ParseOptions{}, ErrBadMessage, 400, "", "not valid JSON"},
		{"trailing data", `{"op":"ping"}{}`, ParseOptions{}, ErrBadMessage, 400, "", "after"},
		{"duplicate member", `{"op":"ping","op":"ping"}`, ParseOptions{}, ErrBadMessage, 400, "", `"op" appears more than once`},
		{"no op", `{"id":"w1"}`, ParseOptions{}, ErrUnknownOp, 400, "w1", `no "op"`},
		{"unknown op", `{"op":"subscribe","id":"w1"}`, ParseOptions{}, ErrUnknownOp, 400, "w1", `"subscribe"`},
		{"op case", `{"op":"Watch","id":"w1","key":"k"}`, ParseOptions{}, ErrUnknownOp, 400, "w1", `"Watch"`},
		{"op not a string", `{"op":1}`, ParseOptions{}, ErrBadMessage, 400, "", `"op" must be a string`},
		{"unknown member", `{"op":"watch","id":"w1","key":"k","prefx":true}`, ParseOptions{}, ErrUnknownField, 400, "w1", `"prefx"`},
		{"member name case", `{"op":"watch","id":"w1","Key":"k"}`, ParseOptions{}, ErrUnknownField, 400, "w1", `"Key"`},
		{"progress interval is not a watch option", `{"op":"watch","id":"w1","key":"k","progress":"15s"}`, ParseOptions{}, ErrUnknownField, 400, "w1", `"progress"`},
		{"key on cancel", `{"op":"cancel","id":"w1","key":"k"}`, ParseOptions{}, ErrUnknownField, 400, "w1", `cancel does not take member "key"`},
		{"id on ping", `{"op":"ping","id":"p"}`, ParseOptions{}, ErrUnknownField, 400, "p", `ping does not take member "id"`},
		{"watch without id", `{"op":"watch","key":"k"}`, ParseOptions{}, ErrBadID, 400, "", `no "id"`},
		{"cancel without id", `{"op":"cancel"}`, ParseOptions{}, ErrBadID, 400, "", `no "id"`},
		{"empty id", `{"op":"watch","id":"","key":"k"}`, ParseOptions{}, ErrBadID, 400, "", "empty"},
		{"numeric id", `{"op":"cancel","id":7}`, ParseOptions{}, ErrBadID, 400, "", "string"},
		{"long id", `{"op":"cancel","id":"` + strings.Repeat("i", MaxIDSize+1) + `"}`, ParseOptions{}, ErrBadID, 400, "", "limit"},
		{"empty key", `{"op":"watch","id":"w1","key":""}`, ParseOptions{}, ErrBadKey, 400, "w1", "empty key"},
		{"no key", `{"op":"watch","id":"w1"}`, ParseOptions{}, ErrBadKey, 400, "w1", "empty key"},
		{"key not a string", `{"op":"watch","id":"w1","key":5}`, ParseOptions{}, ErrBadMessage, 400, "w1", `"key" must be a string`},
		{"both key forms", `{"op":"watch","id":"w1","key":"a","key_b64":"YQ=="}`, ParseOptions{}, ErrBadKey, 400, "w1", "together"},
		{"bad base64", `{"op":"watch","id":"w1","key_b64":"!!"}`, ParseOptions{}, ErrBadKey, 400, "w1", "base64"},
		{"key too large", `{"op":"watch","id":"w1","key":"` + long + `"}`, ParseOptions{}, ErrKeyTooLarge, 413, "w1", `"key" is 4097 bytes`},
		{"key over a custom limit", `{"op":"watch","id":"w1","key":"abcd"}`, ParseOptions{MaxKeySize: 3}, ErrKeyTooLarge, 413, "w1", "limit is 3"},
		{"b64 key too large", `{"op":"watch","id":"w1","key_b64":"` + base64.StdEncoding.EncodeToString([]byte(long)) + `"}`, ParseOptions{}, ErrKeyTooLarge, 413, "w1", `"key_b64"`},
		{"range end too large", `{"op":"watch","id":"w1","key":"a","range_end":"` + long + `"}`, ParseOptions{}, ErrKeyTooLarge, 413, "w1", `"range_end"`},
		{"prefix and range end", `{"op":"watch","id":"w1","key":"a","prefix":true,"range_end":"b"}`, ParseOptions{}, ErrBadKey, 400, "w1", "together"},
		{"range end below key", `{"op":"watch","id":"w1","key":"b","range_end":"a"}`, ParseOptions{}, ErrBadKey, 400, "w1", "above"},
		{"range end equal to key", `{"op":"watch","id":"w1","key":"b","range_end":"b"}`, ParseOptions{}, ErrBadKey, 400, "w1", "above"},
		{"empty range end", `{"op":"watch","id":"w1","key":"b","range_end":""}`, ParseOptions{}, ErrBadKey, 400, "w1", "above"},
		{"prefix not a bool", `{"op":"watch","id":"w1","key":"a","prefix":"true"}`, ParseOptions{}, ErrBadMessage, 400, "w1", "boolean"},
		{"negative rev", `{"op":"watch","id":"w1","key":"a","rev":-1}`, ParseOptions{}, ErrBadRevision, 400, "w1", "-1"},
		{"fractional rev", `{"op":"watch","id":"w1","key":"a","rev":1.5}`, ParseOptions{}, ErrBadMessage, 400, "w1", "integer"},
		{"string rev", `{"op":"watch","id":"w1","key":"a","rev":"5"}`, ParseOptions{}, ErrBadMessage, 400, "w1", "integer"},
		{"huge rev", `{"op":"watch","id":"w1","key":"a","rev":99999999999999999999}`, ParseOptions{}, ErrBadMessage, 400, "w1", "out of range"},
		{"empty events", `{"op":"watch","id":"w1","key":"a","events":[]}`, ParseOptions{}, ErrBadEvents, 400, "w1", "at least one"},
		{"unknown event", `{"op":"watch","id":"w1","key":"a","events":["put","update"]}`, ParseOptions{}, ErrBadEvents, 400, "w1", `"update"`},
		{"events not an array", `{"op":"watch","id":"w1","key":"a","events":"put"}`, ParseOptions{}, ErrBadMessage, 400, "w1", "array"},
		{"events not strings", `{"op":"watch","id":"w1","key":"a","events":["put",1]}`, ParseOptions{}, ErrBadMessage, 400, "w1", "array of strings"},
		{"smallest rev", `{"op":"watch","id":"w1","key":"a","rev":-9223372036854775808}`, ParseOptions{}, ErrBadRevision, 400, "w1", "-9223372036854775808"},
		{"rev just over", `{"op":"watch","id":"w1","key":"a","rev":9223372036854775808}`, ParseOptions{}, ErrBadMessage, 400, "w1", "out of range"},
		{"exponent rev", `{"op":"watch","id":"w1","key":"a","rev":1e3}`, ParseOptions{}, ErrBadMessage, 400, "w1", "integer"},
		{"unknown nested member", `{"op":"ping","x":{"a":[1,{"b":"]}\""}]}}`, ParseOptions{}, ErrUnknownField, 400, "", `"x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseRequest([]byte(tt.msg), tt.opts)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseRequest(%.80s) = %v, want %v", tt.msg, err, tt.err)
			}
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v is not a *Problem", err)
			}
			if p.Status != tt.status || p.Title == "" || !strings.Contains(p.Detail, tt.detail) {
				t.Errorf("problem = %+v, want status %d and a detail with %q", p, tt.status, tt.detail)
			}
			if req.ID != tt.id {
				t.Errorf("request id = %q, want %q", req.ID, tt.id)
			}
		})
	}
}

// FuzzParseRequest checks that no message makes the parser panic, that
// every error is a clean 4xx problem that encodes to valid JSON, and that
// every accepted request is normalised and survives re-encoding.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"op":"ping"}`, `{"op":"progress"}`, `{"op":"cancel","id":"w1"}`,
		`{"op":"watch","id":"w1","key":"config/","prefix":true,"rev":0,"prev_kv":false,"events":["put","delete"],"snapshot":false}`,
		`{"op":"watch","id":"b","key_b64":"/wA=","range_end_b64":"/wE=","rev":7}`,
		`{"op":"watch","id":"r","key":"m","range_end":"\u0000"}`,
		`{"op":"watch","id":"w1","key":"a","rev":-1}`, `{"op":"watch","id":"w1","key":"a","rev":1e3}`,
		`{"op":"watch","id":"\ud800","key":"\udfff"}`, `{"op":"watch","op":"ping"}`, `[]`, `{`, ``, "\xff",
		`{"\u006fp":"ping"}`, `{"op":"ping","x":{"a":[1,{"b":"]}\""}],"c":null}}`, ` {"op" : "cancel" , "id" : "a\"b" } `,
		`{"op":"watch","id":"w","key":"k","rev":-9223372036854775808}`, `{"op":"watch","id":"w","key":"k","rev":9223372036854775807}`,
		`{"op":"watch","id":"w","key":"k","events":[ "put" , "delete" ]}`, `{"op":"watch","id":"w","key":"k","events":["put",1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseRequest(data, ParseOptions{MaxKeySize: 64})
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v is not a *Problem", err)
			}
			if p.Status < 400 || p.Status > 499 || p.Title == "" || p.Detail == "" || p.Err == nil {
				t.Fatalf("problem %+v is not a complete 4xx problem", p)
			}
			msg := appendError(nil, req.ID, p)
			var m Message
			if err := json.Unmarshal(msg, &m); err != nil || !utf8.Valid(msg) {
				t.Fatalf("error message %q is not valid JSON: %v", msg, err)
			}
			if m.Type != TypeError || m.ID != req.ID || m.Error == nil || m.Error.Detail != p.Detail && utf8.ValidString(p.Detail) {
				t.Fatalf("error message %q decodes to %+v", msg, m)
			}
			return
		}
		switch req.Op {
		case OpPing, OpProgress:
			if req.ID != "" {
				t.Fatalf("%v request with id %q", req.Op, req.ID)
			}
			return
		case OpCancel, OpWatch:
			if req.ID == "" || len(req.ID) > MaxIDSize {
				t.Fatalf("%v request with id %q", req.Op, req.ID)
			}
		default:
			t.Fatalf("accepted request with op %v", req.Op)
		}
		if req.Op == OpCancel {
			return
		}
		w := req.Watch
		if len(w.Key) > 64 || len(w.End) > 64 || w.Rev < 0 || w.NoPut && w.NoDelete {
			t.Fatalf("accepted watch %+v", w)
		}
		if w.End == nil && len(w.Key) == 0 {
			t.Fatalf("accepted the empty single key")
		}
		if w.End != nil && string(w.End) != "\x00" && string(w.End) <= string(w.Key) {
			t.Fatalf("accepted range [%q, %q)", w.Key, w.End)
		}
		// Re-encode the normalised request as a range and parse it again.
		again := map[string]any{"op": "watch", "id": req.ID, "key_b64": w.Key, "rev": w.Rev,
			"prev_kv": w.PrevKV, "snapshot": w.Snapshot}
		if w.End != nil {
			again["range_end_b64"] = w.End
		}
		if w.NoPut {
			again["events"] = []string{"delete"}
		}
		if w.NoDelete {
			again["events"] = []string{"put"}
		}
		b, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := ParseRequest(b, ParseOptions{MaxKeySize: 64})
		if err != nil {
			t.Fatalf("re-encoded request %s: %v", b, err)
		}
		if diff := cmp.Diff(req, req2); diff != "" {
			t.Fatalf("re-encoded request %s (-first +second):\n%s", b, diff)
		}
	})
}
