package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

func TestHealthAndReadiness(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	resp := s.do(t, req{path: "/healthz"})
	mustStatus(t, resp, http.StatusOK)
	if string(resp.body) != "{\"status\":\"ok\"}\n" {
		t.Errorf("healthz body %q", resp.body)
	}
	mustStatus(t, s.do(t, req{path: "/readyz"}), http.StatusOK)
	s.api.SetReady(false)
	mustProblem(t, s.do(t, req{path: "/readyz"}), http.StatusServiceUnavailable, "not-ready")
	mustStatus(t, s.do(t, req{path: "/healthz"}), http.StatusOK)
	s.api.SetReady(true)
	mustStatus(t, s.do(t, req{path: "/readyz"}), http.StatusOK)
}

func TestOpenAPIDocument(t *testing.T) {
	doc := mustReadFile(t, specPath)
	s := newTestServer(t, Options{OpenAPI: doc}, kvOptionsForTest())
	resp := s.do(t, req{path: "/openapi.yaml"})
	mustStatus(t, resp, http.StatusOK)
	if string(resp.body) != string(doc) || resp.header.Get("Content-Type") != "application/yaml" {
		t.Errorf("served %d bytes as %q, want the document as application/yaml", len(resp.body), resp.header.Get("Content-Type"))
	}
	bare := newTestServer(t, Options{}, kvOptionsForTest())
	mustProblem(t, bare.do(t, req{path: "/openapi.yaml"}), http.StatusNotFound, "not-found")
}

