package httpapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGetOne(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	rev1 := s.put(t, "hello", "world")
	rev2 := s.put(t, "hello", "there")

	t.Run("raw value and metadata headers", func(t *testing.T) {
		resp := s.do(t, req{path: "/v1/kv/hello"})
		mustStatus(t, resp, http.StatusOK)
		got := map[string]string{
			"body":              string(resp.body),
			"Content-Type":      resp.header.Get("Content-Type"),
			"ETag":              resp.header.Get("ETag"),
			"X-Create-Revision": resp.header.Get("X-Create-Revision"),
			"X-Mod-Revision":    resp.header.Get("X-Mod-Revision"),
			"X-Version":         resp.header.Get("X-Version"),
			"X-Revision":        resp.header.Get("X-Revision"),
		}
		want := map[string]string{
			"body":              "there",
			"Content-Type":      "application/octet-stream",
			"ETag":              `"` + itoa(rev2) + `"`,
			"X-Create-Revision": itoa(rev1),
			"X-Mod-Revision":    itoa(rev2),
			"X-Version":         "2",
			"X-Revision":        itoa(rev2),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	})

	for _, tc := range []struct {
		name string
		r    req
	}{
		{"format=json", req{path: "/v1/kv/hello?format=json"}},
		{"Accept: application/json", req{path: "/v1/kv/hello", header: map[string]string{"Accept": "text/html, application/json;q=0.9"}}},
		{"over HTTP/2", req{path: "/v1/kv/hello?format=json", h2: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(t, tc.r)
			mustStatus(t, resp, http.StatusOK)
			var got struct {
				Revision int64  `json:"revision"`
				KV       kvJSON `json:"kv"`
			}
			decodeJSON(t, resp, &got)
			want := got
			want.Revision = rev2
			want.KV = kvJSON{Key: ptr("hello"), Value: ptr("there"), CreateRevision: rev1, ModRevision: rev2, Version: 2}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
			if tc.r.h2 && resp.proto != "HTTP/2.0" {
				t.Errorf("proto %s, want HTTP/2.0", resp.proto)
			}
		})
	}

	t.Run("Accept with q=0 for json stays raw", func(t *testing.T) {
		resp := s.do(t, req{path: "/v1/kv/hello", header: map[string]string{"Accept": "application/json;q=0, */*"}})
		mustStatus(t, resp, http.StatusOK)
		if string(resp.body) != "there" {
			t.Errorf("body %q, want the raw value", resp.body)
		}
	})

	t.Run("rev=R reads the past and shows R", func(t *testing.T) {
		resp := s.do(t, req{path: "/v1/kv/hello?rev=" + itoa(rev1)})
		mustStatus(t, resp, http.StatusOK)
		if string(resp.body) != "world" || resp.header.Get("X-Revision") != itoa(rev1) {
			t.Errorf("body %q X-Revision %s, want world at %d", resp.body, resp.header.Get("X-Revision"), rev1)
		}
		resp = s.do(t, req{path: "/v1/kv/hello?rev=1"})
		p := mustProblem(t, resp, http.StatusNotFound, "key-not-found")
		if resp.header.Get("X-Revision") != "1" || !strings.Contains(p.Detail, "revision 1") {
			t.Errorf("X-Revision %s detail %q: want the read's revision 1", resp.header.Get("X-Revision"), p.Detail)
		}
	})

	t.Run("future rev", func(t *testing.T) {
		p := mustProblem(t, s.do(t, req{path: "/v1/kv/hello?rev=" + itoa(rev2+1)}), http.StatusBadRequest, "future-revision")
		if p.Revision != rev2 || p.CompactRevision != 1 {
			t.Errorf("problem revision %d compact %d, want %d and 1", p.Revision, p.CompactRevision, rev2)
		}
	})

	t.Run("If-None-Match", func(t *testing.T) {
		etag := `"` + itoa(rev2) + `"`
		for _, tc := range []struct {
			inm  string
			want int
		}{
			{etag, http.StatusNotModified},
			{"W/" + etag, http.StatusNotModified},
			{`"1", ` + etag, http.StatusNotModified},
			{"*", http.StatusNotModified},
			{`"` + itoa(rev1) + `"`, http.StatusOK},
			{`"abc"`, http.StatusOK},
		} {
			resp := s.do(t, req{path: "/v1/kv/hello", header: map[string]string{"If-None-Match": tc.inm}})
			if resp.status != tc.want {
				t.Errorf("If-None-Match %s: status %d, want %d", tc.inm, resp.status, tc.want)
			}
			if tc.want == http.StatusNotModified && (len(resp.body) != 0 || resp.header.Get("ETag") != etag) {
				t.Errorf("304: body %q ETag %q", resp.body, resp.header.Get("ETag"))
			}
		}
		mustProblem(t, s.do(t, req{path: "/v1/kv/hello", header: map[string]string{"If-None-Match": "abc"}}),
			http.StatusBadRequest, "bad-request")
	})

	t.Run("HEAD", func(t *testing.T) {
		resp := s.do(t, req{method: http.MethodHead, path: "/v1/kv/hello"})
		mustStatus(t, resp, http.StatusOK)
		if len(resp.body) != 0 || resp.header.Get("Content-Length") != "5" || resp.header.Get("ETag") == "" {
			t.Errorf("HEAD: body %q Content-Length %q ETag %q", resp.body, resp.header.Get("Content-Length"), resp.header.Get("ETag"))
		}
		mustStatus(t, s.do(t, req{method: http.MethodHead, path: "/v1/kv/nothing"}), http.StatusNotFound)
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			status int
			slug   string
		}{
			{"/v1/kv/missing", http.StatusNotFound, "key-not-found"},
			{"/v1/kv/", http.StatusBadRequest, "bad-request"},
			{"/v1/kv/hello?rev=-1", http.StatusBadRequest, "bad-request"},
			{"/v1/kv/hello?rev=x", http.StatusBadRequest, "bad-request"},
			{"/v1/kv/hello?format=xml", http.StatusBadRequest, "bad-request"},
			{"/v1/kv/hello?prefix=maybe", http.StatusBadRequest, "bad-request"},
			{"/v1/kv/" + strings.Repeat("k", DefaultMaxKeySize+1), http.StatusRequestEntityTooLarge, "request-too-large"},
			{"/v1/kv/a?range_end=" + strings.Repeat("k", DefaultMaxKeySize+1), http.StatusRequestEntityTooLarge, "request-too-large"},
		} {
			mustProblem(t, s.do(t, req{path: tc.path}), tc.status, tc.slug)
		}
	})
}

