package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/ws"
)

// TestWriteRate checks the per-client token bucket over HTTP: a burst
// passes, the next write gets 429 with Retry-After, another client is not
// affected, reads are not limited. The rate is slow enough (one write in
// 10s) that a loaded machine cannot refill the bucket during the test.
func TestWriteRate(t *testing.T) {
	other := testToken{name: "other", token: "wg_other", read: []string{""}, write: []string{""}}
	s := newTestServer(t, Options{Access: testPolicy(t, tokAdmin, tokNS1, other), WriteRate: 0.1, WriteBurst: 3}, kvOptionsForTest())
	put := func(token string) response {
		return s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/r", body: "v", header: bearer(token)})
	}
	for i := 0; i < 3; i++ {
		if r := put(tokNS1.token); r.status/100 != 2 {
			t.Fatalf("write %d of the burst: %d %s", i, r.status, r.body)
		}
	}
	resp := put(tokNS1.token)
	p := mustProblem(t, resp, http.StatusTooManyRequests, "rate-limited")
	ra, err := strconv.Atoi(resp.header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 10 {
		t.Errorf("Retry-After %q, want 1 to 10 seconds", resp.header.Get("Retry-After"))
	}
	if !strings.Contains(p.Detail, "0.1/s") {
		t.Errorf("detail %q does not state the rate", p.Detail)
	}
	// A transaction and a delete are writes too; a read is not.
	mustProblem(t, s.do(t, req{method: http.MethodPost, path: "/v1/txn", body: `{}`, header: bearer(tokNS1.token)}), 429, "rate-limited")
	mustProblem(t, s.do(t, req{method: http.MethodDelete, path: "/v1/kv/ns1/r", header: bearer(tokNS1.token)}), 429, "rate-limited")
	mustStatus(t, s.do(t, req{path: "/v1/kv/ns1/r", header: bearer(tokNS1.token)}), 200)
	// Another token has its own bucket.
	mustStatus(t, s.do(t, req{method: http.MethodPut, path: "/v1/kv/o", body: "v", header: bearer(other.token)}), 201)
	// Without a token, clients are told apart by their address.
	anon := newTestServer(t, Options{WriteRate: 0.1, WriteBurst: 1}, kvOptionsForTest())
	mustStatus(t, anon.do(t, req{method: http.MethodPut, path: "/v1/kv/a", body: "v"}), 201)
	mustProblem(t, anon.do(t, req{method: http.MethodPut, path: "/v1/kv/a", body: "v"}), 429, "rate-limited")
}

// TestWriteLimiterRefill checks the bucket's arithmetic on a given clock:
// bursts, waits, refills, refused writes that take nothing.
func TestWriteLimiterRefill(t *testing.T) {
	l := newWriteLimiter(2, 3)
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if d := l.reserve("c", now); d != 0 {
			t.Fatalf("write %d of the burst waits %v", i, d)
		}
	}
	if d := l.reserve("c", now); d != 500*time.Millisecond {
		t.Errorf("fourth write waits %v, want 500ms", d)
	}
	// A refused write took nothing: the wait does not grow.
	if d := l.reserve("c", now); d != 500*time.Millisecond {
		t.Errorf("fifth write waits %v, want 500ms", d)
	}
	now = now.Add(500 * time.Millisecond)
	if d := l.reserve("c", now); d != 0 {
		t.Errorf("after 500ms: waits %v", d)
	}
	if d := l.reserve("c", now); d != 500*time.Millisecond {
		t.Errorf("then: waits %v, want 500ms", d)
	}
	if d := l.reserve("d", now); d != 0 {
		t.Errorf("another client waits %v", d)
	}
	// Default burst: the rate rounded down, at least 1.
	if newWriteLimiter(0.5, 0).burst != 1 || newWriteLimiter(100, 0).burst != 100 {
		t.Errorf("default bursts")
	}
}

// TestWriteLimiterSweep checks that idle buckets are dropped as new
// clients come, so the limiter's memory follows the active clients.
func TestWriteLimiterSweep(t *testing.T) {
	l := newWriteLimiter(1000, 10)
	now := time.Now()
	for i := 0; i < 3*sweepEvery; i++ {
		if d := l.reserve("ip:10.0.0."+strconv.Itoa(i), now); d != 0 {
			t.Fatalf("first write of a new client waits %v", d)
		}
		now = now.Add(time.Millisecond)
	}
	if n := len(l.buckets); n > sweepEvery+1 {
		t.Errorf("%d buckets kept for clients idle long enough to refill", n)
	}
	// A busy client's bucket survives the sweep.
	l2 := newWriteLimiter(0.001, 1)
	l2.reserve("busy", now)
	for i := 0; i < sweepEvery; i++ {
		l2.reserve("c"+strconv.Itoa(i), now)
	}
	if d := l2.reserve("busy", now); d == 0 {
		t.Errorf("the busy client's bucket was dropped")
	}
}

