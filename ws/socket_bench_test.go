package ws

import (
	"fmt"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// memInUse is the live heap plus goroutine stacks, after a GC.
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// BenchmarkMemory measures what an open socket and a watch cost the
// server: sockets are opened, measured, then given watches and measured
// again. It reports bytes per socket and per watch, and extrapolates to
// 1,000,000 watches over 1,000 sockets (target: at most 1 GiB). The
// clients are raw RFC 6455 clients in the same process; they hold about
// 1 KiB each (a TCP connection and a 512-byte read buffer), counted in
// B/socket, so the figure is an upper bound.
//
//	go test -run '^$' -bench Memory -benchtime 1x ./ws
func BenchmarkMemory(b *testing.B) {
	for _, tc := range []struct {
		name             string
		sockets, watches int
		watch            func(s, i int) string
	}{
		{"key", 1000, 100, func(s, i int) string {
			return `{"op":"watch","id":"w` + strconv.Itoa(i) + `","key":"k/` + strconv.Itoa(s) + `/` + strconv.Itoa(i) + `"}`
		}},
		{"key", 1000, 1000, func(s, i int) string {
			return `{"op":"watch","id":"w` + strconv.Itoa(i) + `","key":"k/` + strconv.Itoa(s) + `/` + strconv.Itoa(i) + `"}`
		}},
		{"prefix", 1000, 100, func(s, i int) string {
			return `{"op":"watch","id":"w` + strconv.Itoa(i) + `","key":"k/` + strconv.Itoa(s) + `/` + strconv.Itoa(i) + `/","prefix":true}`
		}},
	} {
		b.Run(fmt.Sprintf("%s/sockets=%d/watches=%d", tc.name, tc.sockets, tc.watches), func(b *testing.B) {
			b.ReportAllocs()
			ts := newTestServer(b, Options{})
			var perSocket, perWatch float64
			for b.Loop() {
				m0 := memInUse()
				clients := make([]*rawClient, tc.sockets)
				for s := range clients {
					clients[s] = dialRaw(b, ts.url, 512)
				}
				waitFor(b, "sockets", func() bool { return ts.h.Connections() == tc.sockets })
				m1 := memInUse()
				for s, c := range clients {
					for i := range tc.watches {
						c.queue(tc.watch(s, i))
					}
					if err := c.flush(); err != nil {
						b.Fatal(err)
					}
				}
				for _, c := range clients {
					if err := c.expectPrefix(tc.watches, `{"type":"created"`); err != nil {
						b.Fatal(err)
					}
				}
				m2 := memInUse()
				perSocket = float64(int64(m1)-int64(m0)) / float64(tc.sockets)
				perWatch = float64(int64(m2)-int64(m1)) / float64(tc.sockets*tc.watches)
				for _, c := range clients {
					c.close()
				}
				waitFor(b, "sockets to close", func() bool { return ts.h.Connections() == 0 })
			}
			b.ReportMetric(perSocket, "B/socket")
			b.ReportMetric(perWatch, "B/watch")
			b.ReportMetric((1000*perSocket+1e6*perWatch)/(1<<20), "MiB/1M-watches-1k-sockets")
		})
	}
}

// BenchmarkDeliver measures one write delivered to 100,000 watches over
// the socket path: from the Put call until every client has read its
// events messages (target: at most 50 ms). All watches watch the same
// key; the clients are raw RFC 6455 clients reading in the same process.
// cpu-ns/delivery is the process's CPU time (user and system, server and
// clients) per watch and write: the figure to compare, as wall time on a
// shared machine is noisy; the clients' part is a frame header and a
// prefix check per message.
//
//	go test -run '^$' -bench Deliver ./ws
func BenchmarkDeliver(b *testing.B) {
	large := watchhub.StreamOptions{MaxQueueResponses: 1 << 17, MaxQueueBytes: 64 << 20}
	hubDefault := watchhub.StreamOptions{MaxQueueResponses: 256, MaxQueueBytes: 1 << 20}
	for _, tc := range []struct {
		name             string
		sockets, watches int
		stream           watchhub.StreamOptions
		onSend           bool
	}{
		// The handler's default queue: the larger of 8192 responses and
		// MaxWatches (here the number of watches), of 8 MiB and 512 bytes
		// a watch.
		{"queue=default", 1, 100000, watchhub.StreamOptions{}, false},
		{"queue=default", 10, 10000, watchhub.StreamOptions{}, false},
		{"queue=default", 100, 1000, watchhub.StreamOptions{}, false},
		// With OnSend set, as the server sets it for its delivery metrics.
		{"queue=default/onsend", 10, 10000, watchhub.StreamOptions{}, true},
		// A queue that holds the whole write.
		{"queue=large", 1, 100000, large, false},
		{"queue=large", 100, 1000, large, false},
		// The hub's default for one stream: most watches become victims.
		{"queue=hub-default", 100, 1000, hubDefault, false},
	} {
		b.Run(fmt.Sprintf("%s/sockets=%d/watches=%d", tc.name, tc.sockets, tc.watches), func(b *testing.B) {
			b.ReportAllocs()
			opts := Options{Stream: tc.stream, MaxWatches: tc.watches}
			if tc.onSend {
				opts.OnSend = func(int, time.Time) {}
			}
			ts := newTestServerWith(b, opts, watchhub.Options{}, kv.Options{})
			clients := make([]*rawClient, tc.sockets)
			for s := range clients {
				c := dialRaw(b, ts.url, 64<<10)
				clients[s] = c
				for i := range tc.watches {
					c.queue(`{"op":"watch","id":"w` + strconv.Itoa(i) + `","key":"hot"}`)
					if len(c.wbuf) > 32<<10 {
						if err := c.flush(); err != nil {
							b.Fatal(err)
						}
						if err := c.expectPrefix(i+1-int(c.pending), `{"type":"created"`); err != nil {
							b.Fatal(err)
						}
						c.pending = int64(i + 1)
					}
				}
				if err := c.flush(); err != nil {
					b.Fatal(err)
				}
				if err := c.expectPrefix(tc.watches-int(c.pending), `{"type":"created"`); err != nil {
					b.Fatal(err)
				}
			}
			value := []byte("v")
			var total time.Duration
			cpu0 := processCPU(b)
			for b.Loop() {
				start := time.Now()
				if _, err := ts.store.Put(b.Context(), []byte("hot"), value); err != nil {
					b.Fatal(err)
				}
				for _, c := range clients {
					if err := c.expectPrefix(tc.watches, `{"type":"events"`); err != nil {
						b.Fatal(err)
					}
				}
				total += time.Since(start)
			}
			for _, c := range clients {
				c.close()
			}
			cpu := processCPU(b) - cpu0
			b.ReportMetric(float64(tc.sockets*tc.watches), "watches")
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/write")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*tc.sockets*tc.watches), "cpu-ns/delivery")
		})
	}
}

// processCPU is the CPU time, user and system, the process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