// TestKeysInURLs checks that the key is the whole rest of the path,
// percent-decoded: any byte can be sent and a literal slash is part of it.
func TestKeysInURLs(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	for _, tc := range []struct {
		name    string
		path    string // escaped, after /v1/kv/
		key     string
		wantB64 string // key_b64 for keys that are not UTF-8
	}{
		{"literal slash", "a/b/c", "a/b/c", ""},
		{"escaped slash", "a%2Fb", "a/b", ""},
		{"NUL byte", "a%00b", "a\x00b", ""},
		{"invalid UTF-8", "%FF%FE", "\xff\xfe", "//4="},
		{"space and percent", "a%20b%25c", "a b%c", ""},
		{"plus stays plus", "a+b", "a+b", ""},
		{"query char", "what%3Fx", "what?x", ""},
		{"unicode", "%C3%BC", "ü", ""},
		{"dot segments kept", "a/../b", "a/../b", ""},
		{"double slash kept", "x//y", "x//y", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(t, req{method: http.MethodPut, path: "/v1/kv/" + tc.path, body: "v-" + tc.name})
			mustStatus(t, resp, http.StatusCreated)
			var put struct {
				KV kvJSON `json:"kv"`
			}
			decodeJSON(t, resp, &put)
			if tc.wantB64 != "" {
				if put.KV.KeyB64 == nil || *put.KV.KeyB64 != tc.wantB64 || put.KV.Key != nil {
					t.Errorf("kv %+v, want key_b64 %s", put.KV, tc.wantB64)
				}
			} else if put.KV.Key == nil || *put.KV.Key != tc.key {
				t.Errorf("kv key %v, want %q", put.KV.Key, tc.key)
			}
			if want := "/v1/kv/" + escapeKey([]byte(tc.key)); resp.header.Get("Location") != want {
				t.Errorf("Location %q, want %q", resp.header.Get("Location"), want)
			}
			// Read back through the canonical escaping of the key.
			got := s.do(t, req{path: "/v1/kv/" + escapeKey([]byte(tc.key))})
			mustStatus(t, got, http.StatusOK)
			if string(got.body) != "v-"+tc.name {
				t.Errorf("read back %q", got.body)
			}
		})
	}
	t.Run("bad escape", func(t *testing.T) {
		// Go's client refuses to send a malformed escape, so the parser is
		// checked directly; the server's own request parsing rejects such
		// a request line before routing.
		if _, err := keyFromPath("/v1/kv/a%zz", kvPathPrefix); StatusOf(err) != http.StatusBadRequest {
			t.Errorf("keyFromPath(a%%zz) = %v, want a 400 error", err)
		}
	})
}

