package watchhub

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/watchgate/watchgate/kv"
)

// mixedRequest is the i-th of a mix of watches that writes to
// nonMatchingKey never match: single keys, prefixes and ranges.
func mixedRequest(i int) WatchRequest {
	id := fmt.Sprint("w", i)
	switch i % 5 {
	case 0, 1:
		return WatchRequest{ID: id, Key: fmt.Appendf(nil, "w/%07d", i)}
	case 2, 3:
		p := fmt.Appendf(nil, "p/%07d/", i)
		return WatchRequest{ID: id, Key: p, End: kv.PrefixEnd(p)}
	default:
		return WatchRequest{ID: id, Key: fmt.Appendf(nil, "r/%07d/a", i), End: fmt.Appendf(nil, "r/%07d/m", i)}
	}
}

// nonMatchingKey is the i-th key written by the notify benchmarks: in the
// middle of the watched key space, matched by no mixedRequest watch.
func nonMatchingKey(i, n int) []byte {
	j := i % max(n, 1)
	switch i % 3 {
	case 0:
		return fmt.Appendf(nil, "w/%07dx", j)
	case 1:
		return fmt.Appendf(nil, "p/%07dx", j)
	}
	return fmt.Appendf(nil, "r/%07d/z", j)
}

// registerMixed adds n mixed watches, perStream per stream, and drains
// their created responses.
func registerMixed(tb testing.TB, h *Hub, n, perStream int) []*Stream {
	tb.Helper()
	var streams []*Stream
	var s *Stream
	for i := range n {
		if i%perStream == 0 {
			s = newStream(tb, h, StreamOptions{})
			streams = append(streams, s)
		}
		watch(tb, s, mixedRequest(i))
	}
	var buf []Response
	for _, s := range streams {
		buf = s.Drain(buf[:0])
	}
	return streams
}

// BenchmarkNotify measures a write's cost with n registered watchers that
// it does not match. "put" is the whole write through the real store
// (without fsync, so that the hub's share shows): throughput with 1M
// watchers should be at least 0.95x of none. "notify" is the hub's part
// alone, one committed event handed to the hub's commit subscriber.
func BenchmarkNotify(b *testing.B) {
	for _, n := range []int{0, 10_000, 100_000, 1_000_000} {
		st := openStore(b, kv.Options{})
		h := newHub(b, st, Options{})
		streams := registerMixed(b, h, n, 1000)
		b.Run(fmt.Sprintf("put/watchers=%d", n), func(b *testing.B) {
			ctx := context.Background()
			value := []byte("value-0123456789")
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := st.Put(ctx, nonMatchingKey(i, n), value); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("notify/watchers=%d", n), func(b *testing.B) {
			keys := make([][]byte, 4096)
			for i := range keys {
				keys[i] = nonMatchingKey(i, n)
			}
			prev := &kv.KeyValue{Value: []byte("old"), CreateRevision: 2, ModRevision: 2, Version: 1}
			batch := []kv.Batch{{Events: make([]kv.Event, 1)}}
			rev := h.Revision()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rev++
				k := keys[i%len(keys)]
				batch[0].Revision = rev
				batch[0].Events[0] = kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: k, Value: []byte("v"), CreateRevision: 2, ModRevision: rev, Version: 2}, PrevKV: prev}
				h.notify(batch)
			}
		})
		for _, s := range streams {
			if n := s.queued(); n != 0 {
				b.Fatalf("a non-matching watcher got %d responses", n)
			}
		}
		h.Close()
	}
}

// BenchmarkFanout measures the delivery of one write to 100k matching
// watchers (half on the key, half on a prefix of it), grouped 100 a
// stream (WebSocket-like) or one a stream (SSE-like). The time is the
// write's, which returns after the hub queued the event on every stream;
// draining the streams is not timed.
func BenchmarkFanout(b *testing.B) {
	const watchers = 100_000
	for _, perStream := range []int{100, 1} {
		b.Run(fmt.Sprintf("watchers=%d/per-stream=%d", watchers, perStream), func(b *testing.B) {
			st := openStore(b, kv.Options{})
			h := newHub(b, st, Options{})
			var streams []*Stream
			var s *Stream
			for i := range watchers {
				if i%perStream == 0 {
					s = newStream(b, h, StreamOptions{})
					streams = append(streams, s)
				}
				req := WatchRequest{ID: fmt.Sprint(i), Key: []byte("hot/key")}
				if i%2 == 1 {
					req.Key, req.End = []byte("hot/"), kv.PrefixEnd([]byte("hot/"))
				}
				watch(b, s, req)
			}
			var buf []Response
			drain := func() int {
				n := 0
				for _, s := range streams {
					buf = s.Drain(buf[:0])
					for _, r := range buf {
						n += len(r.Events)
					}
				}
				return n
			}
			drain()
			ctx := context.Background()
			value := []byte("value-0123456789")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.Put(ctx, []byte("hot/key"), value); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if n := drain(); n != watchers {
					b.Fatalf("%d deliveries, want %d", n, watchers)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/watchers, "ns/delivery")
		})
	}
}

// catchUpStore is a store with catchUpRevisions revisions, made once per
// test binary and removed by TestMain.
var catchUp struct {
	once sync.Once
	dir  string
	st   *kv.Store
	err  error
}

const catchUpRevisions = 1_000_000