// TestStreamLimit checks the per-client limit of open streams across SSE
// and WebSocket, and that closing one frees its place.
func TestStreamLimit(t *testing.T) {
	s := newTestServer(t, Options{Access: testPolicy(t, tokAdmin, tokNS1), MaxStreams: 2}, kvOptionsForTest())
	auth := bearer(tokNS1.token)
	a := s.openWatch(t, s.Client(), "/v1/watch/ns1/a", auth)
	sock := s.dialWS(t, http.Header{"Authorization": {"Bearer " + tokNS1.token}})
	p := mustProblem(t, s.do(t, req{path: "/v1/watch/ns1/b", header: auth}), 429, "too-many-streams")
	if !strings.Contains(p.Detail, "2 open") {
		t.Errorf("detail %q", p.Detail)
	}
	// The WebSocket handshake counts as a stream too.
	_, resp, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(s.URL, "http")+"/v1/ws",
		&websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}, HTTPHeader: http.Header{"Authorization": {"Bearer " + tokNS1.token}}})
	if err == nil || resp == nil || resp.StatusCode != 429 {
		t.Errorf("third stream as a WebSocket: %v %v", err, resp)
	}
	// Another client is not limited by this one.
	b := s.openWatch(t, s.Client(), "/v1/watch/ns1/a", bearer(tokAdmin.token))
	defer b.close()
	// Closing a stream frees its place (the server notices when it writes
	// or the request's context ends).
	a.close()
	sock.c.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := s.do(t, req{path: "/v1/status", header: auth})
		var st struct {
			Connections struct{ SSE, WS int } `json:"connections"`
		}
		decodeJSON(t, resp, &st)
		if st.Connections.SSE == 1 && st.Connections.WS == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams still open: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := s.openWatch(t, s.Client(), "/v1/watch/ns1/b", auth)
	c.close()
}

// TestStreamLimitHTTP2 checks the per-client limit for watch streams over
// HTTP/2, which h2srv serves detached from their handler: a stream holds
// its place until it ends, not until its handler returns.
func TestStreamLimitHTTP2(t *testing.T) {
	s := newTestServer(t, Options{Access: testPolicy(t, tokAdmin, tokNS1), MaxStreams: 2}, kvOptionsForTest())
	auth := bearer(tokNS1.token)
	a := s.openWatch(t, s.h2, "/v1/watch/ns1/a", auth)
	b := s.openWatch(t, s.h2, "/v1/watch/ns1/b", auth)
	defer b.close()
	if status := s.watchStatus(t, s.h2, "/v1/watch/ns1/c", auth); status != http.StatusTooManyRequests {
		t.Fatalf("third stream: status %d, want 429", status)
	}
	// Both streams are live: a write reaches the first.
	s.do(t, req{method: http.MethodPut, path: "/v1/kv/ns1/a", body: "1", header: auth})
	if ev := a.next(t); ev.Type != "put" {
		t.Fatalf("first stream got %+v", ev)
	}
	// Ending a stream frees its place.
	a.close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status := s.watchStatus(t, s.h2, "/v1/watch/ns1/c", auth)
		if status == http.StatusOK {
			break
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after closing a stream: status %d", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchStatus opens a watch, returns its response's status and ends it.
func (s *testServer) watchStatus(tb testing.TB, client *http.Client, path string, header map[string]string) int {
	tb.Helper()
	resp, cancel := s.getWatch(tb, client, path, header)
	defer cancel()
	resp.Body.Close()
	return resp.StatusCode
}

// TestWatchesPerSocket checks the WS option that bounds the watches of one
// socket: the watch over it gets a 429 error and the socket goes on.
func TestWatchesPerSocket(t *testing.T) {
	s := newTestServer(t, Options{WS: ws.Options{MaxWatches: 2}}, kvOptionsForTest())
	sock := s.dialWS(t, nil)
	sock.send(t, `{"op":"watch","id":"1","key":"a"}`)
	sock.expect(t, "created", "1")
	sock.send(t, `{"op":"watch","id":"2","key":"b"}`)
	sock.expect(t, "created", "2")
	sock.send(t, `{"op":"watch","id":"3","key":"c"}`)
	if m := sock.expect(t, "error", "3"); m.Error == nil || m.Error.Status != 429 {
		t.Errorf("third watch: %s", m.raw)
	}
	sock.send(t, `{"op":"cancel","id":"1"}`)
	sock.expect(t, "canceled", "1")
	sock.send(t, `{"op":"watch","id":"3","key":"c"}`)
	sock.expect(t, "created", "3")
}