// rangeResp is the decoded answer of a range read.
type rangeResp struct {
	Revision int64    `json:"revision"`
	KVs      []kvJSON `json:"kvs"`
	Count    int64    `json:"count"`
	More     bool     `json:"more"`
	Continue string   `json:"continue"`
}

func keysOf(kvs []kvJSON) []string {
	var keys []string
	for _, kv := range kvs {
		switch {
		case kv.Key != nil:
			keys = append(keys, *kv.Key)
		case kv.KeyB64 != nil:
			keys = append(keys, "b64:"+*kv.KeyB64)
		}
	}
	return keys
}

func TestGetRange(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	for _, k := range []string{"b/2", "a", "b/1", "b/3", "c", "b0", "b/%FF"} {
		s.put(t, k, "v"+k)
	}
	rev := s.revision()

	for _, tc := range []struct {
		name     string
		path     string
		keys     []string
		count    int64
		more     bool
		keysOnly bool
		noKVs    bool
	}{
		{"prefix", "/v1/kv/b/?prefix=true", []string{"b/1", "b/2", "b/3", "b64:Yi//"}, 4, false, false, false},
		{"everything", "/v1/kv/?prefix=true", []string{"a", "b/1", "b/2", "b/3", "b64:Yi//", "b0", "c"}, 7, false, false, false},
		{"range_end", "/v1/kv/b/1?range_end=b/3", []string{"b/1", "b/2"}, 2, false, false, false},
		{"range_end NUL means to the end", "/v1/kv/b0?range_end=%00", []string{"b0", "c"}, 2, false, false, false},
		{"range below the first key", "/v1/kv/?range_end=b", []string{"a"}, 1, false, false, false},
		{"limit", "/v1/kv/b/?prefix=true&limit=2", []string{"b/1", "b/2"}, 4, true, false, false},
		{"keys_only", "/v1/kv/b/?prefix=true&keys_only=true", []string{"b/1", "b/2", "b/3", "b64:Yi//"}, 4, false, true, false},
		{"count_only", "/v1/kv/b/?prefix=true&count_only=true", nil, 4, false, false, true},
		{"empty range", "/v1/kv/zzz?prefix=true", nil, 0, false, false, false},
		{"prefix without value", "/v1/kv/b/?prefix", []string{"b/1", "b/2", "b/3", "b64:Yi//"}, 4, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.do(t, req{path: tc.path})
			mustStatus(t, resp, http.StatusOK)
			if ct := resp.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got rangeResp
			decodeJSON(t, resp, &got)
			gotKeys := keysOf(got.KVs)
			if diff := cmp.Diff(tc.keys, gotKeys); diff != "" {
				t.Errorf("keys (-want +got)\n%s", diff)
			}
			if got.Revision != rev || got.Count != tc.count || got.More != tc.more || (got.Continue != "") != tc.more {
				t.Errorf("revision %d count %d more %v continue %q; want %d %d %v", got.Revision, got.Count, got.More, got.Continue, rev, tc.count, tc.more)
			}
			for _, kv := range got.KVs {
				if (kv.Value == nil && kv.ValueB64 == nil) != tc.keysOnly {
					t.Errorf("kv %+v: value present = %v, want %v", kv, kv.Value != nil, !tc.keysOnly)
				}
			}
			if tc.noKVs && strings.Contains(string(resp.body), `"kvs"`) {
				t.Errorf("count_only answer has kvs: %s", resp.body)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			path string
			slug string
		}{
			{"/v1/kv/b?prefix=true&range_end=c", "bad-request"},
			{"/v1/kv/b?prefix=true&limit=0", "bad-request"},
			{"/v1/kv/b?prefix=true&limit=10001", "bad-request"},
			{"/v1/kv/b?prefix=true&limit=ten", "bad-request"},
			{"/v1/kv/b?prefix=true&keys_only=yes", "bad-request"},
			{"/v1/kv/b?prefix=true&continue=%%%", "bad-request"},
			{"/v1/kv/b?prefix=true&continue=bm90IGEgdG9rZW4", "bad-request"},
			{"/v1/kv/b?prefix=true&rev=" + itoa(rev+5), "future-revision"},
		} {
			mustProblem(t, s.do(t, req{path: tc.path}), http.StatusBadRequest, tc.slug)
		}
	})
}

