package sse_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/sse"
	"github.com/watchgate/watchgate/watchhub"
)

// BenchmarkFanoutFloor measures one event reaching n streams on one
// cleartext HTTP/2 connection, server and a raw-frame client in this
// process, one op being one event received by every stream:
//
//   - floor: net/http's HTTP/2 server with a minimal handler per stream
//     that waits for a broadcast and writes and flushes one pre-encoded
//     message: what net/http costs a delivery whatever the handler does;
//   - sse: a put to a store (without fsync) watched by the sse.Handler
//     on every stream, through the hub;
//   - sse-h2srv: the same served by package h2srv, whose streams the
//     handler detaches (no goroutine a stream), also for 10,000 streams.
//
// cpu-ns/delivery is the process's CPU time (getrusage) per stream
// delivery: both sides of the connection, and the store's write.
func BenchmarkFanoutFloor(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		if n <= 1000 {
			b.Run("floor/streams="+strconv.Itoa(n), func(b *testing.B) {
				bc := &broadcast{ch: make(chan struct{})}
				benchFanout(b, n, floorStreamHandler(bc), bc.send, false)
			})
			b.Run("sse/streams="+strconv.Itoa(n), func(b *testing.B) { benchFanoutSSE(b, n, false) })
		}
		b.Run("sse-h2srv/streams="+strconv.Itoa(n), func(b *testing.B) { benchFanoutSSE(b, n, true) })
	}
}

// benchFanoutSSE is benchFanout of the sse.Handler on a real store and
// hub, served by net/http or with custom by package h2srv.
func benchFanoutSSE(b *testing.B, n int, custom bool) {
	store, err := kv.Open(b.TempDir(), kv.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hub, err := watchhub.New(store, watchhub.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	h := sse.NewHandler(hub, store, sse.Options{Progress: -1, Heartbeat: -1})
	value := make([]byte, 100)
	benchFanout(b, n, h, func() {
		if _, err := store.Put(context.Background(), []byte("mem/k"), value); err != nil {
			b.Error(err)
		}
	}, custom)
}

// benchFanout serves h, opens n streams of /v1/watch/mem/k and calls
// send once an op, waiting until every stream has had one more DATA frame.
func benchFanout(b *testing.B, n int, h http.Handler, send func(), custom bool) {
	srv := newH2Server(h, n, custom)
	defer srv.Close()
	c, err := dialH2(srv.Listener.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.close()
	for i := range n {
		c.open(uint32(2*i+1), "/v1/watch/mem/k")
	}
	if err := c.waitOpen(n); err != nil {
		b.Fatal(err)
	}
	// The first DATA frame of each stream (the retry line) is not an
	// event: wait for them before counting.
	deadline := time.Now().Add(30 * time.Second)
	for c.data.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	base := c.data.Load()
	cpu0 := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c.dataWant.Store(base + int64(n)*int64(i+1))
		send()
		select {
		case <-c.ndata:
		case <-time.After(30 * time.Second):
			b.Fatalf("op %d: %d of %d deliveries", i, c.data.Load()-base-int64(n)*int64(i), n)
		}
	}
	b.StopTimer()
	d := float64(n) * float64(b.N)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/d, "ns/delivery")
	b.ReportMetric(float64(processCPU()-cpu0)/d, "cpu-ns/delivery")
}

// processCPU is the process's user and system CPU time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// broadcast wakes every waiting floor handler once per send.
type broadcast struct {
	mu  sync.Mutex
	gen int
	ch  chan struct{} // closed by the next send
}

// after returns a channel that is closed once a send after generation
// seen has happened, and that generation.
func (bc *broadcast) after(seen int) (<-chan struct{}, int) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if bc.gen > seen {
		ch := make(chan struct{})
		close(ch)
		return ch, seen + 1
	}
	return bc.ch, seen + 1
}

func (bc *broadcast) send() {
	bc.mu.Lock()
	close(bc.ch)
	bc.ch = make(chan struct{})
	bc.gen++
	bc.mu.Unlock()
}

// floorStreamHandler streams one pre-encoded event per broadcast.
func floorStreamHandler(bc *broadcast) http.Handler {
	msg := []byte("id: 42\nevent: put\ndata: {\"key\":\"mem/k\",\"value\":\"" +
		"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=" +
		"\",\"create_revision\":2,\"mod_revision\":42,\"version\":41}\n\n")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_, _ = w.Write([]byte("retry: 2000\n\n"))
		_ = rc.Flush()
		seen := 0
		for {
			ch, next := bc.after(seen)
			select {
			case <-ch:
			case <-r.Context().Done():
				return
			}
			seen = next
			if _, err := w.Write(msg); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
	})
}
