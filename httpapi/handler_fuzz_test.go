package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/kv"
)

// FuzzHandler sends arbitrary requests (method, path, query, conditional
// headers, body) to the real handler over a real store and checks that
// none panics or gets a 5xx, and that every error is a problem+json whose
// status matches the response's.
func FuzzHandler(f *testing.F) {
	st, err := kv.Open(f.TempDir(), kv.Options{NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		if err := st.Check(); err != nil {
			f.Errorf("store check: %v", err)
		}
		st.Close()
	})
	log := zerolog.New(io.Discard)
	// No hub: a watch would stream until its client goes away.
	api, err := New(st, Options{Logger: &log, TempDir: f.TempDir(), MaxKeySize: 64, MaxValueSize: 256, MaxTxnOps: 8})
	if err != nil {
		f.Fatal(err)
	}
	api.SetReady(true)
	methods := []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPost, http.MethodPatch}

	for _, seed := range []struct {
		method         uint8
		target         string
		ifMatch, accpt string
		body           []byte
	}{
		{2, "/v1/kv/a", "", "", []byte("v")},
		{0, "/v1/kv/a?format=json&rev=2", "", "application/json", nil},
		{0, "/v1/kv/?prefix=true&limit=2&keys_only=1&continue=AQIA", "", "", nil},
		{3, "/v1/kv/a%2Fb?prev_kv=true", `"2"`, "", nil},
		{2, "/v1/kv/a", `*`, "", []byte("w")},
		{4, "/v1/txn", "", "", []byte(`{"compare":[{"key":"a","target":"mod","op":"=","value":2}],"success":[{"put":{"key":"a","value":"1"}}]}`)},
		{4, "/v1/compact", "", "", []byte(`{"revision":2}`)},
		{0, "/v1/status", "", "", nil},
		{5, "/v1/kv/a", "", "", nil},
	} {
		f.Add(seed.method, seed.target, seed.ifMatch, seed.accpt, seed.body)
	}
	f.Fuzz(func(t *testing.T, m uint8, target, ifMatch, accept string, body []byte) {
		if strings.HasPrefix(target, "/v1/snapshot") {
			return // copies the whole store; not a parser
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return // the server rejects such a request line before any handler
		}
		r := &http.Request{
			Method:        methods[int(m)%len(methods)],
			URL:           u,
			RequestURI:    target,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        http.Header{},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
			Host:          "example.test",
		}
		if ifMatch != "" {
			r.Header.Set("If-Match", ifMatch)
			r.Header.Set("If-None-Match", ifMatch)
		}
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %q answered %d: %s", r.Method, target, w.Code, w.Body.Bytes())
		}
		if w.Header().Get("X-Revision") == "" || w.Header().Get("X-Compact-Revision") == "" {
			t.Fatalf("%s %q: no revision headers", r.Method, target)
		}
		if w.Code >= 400 && r.Method != http.MethodHead {
			var p problem
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s %q: %d as %q", r.Method, target, w.Code, ct)
			}
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != w.Code || p.Detail == "" {
				t.Fatalf("%s %q: problem %s (%v)", r.Method, target, w.Body.Bytes(), err)
			}
		}
	})
}