func catchUpStore(b *testing.B) *kv.Store {
	b.Helper()
	catchUp.once.Do(func() {
		catchUp.dir, catchUp.err = os.MkdirTemp("", "watchhub-bench-")
		if catchUp.err != nil {
			return
		}
		catchUp.st, catchUp.err = kv.Open(catchUp.dir, kv.Options{NoSync: true})
		if catchUp.err != nil {
			return
		}
		const writers = 256
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range catchUpRevisions / writers {
					key := fmt.Appendf(nil, "c/%03d/%02d", w, i%64)
					if _, err := catchUp.st.Put(context.Background(), key, []byte("value-0123456789")); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		catchUp.err = <-errs
	})
	if catchUp.err != nil {
		b.Fatal(catchUp.err)
	}
	return catchUp.st
}

func closeCatchUpStore() {
	if catchUp.st != nil {
		catchUp.st.Close()
	}
	if catchUp.dir != "" {
		os.RemoveAll(catchUp.dir)
	}
}

// BenchmarkCatchUp measures one watcher that starts about 1M revisions
// behind (every key, with prev_kv) and catches up from disk history, in
// events per second, next to the store's own history read rate, which
// bounds it.
func BenchmarkCatchUp(b *testing.B) {
	st := catchUpStore(b)
	last, _ := st.Revisions()
	events := float64(last - 1)
	b.Run("store-history", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for from := int64(2); from <= last; {
				bs, next, err := st.History(context.Background(), from, last, 4096)
				if err != nil {
					b.Fatal(err)
				}
				for _, x := range bs {
					n += len(x.Events)
				}
				from = next
			}
			if n != int(events) {
				b.Fatalf("read %d events, want %v", n, events)
			}
		}
		b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	for _, encode := range []bool{false, true} {
		name := "hub"
		if encode {
			// As a WebSocket transport does: every event's JSON.
			name = "hub-json"
		}
		b.Run(name, func(b *testing.B) {
			h := newHub(b, st, Options{})
			b.ReportAllocs()
			for b.Loop() {
				s, err := h.NewStream(StreamOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Watch(WatchRequest{Key: []byte("c/"), End: kv.PrefixEnd([]byte("c/")), StartRev: 2, PrevKV: true}); err != nil {
					b.Fatal(err)
				}
				n, bytes := 0, 0
				var buf []Response
				for done := false; !done; {
					buf, err = s.Recv(context.Background(), buf[:0])
					if err != nil {
						b.Fatal(err)
					}
					for _, r := range buf {
						n += len(r.Events)
						if encode {
							for _, e := range r.Events {
								bytes += len(e.JSON(r.PrevKV))
							}
						}
						if r.Kind == KindEvents && r.Revision >= last {
							done = true
						}
					}
				}
				s.Close()
				if n != int(events) {
					b.Fatalf("caught up %d events, want %v", n, events)
				}
				if encode && bytes < n*100 {
					b.Fatalf("encoded %d bytes for %d events", bytes, n)
				}
			}
			b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkIdleWatcherMemory measures the heap an idle watcher costs in the
// hub (its watcher, its place in the index, its share of a stream), with
// the mixed watches of BenchmarkNotify, 100 a stream or one a stream.
func BenchmarkIdleWatcherMemory(b *testing.B) {
	for _, perStream := range []int{100, 1} {
		b.Run(fmt.Sprintf("per-stream=%d", perStream), func(b *testing.B) {
			st := openStore(b, kv.Options{})
			h := newHub(b, st, Options{})
			reqs := make([]WatchRequest, b.N)
			for i := range reqs {
				reqs[i] = mixedRequest(i)
			}
			streams := make([]*Stream, 0, b.N/perStream+1)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			var s *Stream
			for i := range reqs {
				if i%perStream == 0 {
					var err error
					if s, err = h.NewStream(StreamOptions{}); err != nil {
						b.Fatal(err)
					}
					streams = append(streams, s)
				}
				if _, err := s.Watch(reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			for _, s := range streams {
				s.Drain(nil)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "B/watcher")
			runtime.KeepAlive(reqs)
			for _, s := range streams {
				s.Close()
			}
		})
	}
}

// BenchmarkIdleWatcherGC measures what 1M idle watchers (the mixed watches
// of BenchmarkNotify, 100 a stream) cost the garbage collector: the time
// of one full collection with them registered, and the heap objects and
// scannable heap bytes each watcher adds. Every cycle of a busy server
// marks this heap, so it is the watchers' share of the server's GC CPU.
func BenchmarkIdleWatcherGC(b *testing.B) {
	const n = 1_000_000
	st := openStore(b, kv.Options{})
	h := newHub(b, st, Options{})
	samples := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/objects:objects"}}
	runtime.GC()
	metrics.Read(samples)
	scan0, objs0 := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	streams := registerMixed(b, h, n, 100)
	runtime.GC()
	metrics.Read(samples)
	scan1, objs1 := samples[0].Value.Uint64(), samples[1].Value.Uint64()
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		runtime.GC()
	}
	// The process's CPU time, steadier than the wall time on a loaded
	// machine: only the collector runs during the loop.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(int64(scan1)-int64(scan0))/n, "scan-B/watcher")
	b.ReportMetric(float64(int64(objs1)-int64(objs0))/n, "objects/watcher")
	runtime.KeepAlive(streams)
}

// processCPU is the user and system CPU time the process has used.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
