package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kvjson"
)

var ignoreErr = cmpopts.IgnoreFields(Problem{}, "Err")

func str(s string) *string { return &s }

func TestHandshake(t *testing.T) {
	ts := newTestServer(t, Options{OriginPatterns: []string{"app.example.com", "https://*.trusted.test"}})
	host := strings.TrimPrefix(ts.srv.URL, "http://")
	tests := []struct {
		name     string
		header   http.Header
		status   int
		slug     string
		protocol string
	}{
		{"no origin", http.Header{}, 101, "", Subprotocol},
		{"same origin", http.Header{"Origin": {"http://" + host}}, 101, "", Subprotocol},
		{"allowed host pattern", http.Header{"Origin": {"https://app.example.com"}}, 101, "", Subprotocol},
		{"allowed scheme pattern", http.Header{"Origin": {"https://x.trusted.test"}}, 101, "", Subprotocol},
		{"pattern scheme mismatch", http.Header{"Origin": {"http://x.trusted.test"}}, 403, "forbidden-origin", ""},
		{"other origin", http.Header{"Origin": {"https://evil.example"}}, 403, "forbidden-origin", ""},
		{"null origin", http.Header{"Origin": {"null"}}, 403, "forbidden-origin", ""},
		{"origin checked before subprotocol", http.Header{"Origin": {"https://evil.example"}, "Sec-WebSocket-Protocol": nil}, 403, "forbidden-origin", ""},
		{"no subprotocol", http.Header{"Sec-WebSocket-Protocol": nil}, 400, "subprotocol", ""},
		{"other subprotocol", http.Header{"Sec-WebSocket-Protocol": {"chat"}}, 400, "subprotocol", ""},
		{"subprotocol among others", http.Header{"Sec-WebSocket-Protocol": {"chat, watchgate.v1"}}, 101, "", Subprotocol},
		{"not an upgrade", http.Header{"Connection": {"keep-alive"}, "Upgrade": nil}, 426, "not-websocket", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, ts.srv.URL+"/v1/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			req.Header.Set("Sec-WebSocket-Protocol", Subprotocol)
			for k, vs := range tt.header {
				req.Header.Del(k)
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != tt.protocol {
				t.Errorf("Sec-WebSocket-Protocol %q, want %q", got, tt.protocol)
			}
			if tt.status == 101 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			var p Problem
			body, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if p.Type != ProblemTypePrefix+tt.slug || p.Status != tt.status || p.Title == "" || p.Detail == "" {
				t.Errorf("problem %+v, want type %s status %d", p, tt.slug, tt.status)
			}
		})
	}
}

func TestNewHandlerBadPattern(t *testing.T) {
	if _, err := NewHandler(nil, Options{}); err == nil {
		t.Error("NewHandler(nil hub) succeeded")
	}
	ts := newTestServer(t, Options{})
	if _, err := NewHandler(ts.hub, Options{OriginPatterns: []string{"[a-"}}); err == nil {
		t.Error("NewHandler with a malformed pattern succeeded")
	}
}

