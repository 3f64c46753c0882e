package ws

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// TestManyWatches puts 10,000 watches on one socket and checks that each
// gets exactly its own events.
func TestManyWatches(t *testing.T) {
	const n = 10000
	ts := newTestServer(t, Options{})
	c := ts.dial(t)
	rev0, _ := ts.store.Revisions()
	// Send while reading, as a client does: the server stops reading a
	// client that sends faster than it reads.
	sent := c.sendAll(n, func(i int) string { return fmt.Sprintf(`{"op":"watch","id":"w%d","key":"k/%06d"}`, i, i) })
	for i := range n {
		m := c.recv()
		if m.Type != TypeCreated || m.ID != fmt.Sprintf("w%d", i) || m.Revision != rev0 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	last := ts.putMany(t, "k/", n)
	seen := make([]bool, n)
	var created4242 int64
	for range n {
		m := c.recv()
		var i int
		if _, err := fmt.Sscanf(m.ID, "w%d", &i); err != nil || m.Type != TypeEvents || len(m.Events) != 1 || seen[i] {
			t.Fatalf("unexpected %+v", m)
		}
		seen[i] = true
		if i == 4242 {
			created4242 = m.Events[0].KV.CreateRevision
		}
		if k := *m.Events[0].KV.Key; k != fmt.Sprintf("k/%06d", i) || m.Events[0].KV.Value == nil || m.Revision > last {
			t.Fatalf("watch %d got %+v", i, m)
		}
	}
	// One more write reaches only its watch.
	r := ts.put(t, "k/004242", "x")
	c.send(`{"op":"progress"}`)
	expect(t, c, []Message{
		{Type: TypeEvents, ID: "w4242", Revision: r, Events: []Event{{Type: "put", KV: kvjsonKV("k/004242", "x", created4242, r, 2)}}},
		{Type: TypeProgress, Revision: r},
	})
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if s := ts.hub.Stats(); s.Synced != n {
		t.Errorf("hub stats %+v, want %d synced", s, n)
	}
	sent = c.sendAll(n, func(i int) string { return fmt.Sprintf(`{"op":"cancel","id":"w%d"}`, i) })
	for i := range n {
		if m := c.recv(); m.Type != TypeCanceled || m.ID != fmt.Sprintf("w%d", i) {
			t.Fatalf("cancel %d: %+v", i, m)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if s := ts.hub.Stats(); s.Synced+s.Unsynced+s.Victim != 0 {
		t.Errorf("hub stats after cancel %+v", s)
	}
}

// dialSmallBuffer dials with a small socket receive buffer, so that a
// client that stops reading blocks the server's writes soon.
func (ts *testServer) dialSmallBuffer(tb testing.TB) *client {
	tb.Helper()
	d := &net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{
		Subprotocols: []string{Subprotocol},
		HTTPClient:   &http.Client{Transport: tr},
	})
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(-1)
	tb.Cleanup(func() { c.CloseNow() })
	return &client{tb: tb, c: c}
}

// heapSampler samples the live heap (after a GC) until stopped.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  uint64
	n    int
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func sampleHeap(every time.Duration) *heapSampler {
	s := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			h := liveHeap()
			s.mu.Lock()
			s.max = max(s.max, h)
			s.n++
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *heapSampler) end() (maxHeap uint64, samples int) {
	close(s.stop)
	<-s.done
	return s.max, s.n
}

const mib = 1 << 20

// TestSlowReader: a client that stops reading during a burst of 100,000
// events, then reads again, receives every event in order. Meanwhile the
// server stops pushing to it and later catches it up from history, so its
// live heap stays bounded; the figures are logged.
func TestSlowReader(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000-event burst")
	}
	const n = 100000
	ts := newTestServerWith(t, Options{WriteTimeout: time.Minute},
		watchhub.Options{RecentBytes: 4 * mib},
		kv.Options{MaxTxnOps: 1000})
	c := ts.dialSmallBuffer(t)
	c.send(`{"op":"watch","id":"w","key":"b/","prefix":true,"prev_kv":true}`)
	created := c.recv()
	if created.Type != TypeCreated {
		t.Fatalf("got %+v", created)
	}
	base := liveHeap()
	sampler := sampleHeap(100 * time.Millisecond)
	start := time.Now()
	last := ts.putManyTxn(t, "b/", n, 1000) // the client reads nothing meanwhile
	burst := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	stats := ts.hub.Stats()
	peak, samples := sampler.end()
	t.Logf("burst of %d events in %v; live heap before %.1f MiB, peak while the client did not read %.1f MiB (+%.1f MiB, %d samples); hub %+v",
		n, burst.Round(time.Millisecond), float64(base)/mib, float64(peak)/mib, float64(peak-min(peak, base))/mib, samples, stats)
	if stats.Synced != 0 {
		t.Errorf("the stalled watch is still synced: %+v", stats)
	}

	h := ts.history(t)
	chk := newChecker(t, h, created.Revision+1, "b/")
	z := &itemizer{tb: t}
	msgs := 0
	for chk.Events() < n {
		m := c.recv()
		msgs++
		if err := chk.Add(z.item(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := chk.Complete(last); err != nil {
		t.Fatal(err)
	}
	t.Logf("then received all %d events in order in %d messages", n, msgs)
	// It is live again.
	r := ts.put(t, "b/z", "z")
	if m := c.recv(); m.Type != TypeEvents || m.Revision != r {
		t.Errorf("after catching up: %+v", m)
	}
	// 100,000 events held in memory would take far more than this: the
	// bound is the hub's queue, pending and recent window bounds.
	if grow := peak - min(peak, base); grow > 48*mib {
		t.Errorf("live heap grew by %.1f MiB while the client did not read", float64(grow)/mib)
	}
}

// TestWriteTimeout: a client that reads nothing for the write timeout is
// disconnected, and resumes by revision.
func TestWriteTimeout(t *testing.T) {
	ts := newTestServerWith(t, Options{WriteTimeout: time.Second}, watchhub.Options{}, kv.Options{MaxTxnOps: 1000})
	c := ts.dialSmallBuffer(t)
	c.send(`{"op":"watch","id":"w","key":"b/","prefix":true}`)
	created := c.recv()
	last := ts.putManyTxn(t, "b/", 50000, 1000)
	waitFor(t, "the stalled socket to be closed", func() bool { return ts.h.Connections() == 0 })
	waitFor(t, "its stream to be closed", func() bool { return ts.hub.Stats().Streams == 0 })
	if _, err := c.read(5 * time.Second); err == nil {
		// Some messages were buffered; drain until the close.
		for err == nil {
			_, err = c.read(5 * time.Second)
		}
	}

	c2 := ts.dial(t)
	c2.send(fmt.Sprintf(`{"op":"watch","id":"w","key":"b/","prefix":true,"rev":%d}`, created.Revision+1))
	h := ts.history(t)
	chk := newChecker(t, h, created.Revision+1, "b/")
	z := &itemizer{tb: t}
	for chk.Events() < 50000 {
		if err := chk.Add(z.item(c2.recv())); err != nil {
			t.Fatal(err)
		}
	}
	if err := chk.Complete(last); err != nil {
		t.Fatal(err)
	}
}

// TestWatchBurst: a client that sends watches faster than it reads their
// answers is read from more slowly, never refused.
func TestWatchBurst(t *testing.T) {
	const n = 5000
	ts := newTestServer(t, Options{Stream: streamOptionsSmall})
	c := ts.dialSmallBuffer(t)
	sent := c.sendAll(n, func(i int) string { return fmt.Sprintf(`{"op":"watch","id":"w%d","key":"k/%06d"}`, i, i) })
	time.Sleep(300 * time.Millisecond) // read nothing for a while
	for i := range n {
		if m := c.recv(); m.Type != TypeCreated || m.ID != fmt.Sprintf("w%d", i) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// TestClientCloseDuringBurst: a client that closes while events stream in
// gets the close handshake answered.
func TestClientCloseDuringBurst(t *testing.T) {
	ts := newTestServerWith(t, Options{}, watchhub.Options{}, kv.Options{MaxTxnOps: 1000})
	for round := range 5 {
		c := ts.dial(t)
		c.send(`{"op":"watch","id":"w","key":"b/","prefix":true}`)
		c.recv()
		errc := make(chan error, 1)
		go func() {
			for i := range 20 {
				ops := make([]kv.Op, 1000)
				for j := range ops {
					ops[j] = kv.Op{Type: kv.OpPut, Key: fmt.Appendf(nil, "b/%d/%d/%d", round, i, j), Value: []byte("v")}
				}
				if _, err := ts.store.Txn(context.Background(), kv.TxnRequest{Success: ops}); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for range 3 {
			c.recv()
		}
		if err := c.c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("round %d: close: %v", round, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the socket to close", func() bool { return ts.h.Connections() == 0 })
	}
}
