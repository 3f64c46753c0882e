package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/internal/sseclient"
)

// sseWatch is an open SSE watch whose events a goroutine decodes.
type sseWatch struct {
	resp   *http.Response
	events chan sseclient.Event
	cancel context.CancelFunc
}

// getWatch sends GET path with client and header and returns the
// response, whose body streams until cancel is called.
func (s *testServer) getWatch(tb testing.TB, client *http.Client, path string, header map[string]string) (*http.Response, context.CancelFunc) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	for k, v := range header {
		hr.Header.Set(k, v)
	}
	resp, err := client.Do(hr)
	if err != nil {
		cancel()
		tb.Fatalf("GET %s: %v", path, err)
	}
	return resp, cancel
}

// openWatch opens the watch at path with client and header, expecting a
// 200 event stream.
func (s *testServer) openWatch(tb testing.TB, client *http.Client, path string, header map[string]string) *sseWatch {
	tb.Helper()
	resp, cancel := s.getWatch(tb, client, path, header)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		resp.Body.Close()
		tb.Fatalf("GET %s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	w := &sseWatch{resp: resp, events: make(chan sseclient.Event, 64), cancel: cancel}
	go func() {
		defer close(w.events)
		p := sseclient.NewParser(resp.Body)
		for {
			ev, err := p.Next()
			if err != nil {
				return
			}
			w.events <- ev
		}
	}()
	tb.Cleanup(w.close)
	return w
}

func (w *sseWatch) close() {
	w.cancel()
	w.resp.Body.Close()
}

// next returns the next event that is not a progress bookmark, failing
// after 10 seconds or at the end of the stream.
func (w *sseWatch) next(tb testing.TB) sseclient.Event {
	tb.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				tb.Fatal("the stream ended")
			}
			if ev.Type == "progress" {
				continue
			}
			return ev
		case <-timeout:
			tb.Fatal("no event within 10s")
		}
	}
}

// wsConn is a WebSocket client of the test server.
type wsConn struct {
	c *websocket.Conn
}

// dialWS opens a watchgate.v1 socket with the given request headers.
func (s *testServer) dialWS(tb testing.TB, header http.Header) *wsConn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/v1/ws",
		&websocket.DialOptions{Subprotocols: []string{"watchgate.v1"}, HTTPHeader: header})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial /v1/ws: %v (status %d)", err, status)
	}
	c.SetReadLimit(16 << 20)
	tb.Cleanup(func() { c.CloseNow() })
	return &wsConn{c: c}
}

func (c *wsConn) send(tb testing.TB, msg string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		tb.Fatalf("send %s: %v", msg, err)
	}
}

// wsMessage is a decoded server message.
type wsMessage struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Revision int64  `json:"revision"`
	Events   []struct {
		Type string `json:"type"`
		KV   kvJSON `json:"kv"`
	} `json:"events"`
	Error *problem `json:"error"`
	raw   string
}

// read returns the next message other than progress.
func (c *wsConn) read(tb testing.TB) wsMessage {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := c.c.Read(ctx)
		if err != nil {
			tb.Fatalf("read: %v", err)
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			tb.Fatalf("message %s: %v", b, err)
		}
		m.raw = string(b)
		if m.Type != "progress" {
			return m
		}
	}
}

// expect reads the next message and checks its type and id.
func (c *wsConn) expect(tb testing.TB, typ, id string) wsMessage {
	tb.Helper()
	m := c.read(tb)
	if m.Type != typ || m.ID != id {
		tb.Fatalf("message %s, want type %s id %q", m.raw, typ, id)
	}
	return m
}

// TestWatchTransports watches the same prefix over SSE (HTTP/1.1 and
// cleartext HTTP/2, the key percent-encoded in the path) and over the
// WebSocket, and checks that each receives a PUT with its revision.
func TestWatchTransports(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	h1 := s.openWatch(t, s.Client(), "/v1/watch/cfg%2Fa?prefix=true", nil)
	h2 := s.openWatch(t, s.h2, "/v1/watch/cfg/a?prefix=true", nil)
	if h2.resp.Proto != "HTTP/2.0" {
		t.Errorf("h2 watch over %s", h2.resp.Proto)
	}
	sock := s.dialWS(t, nil)
	sock.send(t, `{"op":"watch","id":"w","key":"cfg/a","prefix":true}`)
	sock.expect(t, "created", "w")

	rev := s.put(t, "cfg/a1", "on")
	s.put(t, "cfg/b", "off") // outside the prefix
	rev2 := s.put(t, "cfg/a2", "x")
	for name, w := range map[string]*sseWatch{"HTTP/1.1": h1, "HTTP/2": h2} {
		for _, want := range []struct {
			id, key string
		}{{itoa(rev), "cfg/a1"}, {itoa(rev2), "cfg/a2"}} {
			ev := w.next(t)
			var kv kvJSON
			if err := json.Unmarshal([]byte(ev.Data), &kv); err != nil {
				t.Fatal(err)
			}
			if ev.Type != "put" || ev.ID != want.id || kv.Key == nil || *kv.Key != want.key {
				t.Errorf("%s: event %+v, want put %s of %s", name, ev, want.id, want.key)
			}
		}
	}
	var got []string
	for len(got) < 2 {
		m := sock.expect(t, "events", "w")
		for _, ev := range m.Events {
			got = append(got, ev.Type+" "+*ev.KV.Key+" "+itoa(ev.KV.ModRevision))
		}
	}
	if want := []string{"put cfg/a1 " + itoa(rev), "put cfg/a2 " + itoa(rev2)}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("ws events %v, want %v", got, want)
	}
}

// TestWatchErrorsGoThroughTheTable checks the watch endpoint's answers
// before streaming: problem+json from the API's error table, with the
// request id, and the revision headers.
func TestWatchErrorsGoThroughTheTable(t *testing.T) {
	s := newTestServer(t, Options{MaxKeySize: 16, MaxValueSize: 1 << 20, MaxTxnOps: 8}, kvOptionsForTest())
	for _, tc := range []struct {
		path   string
		header map[string]string
		status int
		slug   string
	}{
		{"/v1/watch/", nil, 400, "bad-request"},
		{"/v1/watch/a?prefix=maybe", nil, 400, "bad-request"},
		{"/v1/watch/a?range_end=a", nil, 400, "bad-request"},
		{"/v1/watch/a?prefix=true&range_end=b", nil, 400, "bad-request"},
		{"/v1/watch/a?progress=-1s", nil, 400, "bad-request"},
		{"/v1/watch/a?format=xml", nil, 400, "bad-request"},
		{"/v1/watch/a?rev=-1", nil, 400, "bad-request"},

		{"/v1/watch/a", map[string]string{"Last-Event-ID": "x.y"}, 400, "bad-request"},
		{"/v1/watch/" + strings.Repeat("k", 17), nil, 413, "key-too-large"},
		{"/v1/watch/a?range_end=" + strings.Repeat("z", 17), nil, 413, "key-too-large"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			mustProblem(t, s.do(t, req{path: tc.path, header: tc.header}), tc.status, tc.slug)
		})
	}
	// A browser that saw the compacted event stops with 204.
	resp := s.do(t, req{path: "/v1/watch/a", header: map[string]string{"Last-Event-ID": "compacted"}})
	mustStatus(t, resp, http.StatusNoContent)

	// Shutting down: new watches get 503, the socket endpoint too.
	s.api.Shutdown()
	mustProblem(t, s.do(t, req{path: "/v1/watch/a"}), http.StatusServiceUnavailable, "shutting-down")
	if r := s.do(t, req{path: "/readyz"}); r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz after Shutdown: %d", r.status)
	}
}
