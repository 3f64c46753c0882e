package sse

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/watchgate/watchgate/internal/sseclient"
)

// TestWriteTimeout checks the per-write deadline: a client that stops
// reading is cut off after WriteTimeout, over HTTP/1.1 (the connection) and
// HTTP/2 (the stream alone: the connection's other streams go on).
func TestWriteTimeout(t *testing.T) {
	e := newEnv(t, Options{WriteTimeout: 200 * time.Millisecond})
	big := bytes.Repeat([]byte("v"), 256<<10)
	// fill writes until no stream is served any more.
	fill := func(t *testing.T, want int64) {
		t.Helper()
		for i := 0; e.h.Streams() > want; i++ {
			if i == 400 {
				t.Fatalf("%d streams still served after %d writes of %d bytes", e.h.Streams(), i, len(big))
			}
			if _, err := e.store.Put(context.Background(), []byte("big"), big); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("HTTP/1.1", func(t *testing.T) {
		conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Ask for the stream, then never read.
		fmt.Fprintf(conn, "GET /v1/watch/big HTTP/1.1\r\nHost: watchgate\r\n\r\n")
		waitFor(t, func() bool { return e.h.Streams() == 1 })
		fill(t, 0)
	})

	t.Run("HTTP/2", func(t *testing.T) {
		other := connect(t, e.h2, e.url("small", ""), sseclient.Options{})
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url("big", ""), nil)
		resp, err := e.h2.Do(req) // its body is never read
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		waitFor(t, func() bool { return e.h.Streams() == 2 })
		fill(t, 1)
		// The stream that reads is still served, on the same connection.
		rev := e.put(t, "small", "still here")
		if ev := nextEvent(t, other); ev.ID != fmt.Sprint(rev) || !strings.Contains(ev.Data, "still here") {
			t.Errorf("other stream got %+v", ev)
		}
		if n := e.conns.Load(); n != 2 { // the raw HTTP/1.1 one and this one
			t.Errorf("%d connections", n)
		}
	})

	// A detached stream whose window stays at zero is reset by h2srv.
	t.Run("HTTP/2-h2srv", func(t *testing.T) {
		waitFor(t, func() bool { return e.h.Streams() == 0 })
		other := connect(t, e.hx, e.url("small", ""), sseclient.Options{})
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url("big", ""), nil)
		resp, err := e.hx.Do(req) // its body is never read
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		waitFor(t, func() bool { return e.h.detachedCount() == 2 })
		fill(t, 1)
		rev := e.put(t, "small", "still here too")
		if ev := nextEvent(t, other); ev.ID != fmt.Sprint(rev) || !strings.Contains(ev.Data, "still here too") {
			t.Errorf("other stream got %+v", ev)
		}
		if n := e.connsX.Load(); n != 1 {
			t.Errorf("%d connections to h2srv", n)
		}
	})
}

// TestWatchFutureRev starts a watch at a revision not written yet, as etcd
// allows: nothing before it is sent, and no bookmark behind it either.
func TestWatchFutureRev(t *testing.T) {
	for _, cl := range h2Names {
		t.Run(cl, func(t *testing.T) {
			e := newEnv(t, Options{MinProgress: time.Millisecond})
			cur, _ := e.store.Revisions()
			s := connect(t, e.client(cl), e.url("f", fmt.Sprintf("rev=%d&progress=20ms", cur+3)), sseclient.Options{})
			e.put(t, "f", "1")
			e.put(t, "f", "2")
			r3 := e.put(t, "f", "3")
			for {
				w := nextWire(t, s)
				if w.Type == "progress" {
					if p, err := ParsePosition(w.ID); err != nil || p.Rev < cur+2 {
						t.Fatalf("bookmark %s behind the start %d", w.ID, cur+3)
					}
					continue
				}
				if w.ID != fmt.Sprint(r3) || !strings.Contains(w.Data, `"value":"3"`) {
					t.Fatalf("first event %+v, want the put at %d", w, r3)
				}
				break
			}
		})
	}
}

// TestIdleLongerThanWriteTimeout checks that the write deadline armed by
// a flush does not outlive it: a stream that stays idle for several write
// timeouts (no bookmarks, no heartbeats) is still served, over HTTP/2
// (where an expired deadline resets the stream) and HTTP/1.1.
func TestIdleLongerThanWriteTimeout(t *testing.T) {
	const wt = 100 * time.Millisecond
	e := newEnv(t, Options{WriteTimeout: wt, Heartbeat: -1})
	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			key := "idle-" + strings.ReplaceAll(cl.name, "/", "")
			s := connect(t, cl.c, e.url(key, "progress=0"), sseclient.Options{})
			for i := range 3 {
				rev := e.put(t, key, fmt.Sprint(i))
				if ev := nextEvent(t, s); ev.ID != fmt.Sprint(rev) {
					t.Fatalf("event %d: %+v, want id %d", i, ev, rev)
				}
				time.Sleep(4 * wt)
			}
			if n := e.h.Streams(); n != 1 {
				t.Errorf("%d streams served", n)
			}
		})
	}
}

// TestBusyLongerThanWriteTimeout checks that the write timeout bounds
// each write, not a stream's life: a client that keeps reading while
// events flow for several write timeouts is never cut.
func TestBusyLongerThanWriteTimeout(t *testing.T) {
	const wt = 100 * time.Millisecond
	e := newEnv(t, Options{WriteTimeout: wt, Heartbeat: -1})
	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			key := "busy-" + strings.ReplaceAll(cl.name, "/", "")
			s := connect(t, cl.c, e.url(key, "progress=0"), sseclient.Options{})
			for i, end := 0, time.Now().Add(5*wt); time.Now().Before(end); i++ {
				rev := e.put(t, key, fmt.Sprint(i))
				if ev := nextEvent(t, s); ev.ID != fmt.Sprint(rev) {
					t.Fatalf("event %d: %+v, want id %d", i, ev, rev)
				}
				time.Sleep(wt / 10)
			}
		})
	}
}
