package httpapi

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/ws"
)

// rawDo sends a request without the contract checks (preflights are not
// operations of the API) and returns the response with its body read.
func (s *testServer) rawDo(tb testing.TB, method, path string, header map[string]string) (*http.Response, string) {
	tb.Helper()
	hr, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := s.Client().Do(hr)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestCORS(t *testing.T) {
	s := newTestServer(t, Options{CORSOrigins: []string{"https://App.Example", "http://localhost:3000"}}, kvOptionsForTest())
	s.put(t, "k", "v")

	// Preflight of an EventSource polyfill resuming with Last-Event-ID.
	resp, _ := s.rawDo(t, http.MethodOptions, "/v1/watch/k", map[string]string{
		"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
		"Access-Control-Request-Headers": "last-event-id, authorization"})
	if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	allowed := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
	for _, h := range []string{"last-event-id", "authorization"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("Access-Control-Allow-Headers %q lacks %s", allowed, h)
		}
	}
	// Preflight of a PUT.
	resp, _ = s.rawDo(t, http.MethodOptions, "/v1/kv/k", map[string]string{
		"Origin": "http://localhost:3000", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "if-match"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Errorf("PUT preflight: %v", resp.Header)
	}

	// The actual request exposes the revision headers and the ETag.
	resp, body := s.rawDo(t, http.MethodGet, "/v1/kv/k", map[string]string{"Origin": "https://app.example"})
	if body != "v" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("GET: %q %v", body, resp.Header)
	}
	exposed := strings.Split(strings.ReplaceAll(resp.Header.Get("Access-Control-Expose-Headers"), " ", ""), ",")
	for _, h := range []string{"X-Revision", "X-Compact-Revision", "Etag"} {
		found := false
		for _, e := range exposed {
			found = found || strings.EqualFold(e, h)
		}
		if !found {
			t.Errorf("Access-Control-Expose-Headers %v lacks %s", exposed, h)
		}
	}
	// Another origin gets no CORS headers: the browser hides the answer.
	resp, _ = s.rawDo(t, http.MethodGet, "/v1/kv/k", map[string]string{"Origin": "https://evil.example"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("evil origin allowed: %v", resp.Header)
	}

	// The WebSocket Origin check uses the same list.
	wsURL := "ws" + strings.TrimPrefix(s.URL, "http") + "/v1/ws"
	for _, tc := range []struct {
		origin string
		ok     bool
	}{{"https://app.example", true}, {"http://localhost:3000", true}, {"https://evil.example", false}, {"http://app.example", false}} {
		c, resp, err := websocket.Dial(context.Background(), wsURL, &websocket.DialOptions{
			Subprotocols: []string{ws.Subprotocol}, HTTPHeader: http.Header{"Origin": {tc.origin}}})
		if tc.ok != (err == nil) {
			t.Errorf("WebSocket from %s: %v", tc.origin, err)
		}
		if err == nil {
			c.CloseNow()
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("WebSocket from %s refused with %v, want 403", tc.origin, resp)
		}
	}

	// Same origin only by default: no CORS headers at all.
	def := newTestServer(t, Options{}, kvOptionsForTest())
	resp, _ = def.rawDo(t, http.MethodGet, "/healthz", map[string]string{"Origin": "https://app.example"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("default server answers CORS: %v", resp.Header)
	}

	// "*": every origin may read, without credentials.
	star := newTestServer(t, Options{CORSOrigins: []string{"*"}}, kvOptionsForTest())
	resp, _ = star.rawDo(t, http.MethodGet, "/healthz", map[string]string{"Origin": "https://any.example"})
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("*: %v", resp.Header)
	}
}

func TestCORSOriginsValidated(t *testing.T) {
	for _, o := range []string{"app.example", "ftp://app.example", "https://app.example/path", "https://", "https://a.example?x=1"} {
		t.Run(o, func(t *testing.T) {
			if _, err := New(nil, Options{CORSOrigins: []string{o}}); err == nil {
				t.Errorf("origin %q accepted", o)
			}
		})
	}
	got, err := NormalizeOrigin("HTTPS://App.Example:8443/")
	if diff := cmp.Diff("https://app.example:8443", got); diff != "" || err != nil {
		t.Errorf("(-want +got) %s %v", diff, err)
	}
	if got := escapeGlob("http://[::1]:80"); got != `http://\[::1\]:80` {
		t.Errorf("escapeGlob: %s", got)
	}
}