// TestPagination checks that continue tokens walk a range at the revision
// of the first page even while the range changes, and that a token whose
// revision was compacted gets 410.
func TestPagination(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	var want []string
	for i := 0; i < 25; i++ {
		k := "p/" + string(rune('a'+i))
		s.put(t, k, "v")
		want = append(want, k)
	}
	first := s.do(t, req{path: "/v1/kv/p/?prefix=true&limit=10&keys_only=true"})
	mustStatus(t, first, http.StatusOK)
	var page rangeResp
	decodeJSON(t, first, &page)
	rev := page.Revision
	got := keysOf(page.KVs)

	// Changes after the first page must not show in the later ones.
	s.put(t, "p/0", "new")
	s.put(t, "p/zz", "new")
	s.do(t, req{method: http.MethodDelete, path: "/v1/kv/p/b"})

	pages := 1
	for page.More {
		resp := s.do(t, req{path: "/v1/kv/p/?prefix=true&limit=10&keys_only=true&continue=" + page.Continue})
		mustStatus(t, resp, http.StatusOK)
		page = rangeResp{}
		decodeJSON(t, resp, &page)
		if page.Revision != rev || resp.header.Get("X-Revision") != itoa(rev) {
			t.Fatalf("page %d at revision %d (X-Revision %s), want the first page's %d", pages, page.Revision, resp.header.Get("X-Revision"), rev)
		}
		got = append(got, keysOf(page.KVs)...)
		pages++
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if diff := cmp.Diff(want, got); diff != "" || pages != 3 {
		t.Errorf("%d pages, keys (-want +got)\n%s", pages, diff)
	}

	t.Run("token from another range", func(t *testing.T) {
		first := s.do(t, req{path: "/v1/kv/p/?prefix=true&limit=2"})
		var pg rangeResp
		decodeJSON(t, first, &pg)
		mustProblem(t, s.do(t, req{path: "/v1/kv/q/?prefix=true&continue=" + pg.Continue}), http.StatusBadRequest, "bad-request")
		mustProblem(t, s.do(t, req{path: "/v1/kv/p/?prefix=true&rev=2&continue=" + pg.Continue}), http.StatusBadRequest, "bad-request")
	})

	t.Run("compacted token", func(t *testing.T) {
		first := s.do(t, req{path: "/v1/kv/p/?prefix=true&limit=2"})
		var pg rangeResp
		decodeJSON(t, first, &pg)
		s.put(t, "p/after", "x")
		mustStatus(t, s.do(t, req{method: http.MethodPost, path: "/v1/compact", body: `{"revision":` + itoa(s.revision()) + `}`}), http.StatusOK)
		p := mustProblem(t, s.do(t, req{path: "/v1/kv/p/?prefix=true&continue=" + pg.Continue}), http.StatusGone, "compacted")
		if p.CompactRevision != s.revision() {
			t.Errorf("compact_revision %d, want %d", p.CompactRevision, s.revision())
		}
	})
}