// TestMessages exercises every message type of the protocol in one
// conversation.
func TestMessages(t *testing.T) {
	ts := newTestServer(t, Options{})
	c := ts.dial(t)
	rev0, _ := ts.store.Revisions()

	c.send(`{"op":"ping"}`)
	want := []Message{{Type: TypePong}}

	c.send(`{"op":"watch","id":"w1","key":"config/","prefix":true,"prev_kv":true}`)
	want = append(want, Message{Type: TypeCreated, ID: "w1", Revision: rev0})
	expect(t, c, want)

	r1 := ts.put(t, "config/a", "on")
	r2 := ts.put(t, "config/a", "off")
	ts.put(t, "other", "x")
	expect(t, c, []Message{
		{Type: TypeEvents, ID: "w1", Revision: r1, Events: []Event{{Type: "put", KV: kvjson.KeyValue{Key: str("config/a"), Value: str("on"), CreateRevision: r1, ModRevision: r1, Version: 1}}}},
		{Type: TypeEvents, ID: "w1", Revision: r2, Events: []Event{{Type: "put",
			KV:     kvjson.KeyValue{Key: str("config/a"), Value: str("off"), CreateRevision: r1, ModRevision: r2, Version: 2},
			PrevKV: &kvjson.KeyValue{Key: str("config/a"), Value: str("on"), CreateRevision: r1, ModRevision: r1, Version: 1}}}},
	})

	// Progress: every watch has been sent everything up to the current
	// revision, even the write that matched nothing.
	c.send(`{"op":"progress"}`)
	r3, _ := ts.store.Revisions()
	expect(t, c, []Message{{Type: TypeProgress, Revision: r3}})

	// Snapshot: reset, the range's kvs, synced.
	c.send(`{"op":"watch","id":"s","key":"config/","prefix":true,"snapshot":true}`)
	expect(t, c, []Message{
		{Type: TypeCreated, ID: "s", Revision: r3},
		{Type: TypeReset, ID: "s", Revision: r3},
		{Type: TypeEvents, ID: "s", Revision: r3, Events: []Event{{Type: "put", KV: kvjson.KeyValue{Key: str("config/a"), Value: str("off"), CreateRevision: r1, ModRevision: r2, Version: 2}}}},
		{Type: TypeSynced, ID: "s", Revision: r3},
	})

	// A delete reaches both watches; binary keys travel as key_b64.
	resp, err := ts.store.Delete(context.Background(), []byte("config/a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	r4 := resp.Revision
	got := recvN(t, c, 2)
	wantDel := []Message{
		{Type: TypeEvents, ID: "s", Revision: r4, Events: []Event{{Type: "delete", KV: kvjson.KeyValue{Key: str("config/a"), ModRevision: r4}}}},
		{Type: TypeEvents, ID: "w1", Revision: r4, Events: []Event{{Type: "delete", KV: kvjson.KeyValue{Key: str("config/a"), ModRevision: r4},
			PrevKV: &kvjson.KeyValue{Key: str("config/a"), Value: str("off"), CreateRevision: r1, ModRevision: r2, Version: 2}}}},
	}
	if diff := cmp.Diff(wantDel, got, ignoreErr, cmpopts.SortSlices(func(a, b Message) bool { return a.ID < b.ID })); diff != "" {
		t.Errorf("delete (-want +got):\n%s", diff)
	}

	c.send(`{"op":"watch","id":"bin","key_b64":"/wA="}`)
	expect(t, c, []Message{{Type: TypeCreated, ID: "bin", Revision: r4}})
	r5 := ts.put(t, "\xff\x00", "\x01\xfe")
	expect(t, c, []Message{{Type: TypeEvents, ID: "bin", Revision: r5, Events: []Event{{Type: "put",
		KV: kvjson.KeyValue{KeyB64: str("/wA="), ValueB64: str("Af4="), CreateRevision: r5, ModRevision: r5, Version: 1}}}}})

	// Cancel, and the errors, each with the watch's id when it had one.
	c.send(`{"op":"cancel","id":"w1"}`)
	c.send(`{"op":"cancel","id":"w1"}`)
	c.send(`{"op":"watch","id":"s","key":"x"}`)
	c.send(`{"op":"watch","id":"w2","key":"b","range_end":"a"}`)
	c.send(`not json`)
	expect(t, c, []Message{
		{Type: TypeCanceled, ID: "w1", Reason: "canceled"},
		{Type: TypeError, ID: "w1", Error: &Problem{Type: ProblemTypePrefix + "unknown-watch-id", Title: "Unknown watch id", Status: 404, Detail: `no active watch "w1" on this socket`}},
		{Type: TypeError, ID: "s", Error: &Problem{Type: ProblemTypePrefix + "duplicate-watch-id", Title: "Duplicate watch id", Status: 409, Detail: `watch "s" is already active on this socket; cancel it first or use another id`}},
		{Type: TypeError, ID: "w2", Error: &Problem{Type: ProblemTypePrefix + "invalid-range", Title: "Invalid key or range", Status: 400, Detail: `"range_end" must be above the key ("\u0000" selects every key from the key on)`}},
		{Type: TypeError, Error: &Problem{Type: ProblemTypePrefix + "malformed-message", Title: "Malformed message", Status: 400, Detail: "message is not valid JSON: invalid character 'o' in literal null (expecting 'u')"}},
	})

	// Binary messages are refused, the socket stays open.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageBinary, []byte(`{"op":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	if m := c.recv(); m.Type != TypeError || m.Error == nil || m.Error.Status != 400 {
		t.Errorf("binary message answered %+v", m)
	}

	// Compaction ends a watch that needs a compacted revision.
	if err := ts.store.Compact(context.Background(), r4); err != nil {
		t.Fatal(err)
	}
	c.send(fmt.Sprintf(`{"op":"watch","id":"old","key":"config/","prefix":true,"rev":%d}`, r2))
	expect(t, c, []Message{
		{Type: TypeCreated, ID: "old", Revision: r5},
		{Type: TypeCompacted, ID: "old", CompactRevision: r4, Revision: r5},
	})
	// The id of the ended watch is free again, and other watches go on.
	c.send(`{"op":"watch","id":"old","key":"k"}`)
	c.send(`{"op":"ping"}`)
	expect(t, c, []Message{{Type: TypeCreated, ID: "old", Revision: r5}, {Type: TypePong}})
	c.c.Close(websocket.StatusNormalClosure, "")
}

// expect reads len(want) messages and compares them.
func expect(tb testing.TB, c *client, want []Message) {
	tb.Helper()
	got := recvN(tb, c, len(want))
	if diff := cmp.Diff(want, got, ignoreErr); diff != "" {
		tb.Errorf("messages (-want +got):\n%s", diff)
	}
}

func recvN(tb testing.TB, c *client, n int) []Message {
	tb.Helper()
	var got []Message
	for range n {
		got = append(got, c.recv())
	}
	return got
}

// TestReplyOrder checks that the read loop's own replies keep their place
// among the hub's responses.
func TestReplyOrder(t *testing.T) {
	ts := newTestServer(t, Options{})
	c := ts.dial(t)
	rev, _ := ts.store.Revisions()
	for i := range 50 {
		id := fmt.Sprintf("w%d", i)
		c.send(`{"op":"watch","id":"` + id + `","key":"k","rev":-1}`) // error
		c.send(`{"op":"watch","id":"` + id + `","key":"k"}`)          // created
		c.send(`{"op":"ping"}`)                                       // pong
		c.send(`{"op":"watch","id":"` + id + `","key":"k"}`)          // duplicate
		c.send(`{"op":"cancel","id":"` + id + `"}`)                   // canceled
		c.send(`{"op":"cancel","id":"` + id + `"}`)                   // unknown
	}
	for i := range 50 {
		id := fmt.Sprintf("w%d", i)
		var got []string
		for _, m := range recvN(t, c, 6) {
			s := m.Type + " " + m.ID
			if m.Error != nil {
				s += " " + m.Error.Type
			}
			got = append(got, s)
		}
		want := []string{
			"error " + id + " " + ProblemTypePrefix + "invalid-revision",
			"created " + id,
			"pong ",
			"error " + id + " " + ProblemTypePrefix + "duplicate-watch-id",
			"canceled " + id,
			"error " + id + " " + ProblemTypePrefix + "unknown-watch-id",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round %d (-want +got):\n%s", i, diff)
		}
	}
	_ = rev
}

func TestWatchLimit(t *testing.T) {
	ts := newTestServer(t, Options{MaxWatches: 2})
	c := ts.dial(t)
	c.send(`{"op":"watch","id":"a","key":"a"}`)
	c.send(`{"op":"watch","id":"b","key":"b"}`)
	c.send(`{"op":"watch","id":"c","key":"c"}`)
	c.send(`{"op":"cancel","id":"a"}`)
	c.send(`{"op":"watch","id":"c","key":"c"}`)
	var got []string
	for _, m := range recvN(t, c, 5) {
		s := m.Type + " " + m.ID
		if m.Error != nil {
			s += fmt.Sprintf(" %d", m.Error.Status)
		}
		got = append(got, s)
	}
	want := []string{"created a", "created b", "error c 429", "canceled a", "created c"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAuthorize(t *testing.T) {
	ts := newTestServer(t, Options{Authorize: func(r *http.Request, key, end []byte) error {
		if r.Header.Get("Sec-WebSocket-Protocol") == "" {
			return errors.New("no handshake request")
		}
		if !strings.HasPrefix(string(key), "public/") || end != nil && string(end) > "public0" {
			return fmt.Errorf("range [%q, %q) is outside public/", key, end)
		}
		return nil
	}})
	c := ts.dial(t)
	c.send(`{"op":"watch","id":"ok","key":"public/","prefix":true}`)
	c.send(`{"op":"watch","id":"no","key":"public/","range_end":"q"}`)
	got := recvN(t, c, 2)
	if got[0].Type != TypeCreated || got[1].Type != TypeError || got[1].ID != "no" || got[1].Error.Status != 403 ||
		got[1].Error.Detail != `range ["public/", "q") is outside public/` {
		t.Errorf("got %+v", got)
	}
}

func TestMessageTooBig(t *testing.T) {
	ts := newTestServer(t, Options{MaxMessageSize: 1024})
	c := ts.dial(t)
	c.send(`{"op":"watch","id":"a","key":"` + strings.Repeat("k", 900) + `"}`)
	if m := c.recv(); m.Type != TypeCreated {
		t.Fatalf("got %+v", m)
	}
	c.send(`{"op":"watch","id":"b","key":"` + strings.Repeat("k", 1100) + `"}`)
	if code := c.closeStatus(); code != websocket.StatusMessageTooBig {
		t.Errorf("close code %v, want 1009", code)
	}
	waitFor(t, "socket count 0", func() bool { return ts.h.Connections() == 0 })
}

func TestShutdown(t *testing.T) {
	ts := newTestServer(t, Options{})
	clients := []*client{ts.dial(t), ts.dial(t), ts.dial(t)}
	for _, c := range clients {
		c.send(`{"op":"watch","id":"a","key":"a"}`)
		c.recv()
	}
	if n := ts.h.Connections(); n != 3 {
		t.Errorf("Connections() = %d, want 3", n)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts.h.Shutdown(ctx)
	}()
	for _, c := range clients {
		if code := c.closeStatus(); code != websocket.StatusGoingAway {
			t.Errorf("close code %v, want 1001", code)
		}
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n := ts.h.Connections(); n != 0 {
		t.Errorf("Connections() = %d after Shutdown", n)
	}
	// New handshakes are refused.
	resp, err := http.Get(ts.srv.URL + "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 426 {
		t.Errorf("plain GET after shutdown: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err = websocket.Dial(ctx, ts.url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("handshake after Shutdown: %v, %v", err, resp)
	}
}

// TestHubClose: sockets whose hub closes are closed with 1001.
func TestHubClose(t *testing.T) {
	ts := newTestServer(t, Options{})
	c := ts.dial(t)
	c.send(`{"op":"watch","id":"a","key":"a"}`)
	c.recv()
	ts.hub.Close()
	if code := c.closeStatus(); code != websocket.StatusGoingAway {
		t.Errorf("close code %v, want 1001", code)
	}
}

func TestExpires(t *testing.T) {
	ts := newTestServer(t, Options{Expires: func(r *http.Request) time.Time { return time.Now().Add(200 * time.Millisecond) }})
	c := ts.dial(t)
	if code := c.closeStatus(); code != websocket.StatusPolicyViolation {
		t.Errorf("close code %v, want 1008", code)
	}
}

func TestIdleProgress(t *testing.T) {
	ts := newTestServer(t, Options{ProgressInterval: 50 * time.Millisecond})
	c := ts.dial(t)
	c.send(`{"op":"watch","id":"a","key":"a"}`)
	if m := c.recv(); m.Type != TypeCreated {
		t.Fatalf("got %+v", m)
	}
	rev := ts.put(t, "b", "1")
	for {
		m := c.recv()
		if m.Type != TypeProgress {
			t.Fatalf("got %+v, want progress", m)
		}
		if m.Revision == rev {
			break
		}
	}
}

// TestResume: a client that reconnects with rev = last revision + 1 gets
// exactly what it missed.
func TestResume(t *testing.T) {
	ts := newTestServer(t, Options{})
	c := ts.dial(t)
	c.send(`{"op":"watch","id":"w","key":"k/","prefix":true}`)
	c.recv()
	ts.putMany(t, "k/", 300)
	last := int64(0)
	for n := 0; n < 300; {
		m := c.recv()
		n += len(m.Events)
		last = m.Revision
	}
	c.c.Close(websocket.StatusNormalClosure, "")

	from := last + 1
	ts.putMany(t, "k/a", 200)
	ts.put(t, "other", "x")
	ts.put(t, "k/z", "z")
	c2 := ts.dial(t)
	c2.send(fmt.Sprintf(`{"op":"watch","id":"w","key":"k/","prefix":true,"rev":%d}`, from))
	h := ts.history(t)
	chk := newChecker(t, h, from, "k/")
	z := &itemizer{tb: t}
	for chk.Events() < 201 {
		if err := chk.Add(z.item(c2.recv())); err != nil {
			t.Fatal(err)
		}
	}
	if err := chk.Complete(h.Last()); err != nil {
		t.Fatal(err)
	}
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSnapshotHeals: a snapshot watch resumed from a compacted revision
// heals with reset, the range's kvs and synced, then goes on live; checked
// against the recorded history.
func TestSnapshotHeals(t *testing.T) {
	ts := newTestServer(t, Options{})
	rec := watchtest.Record(ts.store.Subscribe)
	defer rec.Stop()
	r1 := ts.put(t, "s/a", "1")
	ts.put(t, "s/b", "1")
	ts.put(t, "t", "1")
	r4 := ts.put(t, "s/a", "2")
	if err := ts.store.Compact(context.Background(), r4); err != nil {
		t.Fatal(err)
	}
	c := ts.dial(t)
	c.send(fmt.Sprintf(`{"op":"watch","id":"s","key":"s/","prefix":true,"snapshot":true,"rev":%d}`, r1+1))
	var msgs []Message
	for len(msgs) == 0 || msgs[len(msgs)-1].Type != TypeSynced {
		msgs = append(msgs, c.recv())
	}
	r5 := ts.put(t, "s/c", "1")
	msgs = append(msgs, c.recv())
	h, err := rec.History()
	if err != nil {
		t.Fatal(err)
	}
	chk := watchtest.NewChecker(h, watchtest.Request{Key: []byte("s/"), End: []byte("s0"), StartRev: r1 + 1, Snapshot: true})
	z := &itemizer{tb: t}
	var types []string
	for _, m := range msgs {
		types = append(types, m.Type)
		if err := chk.Add(z.item(m)); err != nil {
			t.Fatalf("%v in %+v", err, msgs)
		}
	}
	if err := chk.Complete(r5); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"created", "reset", "events", "synced", "events"}, types); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// unwrapWriter is a middleware's ResponseWriter that hides the server's
// Hijacker but unwraps to it, as the router's middleware does.
type unwrapWriter struct{ w http.ResponseWriter }

func (u *unwrapWriter) Header() http.Header         { return u.w.Header() }
func (u *unwrapWriter) Write(b []byte) (int, error) { return u.w.Write(b) }
func (u *unwrapWriter) WriteHeader(code int)        { u.w.WriteHeader(code) }
func (u *unwrapWriter) Unwrap() http.ResponseWriter { return u.w }

func TestBehindWrappingMiddleware(t *testing.T) {
	ts := newTestServer(t, Options{})
	ts.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.h.ServeHTTP(&unwrapWriter{w}, r)
	})
	c := ts.dial(t)
	c.send(`{"op":"ping"}`)
	if m := c.recv(); m.Type != TypePong {
		t.Fatalf("got %+v", m)
	}
}