func TestRoutingErrors(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	for _, tc := range []struct {
		r      req
		status int
		slug   string
		allow  string
	}{
		{req{path: "/nowhere/"}, 404, "not-found", ""},
		{req{path: "/v1/nothing"}, 404, "not-found", ""},
		{req{path: "/v1/kv"}, 404, "not-found", ""},
		{req{method: http.MethodPost, path: "/v1/kv/a", body: "x"}, 405, "method-not-allowed", "GET, HEAD, PUT, DELETE"},
		{req{method: http.MethodGet, path: "/v1/txn"}, 405, "method-not-allowed", "POST"},
		{req{method: http.MethodDelete, path: "/v1/status"}, 405, "method-not-allowed", "GET"},
		{req{path: "/nowhere", h2: true}, 404, "not-found", ""},
	} {
		t.Run(tc.r.method+" "+tc.r.path, func(t *testing.T) {
			resp := s.do(t, tc.r)
			mustProblem(t, resp, tc.status, tc.slug)
			if got := resp.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

// TestRevisionHeadersEverywhere checks X-Revision and X-Compact-Revision on
// a response of every kind, errors included: do() checks that both are
// present; this test checks their values.
func TestRevisionHeadersEverywhere(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	s.put(t, "a", "1")
	s.put(t, "a", "2")
	s.put(t, "b", "1")
	mustStatus(t, s.do(t, req{method: http.MethodPost, path: "/v1/compact", body: `{"revision":3}`}), http.StatusOK)
	cur := itoa(s.revision())
	for _, tc := range []struct {
		r   req
		rev string
	}{
		{req{path: "/v1/kv/a"}, cur},
		{req{path: "/v1/kv/a?rev=3"}, "3"},
		{req{path: "/v1/kv/?prefix=true&rev=3"}, "3"},
		{req{path: "/v1/kv/missing"}, cur},
		{req{path: "/v1/kv/a?rev=2"}, cur},
		{req{path: "/v1/kv/a?rev=99"}, cur},
		{req{path: "/v1/kv/"}, cur},
		{req{path: "/nowhere"}, cur},
		{req{method: http.MethodPatch, path: "/v1/kv/a"}, cur},
		{req{path: "/healthz"}, cur},
		{req{path: "/readyz"}, cur},
		{req{path: "/v1/status"}, cur},
		{req{path: "/v1/snapshot"}, cur},
		{req{method: http.MethodPost, path: "/v1/txn", body: `{`}, cur},
		{req{method: http.MethodPost, path: "/v1/compact", body: `{"revision":2}`}, cur},
		{req{method: http.MethodPut, path: "/v1/kv/c", body: "x"}, itoa(s.revision() + 1)},
	} {
		resp := s.do(t, tc.r)
		if got, gotC := resp.header.Get("X-Revision"), resp.header.Get("X-Compact-Revision"); got != tc.rev || gotC != "3" {
			t.Errorf("%s %s -> %d: X-Revision %s X-Compact-Revision %s, want %s and 3", tc.r.method, tc.r.path, resp.status, got, gotC, tc.rev)
		}
	}
}

func TestRequestIDAndAccessLog(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	resp := s.do(t, req{path: "/v1/kv/missing?token=secret", header: map[string]string{"X-Request-Id": "client-id-1"}})
	if resp.header.Get("X-Request-Id") != "client-id-1" {
		t.Errorf("X-Request-Id %q, want the client's", resp.header.Get("X-Request-Id"))
	}
	p := mustProblem(t, resp, http.StatusNotFound, "key-not-found")
	if p.RequestID != "client-id-1" {
		t.Errorf("problem request_id %q", p.RequestID)
	}
	// An id that is not short printable ASCII is replaced.
	resp = s.do(t, req{path: "/healthz", header: map[string]string{"X-Request-Id": strings.Repeat("x", 200)}})
	if id := resp.header.Get("X-Request-Id"); len(id) != 24 {
		t.Errorf("X-Request-Id %q, want a new 24-hex id", id)
	}

	type line struct {
		Level     string  `json:"level"`
		Message   string  `json:"message"`
		Method    string  `json:"method"`
		Path      string  `json:"path"`
		Status    int     `json:"status"`
		Bytes     int64   `json:"bytes"`
		Duration  float64 `json:"duration"`
		RequestID string  `json:"request_id"`
	}
	var found bool
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if l.RequestID == "client-id-1" && l.Message == "request" {
			found = true
			want := line{Level: "info", Message: "request", Method: "GET", Path: "/v1/kv/missing", Status: 404,
				Bytes: int64(len(mustMarshalProblemLen(t, s, "client-id-1"))), Duration: l.Duration, RequestID: "client-id-1"}
			if diff := cmp.Diff(want, l); diff != "" {
				t.Errorf("access log (-want +got)\n%s", diff)
			}
		}
	}
	if !found {
		t.Errorf("no access log line for the request in:\n%s", s.logs.String())
	}
	if strings.Contains(s.logs.String(), "secret") {
		t.Errorf("the log shows the query string:\n%s", s.logs.String())
	}
}

// mustMarshalProblemLen fetches the same 404 again to learn its length.
func mustMarshalProblemLen(t *testing.T, s *testServer, id string) []byte {
	t.Helper()
	return s.do(t, req{path: "/v1/kv/missing", header: map[string]string{"X-Request-Id": id}}).body
}

func TestRecoverer(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	// The API's own middleware chain around a handler that panics.
	panicky := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/late") {
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		panic("boom")
	})
	ts := httptest.NewServer(requestIDMiddleware(s.api.accessLogMiddleware(s.api.recovererMiddleware(panicky))))
	defer ts.Close()
	resp, err := ts.Client().Get(ts.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p := mustProblem(t, response{status: resp.StatusCode, header: resp.Header, body: b}, 500, "internal")
	if p.Detail != "internal error" || strings.Contains(string(b), "boom") {
		t.Errorf("500 shows the cause: %s", b)
	}
	if !strings.Contains(s.logs.String(), `"panic":"boom"`) {
		t.Errorf("the panic was not logged:\n%s", s.logs.String())
	}

	// After the response started, the connection is cut instead.
	resp, err = ts.Client().Get(ts.URL + "/late")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Errorf("a handler that panicked mid-response ended the response cleanly")
	}
	// The server still serves.
	mustStatus(t, s.do(t, req{path: "/healthz"}), http.StatusOK)
}

func TestStatus(t *testing.T) {
	s := newTestServer(t, Options{Version: "v1.2.3"}, kvOptionsForTest())
	s.put(t, "a", "1")
	s.put(t, "b", "1")
	s.do(t, req{method: http.MethodDelete, path: "/v1/kv/a"})
	// Two SSE streams (one over HTTP/2) and one socket with two watches.
	for _, c := range []*http.Client{s.Client(), s.h2} {
		sw := s.openWatch(t, c, "/v1/watch/a?prefix=true", nil)
		defer sw.close()
	}
	sock := s.dialWS(t, nil)
	sock.send(t, `{"op":"watch","id":"w1","key":"a"}`)
	sock.send(t, `{"op":"watch","id":"w2","key":"b","prefix":true,"rev":2}`)
	sock.expect(t, "created", "w1")
	sock.expect(t, "created", "w2")

	resp := s.do(t, req{path: "/v1/status"})
	mustStatus(t, resp, http.StatusOK)
	var got map[string]any
	decodeJSON(t, resp, &got)
	st, _ := s.store.Status()
	// The watch from revision 2 may still be catching up or already synced.
	w := got["watchers"].(map[string]any)
	if w["synced"].(float64)+w["unsynced"].(float64) == 4 && w["victim"] == 0.0 {
		got["watchers"] = "4 synced or unsynced"
	}
	want := map[string]any{
		"revision": 4.0, "compact_revision": 1.0, "keys": 1.0, "db_size_bytes": float64(st.DBSizeBytes),
		"watchers":    "4 synced or unsynced",
		"connections": map[string]any{"sse": 2.0, "ws": 1.0},
		"version":     "v1.2.3",
	}
	if diff := cmp.Diff(want, got); diff != "" || st.DBSizeBytes <= 0 {
		t.Errorf("(-want +got)\n%s", diff)
	}

	bare := newTestServer(t, Options{}, kvOptionsForTest())
	decodeJSON(t, bare.do(t, req{path: "/v1/status"}), &got)
	if got["version"] != "dev" || got["watchers"].(map[string]any)["synced"] != 0.0 || got["connections"].(map[string]any)["ws"] != 0.0 {
		t.Errorf("defaults: %v", got)
	}
}

func TestCompact(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	for i := 0; i < 5; i++ {
		s.put(t, "k", itoa(int64(i))) // revisions 2..6
	}
	resp := s.do(t, req{method: http.MethodPost, path: "/v1/compact", body: `{"revision":4}`})
	mustStatus(t, resp, http.StatusOK)
	if string(resp.body) != "{\"revision\":6,\"compact_revision\":4}\n" || resp.header.Get("X-Compact-Revision") != "4" {
		t.Errorf("compact answer %s, X-Compact-Revision %s", resp.body, resp.header.Get("X-Compact-Revision"))
	}
	p := mustProblem(t, s.do(t, req{path: "/v1/kv/k?rev=3"}), http.StatusGone, "compacted")
	if p.Revision != 6 || p.CompactRevision != 4 {
		t.Errorf("410 revision %d compact %d, want 6 and 4", p.Revision, p.CompactRevision)
	}
	if v := s.do(t, req{path: "/v1/kv/k?rev=4"}); string(v.body) != "2" {
		t.Errorf("read at the compact revision: %q, want 2", v.body)
	}
	for _, tc := range []struct {
		body   string
		status int
		slug   string
	}{
		{`{"revision":4}`, 409, "already-compacted"},
		{`{"revision":3}`, 409, "already-compacted"},
		{`{"revision":7}`, 400, "future-revision"},
		{`{"revision":0}`, 400, "bad-request"},
		{`{"revision":-5}`, 400, "bad-request"},
		{`{}`, 400, "bad-request"},
		{`{"revision":5,"physical":true}`, 400, "bad-request"},
		{`{"revision":"5"}`, 400, "bad-request"},
		{`{"revision":5} x`, 400, "bad-request"},
		{``, 400, "bad-request"},
		{strings.Repeat(" ", 5000), 413, "request-too-large"},
	} {
		mustProblem(t, s.do(t, req{method: http.MethodPost, path: "/v1/compact", body: tc.body}), tc.status, tc.slug)
	}
}

func TestSnapshot(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	s.put(t, "snap/a", "1")
	s.put(t, "snap/%FF", "\x00")
	rev := s.put(t, "snap/a", "2")
	resp := s.do(t, req{path: "/v1/snapshot"})
	mustStatus(t, resp, http.StatusOK)
	if resp.header.Get("Content-Disposition") != `attachment; filename="watchgate.db"` ||
		resp.header.Get("Content-Type") != "application/octet-stream" ||
		resp.header.Get("X-Revision") != itoa(rev) ||
		resp.header.Get("Content-Length") != itoa(int64(len(resp.body))) {
		t.Errorf("headers %v", resp.header)
	}
	s.put(t, "snap/after", "x")

	// Starting a store on the file restores the state it holds.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "watchgate.db"), resp.body, 0o600); err != nil {
		t.Fatal(err)
	}
	restored := newTestServerIn(t, dir, Options{}, kvOptionsForTest())
	var all rangeResp
	decodeJSON(t, restored.do(t, req{path: "/v1/kv/snap/?prefix=true"}), &all)
	want := rangeResp{Revision: rev, Count: 2, KVs: []kvJSON{
		{Key: ptr("snap/a"), Value: ptr("2"), CreateRevision: 2, ModRevision: 4, Version: 2},
		{KeyB64: ptr("c25hcC//"), Value: ptr("\x00"), CreateRevision: 3, ModRevision: 3, Version: 1},
	}}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("restored (-want +got)\n%s", diff)
	}
	// The staging file is gone.
	entries, _ := os.ReadDir(s.api.opts.TempDir)
	if len(entries) != 0 {
		t.Errorf("snapshot left %d files in the temp dir", len(entries))
	}
	// A staging directory that cannot be written is a logged 500.
	broken := newTestServer(t, Options{TempDir: filepath.Join(dir, "missing")}, kvOptionsForTest())
	mustProblem(t, broken.do(t, req{path: "/v1/snapshot"}), 500, "internal")
}

