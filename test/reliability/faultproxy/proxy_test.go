package faultproxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes every connection until the test ends.
func echoServer(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(tb testing.TB, target string, opts Options) *Proxy {
	tb.Helper()
	p, err := New(target, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func payload(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// roundTrip writes b through c and reads back len(b) bytes.
func roundTrip(c net.Conn, b []byte) ([]byte, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(b)
		errc <- err
	}()
	got := make([]byte, len(b))
	_, rerr := io.ReadFull(c, got)
	if err := <-errc; err != nil {
		return got, err
	}
	return got, rerr
}

func TestForwards(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"plain", Options{}},
		{"sliced", Options{Slice: true, MaxSlice: 7, SlicePause: 10 * time.Microsecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProxy(t, echoServer(t), tt.opts)
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := payload(100 << 10)
			got, err := roundTrip(c, want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("bytes changed on the way")
			}
			// The counters move just after each write returns.
			waitFor(t, func() bool {
				s := p.Stats()
				return s.BytesUp == int64(len(want)) && s.BytesDown == int64(len(want))
			})
		})
	}
}

func TestCutAll(t *testing.T) {
	p := newProxy(t, echoServer(t), Options{Seed: 3})
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := roundTrip(c, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if n := p.CutAll(); n != 5 {
		t.Fatalf("cut %d connections, want 5", n)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("connection %d still reads after the cut", i)
		}
	}
	if s := p.Stats(); s.Cuts != 5 {
		t.Fatalf("stats %+v, want 5 cuts", s)
	}
}

func TestCutAfterBytes(t *testing.T) {
	const limit = 1000
	p := newProxy(t, echoServer(t), Options{Seed: 7, CutAfter: limit})
	for i := range 20 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		got, err := roundTrip(c, payload(4*limit))
		c.Close()
		if err == nil {
			t.Fatalf("connection %d carried %d bytes, over the cut limit %d", i, len(got), limit)
		}
	}
	if s := p.Stats(); s.BytesDown > 20*limit || s.Cuts != 20 {
		t.Fatalf("stats %+v: want 20 cuts and at most %d bytes down", s, 20*limit)
	}
}

func TestStall(t *testing.T) {
	p := newProxy(t, echoServer(t), Options{})
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := roundTrip(c, []byte("a")); err != nil {
		t.Fatal(err)
	}
	const d = 300 * time.Millisecond
	if n := p.StallRandom(1, true, d); n != 1 {
		t.Fatalf("stalled %d connections, want 1", n)
	}
	start := time.Now()
	if _, err := roundTrip(c, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < d-10*time.Millisecond {
		t.Fatalf("a stalled connection answered after %v, before the stall of %v ended", el, d)
	}
}

func TestDialFailure(t *testing.T) {
	// The proxy listens first, so that the dead port cannot be its own.
	p := newProxy(t, "", Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.SetTarget(ln.Addr().String())
	ln.Close()
	// The proxy resets the client's connection; on loopback that can be
	// so fast that the client's connect already reports it.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		c.Close()
		if err == nil {
			t.Fatal("a connection to a dead target stayed open")
		}
	}
	waitFor(t, func() bool { return p.Stats().DialFailed == 1 })
	// A new target is used by the next connections.
	p.SetTarget(echoServer(t))
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := roundTrip(c2, []byte("ok")); err != nil {
		t.Fatal(err)
	}
}

func TestCloseEndsStalledConnections(t *testing.T) {
	p, err := New(echoServer(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := roundTrip(c, []byte("a")); err != nil {
		t.Fatal(err)
	}
	p.StallRandom(-1, true, time.Hour)
	c.Write([]byte("stuck"))
	done := make(chan struct{})
	go func() {
		p.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a stall")
	}
	if err := p.Close(); err != ErrClosed {
		t.Fatalf("second Close: %v, want ErrClosed", err)
	}
}

// waitFor waits up to 5s for cond.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
