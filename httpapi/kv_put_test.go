package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

// putResp is the decoded answer of a PUT.
type putResp struct {
	Revision int64   `json:"revision"`
	KV       kvJSON  `json:"kv"`
	PrevKV   *kvJSON `json:"prev_kv"`
}

func TestPut(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())

	resp := s.do(t, req{method: http.MethodPut, path: "/v1/kv/config/a", body: "on"})
	mustStatus(t, resp, http.StatusCreated)
	var created putResp
	decodeJSON(t, resp, &created)
	if diff := cmp.Diff(putResp{Revision: 2, KV: kvJSON{Key: ptr("config/a"), CreateRevision: 2, ModRevision: 2, Version: 1}}, created); diff != "" {
		t.Errorf("create (-want +got)\n%s", diff)
	}
	if resp.header.Get("ETag") != `"2"` || resp.header.Get("X-Revision") != "2" || resp.header.Get("Location") != "/v1/kv/config/a" {
		t.Errorf("headers ETag %q X-Revision %q Location %q", resp.header.Get("ETag"), resp.header.Get("X-Revision"), resp.header.Get("Location"))
	}

	resp = s.do(t, req{method: http.MethodPut, path: "/v1/kv/config/a?prev_kv=true", body: "off"})
	mustStatus(t, resp, http.StatusOK)
	var updated putResp
	decodeJSON(t, resp, &updated)
	want := putResp{Revision: 3, KV: kvJSON{Key: ptr("config/a"), CreateRevision: 2, ModRevision: 3, Version: 2},
		PrevKV: &kvJSON{Key: ptr("config/a"), Value: ptr("on"), CreateRevision: 2, ModRevision: 2, Version: 1}}
	if diff := cmp.Diff(want, updated); diff != "" {
		t.Errorf("update (-want +got)\n%s", diff)
	}
	if strings.Contains(string(resp.body), `"value":"off"`) {
		t.Errorf("the answer echoes the value: %s", resp.body)
	}

	t.Run("binary and empty values", func(t *testing.T) {
		for _, v := range []string{"", "\x00\xff\xfe", strings.Repeat("x", DefaultMaxValueSize)} {
			s.do(t, req{method: http.MethodPut, path: "/v1/kv/bin", body: v})
			got := s.do(t, req{path: "/v1/kv/bin"})
			mustStatus(t, got, http.StatusOK)
			if string(got.body) != v {
				t.Errorf("read back %d bytes, want %d", len(got.body), len(v))
			}
		}
		var j struct{ KV kvJSON }
		s.do(t, req{method: http.MethodPut, path: "/v1/kv/bin", body: "\xff"})
		decodeJSON(t, s.do(t, req{path: "/v1/kv/bin?format=json"}), &j)
		if j.KV.ValueB64 == nil || *j.KV.ValueB64 != "/w==" || j.KV.Value != nil {
			t.Errorf("non-UTF-8 value as %+v, want value_b64 /w==", j.KV)
		}
	})

	t.Run("errors", func(t *testing.T) {
		rev := s.revision()
		for _, tc := range []struct {
			name   string
			r      req
			status int
			slug   string
		}{
			{"empty key", req{method: http.MethodPut, path: "/v1/kv/", body: "x"}, 400, "empty-key"},
			{"key too large", req{method: http.MethodPut, path: "/v1/kv/" + strings.Repeat("k", DefaultMaxKeySize+1), body: "x"}, 413, "key-too-large"},
			{"value too large", req{method: http.MethodPut, path: "/v1/kv/big", body: strings.Repeat("x", DefaultMaxValueSize+1)}, 413, "value-too-large"},
			{"bad prev_kv", req{method: http.MethodPut, path: "/v1/kv/a?prev_kv=please", body: "x"}, 400, "bad-request"},
			{"bad query", req{method: http.MethodPut, path: "/v1/kv/a?prev_kv=%zz", body: "x"}, 400, "bad-request"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				mustProblem(t, s.do(t, tc.r), tc.status, tc.slug)
			})
		}
		if s.revision() != rev {
			t.Errorf("failed writes moved the revision from %d to %d", rev, s.revision())
		}
	})

	t.Run("value too large without Content-Length", func(t *testing.T) {
		// A chunked body is cut off by the reader's limit, not by the header.
		pr, pw := io.Pipe()
		go func() {
			pw.Write([]byte(strings.Repeat("y", DefaultMaxValueSize+10)))
			pw.Close()
		}()
		hr, _ := http.NewRequest(http.MethodPut, s.URL+"/v1/kv/chunked", pr)
		res, err := s.Client().Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		mustProblem(t, response{status: res.StatusCode, header: res.Header, body: b}, 413, "value-too-large")
	})
}