func TestErrorTable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{kv.ErrCompacted, 410},
		{kv.ErrFutureRev, 400},
		{kv.ErrAlreadyCompacted, 409},
		{kv.ErrKeyNotFound, 404},
		{kv.ErrEmptyKey, 400},
		{kv.ErrKeyTooLarge, 413},
		{kv.ErrValueTooLarge, 413},
		{kv.ErrTooManyOps, 413},
		{kv.ErrInvalidCompare, 400},
		{kv.ErrClosed, 503},
		{badRequest("x"), 400},
		{tooLarge("x"), 413},
		{&preconditionError{}, 412},
		{errors.New("disk on fire"), 500},
		{errBrokenTxnResponse, 500},
	} {
		if got := StatusOf(tc.err); got != tc.want {
			t.Errorf("StatusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestAccessLogStream checks that a watch stream's access log line is
// written when the stream ends, with its whole duration, over HTTP/1.1
// and over HTTP/2, where the stream is detached from its handler.
func TestAccessLogStream(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	for _, tc := range []struct {
		name   string
		client *http.Client
	}{{"HTTP/1.1", s.Client()}, {"HTTP/2", s.h2}} {
		t.Run(tc.name, func(t *testing.T) {
			id := "stream-" + strings.ReplaceAll(tc.name, "/", "")
			w := s.openWatch(t, tc.client, "/v1/watch/logged", map[string]string{"X-Request-Id": id})
			s.do(t, req{method: http.MethodPut, path: "/v1/kv/logged", body: "v"})
			if ev := w.next(t); ev.Type != "put" {
				t.Fatalf("got %+v", ev)
			}
			const open = 300 * time.Millisecond
			time.Sleep(open)
			if line := accessLine(t, s, id); line != nil {
				t.Fatalf("access log line while the stream is open: %+v", line)
			}
			w.close()
			deadline := time.Now().Add(10 * time.Second)
			var line map[string]any
			for line == nil {
				if time.Now().After(deadline) {
					t.Fatalf("no access log line after the stream ended:\n%s", s.logs.String())
				}
				time.Sleep(10 * time.Millisecond)
				line = accessLine(t, s, id)
			}
			if d, _ := line["duration"].(float64); d < float64(open.Milliseconds()) {
				t.Errorf("duration %v ms, want at least %v", line["duration"], open.Milliseconds())
			}
			// The retry line and the put event at least.
			if b, _ := line["bytes"].(float64); b < 50 {
				t.Errorf("bytes %v, want the stream's", line["bytes"])
			}
			if line["status"] != float64(200) || line["path"] != "/v1/watch/logged" {
				t.Errorf("line %+v", line)
			}
		})
	}
}

// accessLine returns the access log line of the request id, or nil.
func accessLine(tb testing.TB, s *testServer, id string) map[string]any {
	tb.Helper()
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			tb.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if l["request_id"] == id && l["message"] == "request" {
			return l
		}
	}
	return nil
}
