package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/h2srv"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// testServer is the real API on a loopback port, over a real store in a
// temporary directory, serving HTTP/1.1 and cleartext HTTP/2.
type testServer struct {
	*httptest.Server
	store *kv.Store
	api   *Server
	logs  *syncBuffer
	// h2 is a client that speaks cleartext HTTP/2 (prior knowledge).
	h2 *http.Client
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newTestServer starts the API for a new store. kvOpts configures the
// store; the API's limits follow the store's. The store's consistency is
// checked when the test ends.
func newTestServer(tb testing.TB, opts Options, kvOpts kv.Options) *testServer {
	tb.Helper()
	return newTestServerIn(tb, tb.TempDir(), opts, kvOpts)
}

// newTestServerIn is newTestServer over the store in dir.
func newTestServerIn(tb testing.TB, dir string, opts Options, kvOpts kv.Options) *testServer {
	tb.Helper()
	kvOpts.MaxKeySize, kvOpts.MaxValueSize, kvOpts.MaxTxnOps = opts.MaxKeySize, opts.MaxValueSize, opts.MaxTxnOps
	st, err := kv.Open(dir, kvOpts)
	if err != nil {
		tb.Fatalf("kv.Open: %v", err)
	}
	logs := &syncBuffer{}
	if opts.Logger == nil {
		l := zerolog.New(logs)
		opts.Logger = &l
	}
	if opts.TempDir == "" {
		opts.TempDir = tb.TempDir()
	}
	if opts.Hub == nil {
		hub, err := watchhub.New(st, watchhub.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		opts.Hub = hub
	}
	api, err := New(st, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ts := httptest.NewUnstartedServer(api)
	ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 4096}
	if opts.Metrics != nil {
		ts.Config.HTTP2.CountError = opts.Metrics.CountHTTP2Error
	}
	ts.Config.RegisterOnShutdown(api.Shutdown)
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Config.ReadHeaderTimeout = 10 * time.Second
	// HTTP/2 as the server binary serves it: by h2srv.
	h2 := h2srv.New(nil, h2srv.Options{})
	ts.Config.TLSNextProto = h2.TLSNextProto()
	ts.Start()
	api.SetReady(true)
	h2t := &http.Transport{Protocols: new(http.Protocols)}
	h2t.Protocols.SetUnencryptedHTTP2(true)
	s := &testServer{Server: ts, store: st, api: api, logs: logs, h2: &http.Client{Transport: h2t}}
	tb.Cleanup(func() {
		api.Shutdown()
		ts.Close()
		if err := h2.Close(); err != nil {
			tb.Errorf("h2srv close: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := api.WaitStreams(ctx); err != nil {
			tb.Errorf("WaitStreams: %v", err)
		}
		if opts.Hub != nil {
			opts.Hub.Close()
		}
		h2t.CloseIdleConnections()
		if err := st.Check(); err != nil {
			tb.Errorf("store check: %v", err)
		}
		if err := st.Close(); err != nil {
			tb.Errorf("store close: %v", err)
		}
	})
	return s
}

// response is a finished exchange.
type response struct {
	status int
	header http.Header
	body   []byte
	proto  string
}

// problem is a decoded problem+json body.
type problem struct {
	Type            string          `json:"type"`
	Title           string          `json:"title"`
	Status          int             `json:"status"`
	Detail          string          `json:"detail"`
	RequestID       string          `json:"request_id"`
	Revision        int64           `json:"revision"`
	CompactRevision int64           `json:"compact_revision"`
	KV              json.RawMessage `json:"kv"`
}

// req describes one request of a test. path is sent as written (escaped).
type req struct {
	method string
	path   string
	body   string
	header map[string]string
	// h2 sends it over cleartext HTTP/2 instead of HTTP/1.1.
	h2 bool
}

// do sends r to the server, checks the revision headers that every
// response carries, and validates the exchange against openapi.yaml.
func (s *testServer) do(tb testing.TB, r req) response {
	tb.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" || r.method == http.MethodPut || r.method == http.MethodPost {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, s.URL+r.path, body)
	if err != nil {
		tb.Fatalf("new request %s %s: %v", r.method, r.path, err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/octet-stream")
		if r.method == http.MethodPost {
			hr.Header.Set("Content-Type", "application/json")
		}
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	client := s.Client()
	if r.h2 {
		client = s.h2
	}
	resp, err := client.Do(hr)
	if err != nil {
		tb.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading body: %v", r.method, r.path, err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, body: b, proto: resp.Proto}
	checkRevisionHeaders(tb, r, out)
	validateExchange(tb, hr, []byte(r.body), out)
	return out
}

// checkRevisionHeaders checks that a response carries X-Revision and
// X-Compact-Revision, both revisions (>= 1), compact <= revision for
// responses that show the current state.
func checkRevisionHeaders(tb testing.TB, r req, resp response) {
	tb.Helper()
	rev, err1 := strconv.ParseInt(resp.header.Get("X-Revision"), 10, 64)
	compact, err2 := strconv.ParseInt(resp.header.Get("X-Compact-Revision"), 10, 64)
	if err1 != nil || err2 != nil || rev < 1 || compact < 1 {
		tb.Errorf("%s %s -> %d: X-Revision %q, X-Compact-Revision %q: want both revisions",
			r.method, r.path, resp.status, resp.header.Get("X-Revision"), resp.header.Get("X-Compact-Revision"))
	}
	if resp.header.Get("X-Request-Id") == "" {
		tb.Errorf("%s %s -> %d: no X-Request-Id", r.method, r.path, resp.status)
	}
}

// mustStatus fails the test unless resp has the status want.
func mustStatus(tb testing.TB, resp response, want int) {
	tb.Helper()
	if resp.status != want {
		tb.Fatalf("status %d, want %d; body %s", resp.status, want, resp.body)
	}
}

// decodeJSON decodes a response body into v, failing the test on error.
func decodeJSON(tb testing.TB, resp response, v any) {
	tb.Helper()
	if err := json.Unmarshal(resp.body, v); err != nil {
		tb.Fatalf("decoding %s: %v", resp.body, err)
	}
}

// mustProblem checks that resp is a problem+json of status and slug and
// returns it decoded.
func mustProblem(tb testing.TB, resp response, status int, slug string) problem {
	tb.Helper()
	if resp.status != status {
		tb.Fatalf("status %d, want %d; body %s", resp.status, status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p problem
	decodeJSON(tb, resp, &p)
	if p.Status != status || p.Type != ProblemTypePrefix+slug || p.Title == "" || p.Detail == "" {
		tb.Fatalf("problem %+v, want status %d type %s with title and detail", p, status, ProblemTypePrefix+slug)
	}
	if p.RequestID != resp.header.Get("X-Request-Id") {
		tb.Errorf("problem request_id %q, header %q", p.RequestID, resp.header.Get("X-Request-Id"))
	}
	return p
}

// put writes key (escaped path form) = value and returns the new revision.
func (s *testServer) put(tb testing.TB, key, value string) int64 {
	tb.Helper()
	// As the tests' admin token: ignored by a server without access
	// control.
	resp := s.do(tb, req{method: http.MethodPut, path: "/v1/kv/" + key, body: value, header: bearer(tokAdmin.token)})
	if resp.status != http.StatusOK && resp.status != http.StatusCreated {
		tb.Fatalf("PUT %s: status %d: %s", key, resp.status, resp.body)
	}
	var out struct {
		Revision int64 `json:"revision"`
	}
	decodeJSON(tb, resp, &out)
	return out.Revision
}

// revision returns the store's current revision.
func (s *testServer) revision() int64 {
	rev, _ := s.store.Revisions()
	return rev
}

// kvJSON is the decoded JSON shape of a kv in tests.
type kvJSON struct {
	Key            *string `json:"key,omitempty"`
	KeyB64         *string `json:"key_b64,omitempty"`
	Value          *string `json:"value,omitempty"`
	ValueB64       *string `json:"value_b64,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
}

func ptr[T any](v T) *T { return &v }

// kvOptionsForTest is the store configuration of the tests: the defaults,
// fsync included, as the server runs.
func kvOptionsForTest() kv.Options { return kv.Options{} }