func TestPutConditional(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	rev := s.put(t, "cas", "v1")
	etag := `"` + itoa(rev) + `"`

	for _, tc := range []struct {
		name    string
		key     string
		header  map[string]string
		status  int
		current bool // the 412 carries the current kv
	}{
		{"If-Match current", "cas", map[string]string{"If-Match": etag}, 200, false},
		{"If-Match stale", "cas", map[string]string{"If-Match": etag}, 412, true},
		{"If-Match weak never matches", "cas", map[string]string{"If-Match": `W/"` + itoa(rev+1) + `"`}, 412, true},
		{"If-Match non-revision tag", "cas", map[string]string{"If-Match": `"abc"`}, 412, true},
		{"If-Match * on existing", "cas", map[string]string{"If-Match": "*"}, 200, false},
		{"If-Match * on missing", "nokey", map[string]string{"If-Match": "*"}, 412, false},
		{"If-None-Match * on existing", "cas", map[string]string{"If-None-Match": "*"}, 412, true},
		{"If-None-Match * on missing", "new", map[string]string{"If-None-Match": "*"}, 201, false},
		{"If-None-Match other tag", "cas", map[string]string{"If-None-Match": `"1"`}, 200, false},
		{"If-Match on missing", "nokey", map[string]string{"If-Match": etag}, 412, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.revision()
			resp := s.do(t, req{method: http.MethodPut, path: "/v1/kv/" + tc.key, body: "x", header: tc.header})
			if tc.status != 412 {
				mustStatus(t, resp, tc.status)
				return
			}
			p := mustProblem(t, resp, 412, "precondition-failed")
			if s.revision() != before || resp.header.Get("X-Revision") != itoa(before) || p.Revision != before {
				t.Errorf("412 created a revision: %d -> %d (X-Revision %s, problem %d)", before, s.revision(), resp.header.Get("X-Revision"), p.Revision)
			}
			if (p.KV != nil) != tc.current {
				t.Fatalf("412 kv %s, want present = %v", p.KV, tc.current)
			}
			if tc.current {
				var cur kvJSON
				if err := json.Unmarshal(p.KV, &cur); err != nil {
					t.Fatal(err)
				}
				res, err := s.store.Range(t.Context(), kv.RangeRequest{Key: []byte(tc.key)})
				if err != nil || len(res.KVs) != 1 {
					t.Fatalf("range: %v %v", res, err)
				}
				want := kvJSON{Key: ptr(tc.key), Value: ptr(string(res.KVs[0].Value)), CreateRevision: res.KVs[0].CreateRevision,
					ModRevision: res.KVs[0].ModRevision, Version: res.KVs[0].Version}
				if diff := cmp.Diff(want, cur); diff != "" {
					t.Errorf("412 kv (-want +got)\n%s", diff)
				}
			}
		})
	}

	t.Run("malformed conditions", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"If-Match": "5"},
			{"If-Match": `"5`},
			{"If-Match": `"1", "2"`},
			{"If-Match": `*, "1"`},
			{"If-None-Match": `W/`},
			{"If-Match": `"1" "2"`},
			{"If-Match": ","},
		} {
			mustProblem(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/cas", body: "x", header: h}), 400, "bad-request")
		}
	})
}
