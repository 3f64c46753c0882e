package httpapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/kv"
)

// BenchmarkPut measures durable writes over HTTP/1.1 on loopback: the real
// handler and store, 100-byte values, new keys, with 1 and 256 concurrent
// clients on a keep-alive pool, with fsync (as served) and without
// (kv.Options.NoSync, which only a benchmark can set). Besides ns/op it
// reports puts/s and the p50 and p99 latency of one PUT.
func BenchmarkPut(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		for _, clients := range []int{1, 256} {
			b.Run(fmt.Sprintf("fsync=%v/clients=%d", fsync, clients), func(b *testing.B) {
				benchmarkPut(b, !fsync, clients, false)
			})
		}
	}
}

// BenchmarkPutAccess is BenchmarkPut without fsync, so that the cost of
// the access check (a bearer token hashed and looked up, the key's prefix
// checked, the write rate bucket) stands out, against the same without an
// access file.
func BenchmarkPutAccess(b *testing.B) {
	for _, access := range []bool{false, true} {
		for _, clients := range []int{1, 64} {
			b.Run(fmt.Sprintf("access=%v/clients=%d", access, clients), func(b *testing.B) {
				benchmarkPut(b, true, clients, access)
			})
		}
	}
}

func benchmarkPut(b *testing.B, noSync bool, clients int, withAccess bool) {
	log := zerolog.New(io.Discard)
	opts := Options{Logger: &log}
	if withAccess {
		var tokens []testToken
		for i := 0; i < 100; i++ {
			tokens = append(tokens, testToken{name: "t" + strconv.Itoa(i), token: "wg_" + strconv.Itoa(i),
				read: []string{"tenant" + strconv.Itoa(i) + "/"}, write: []string{"tenant" + strconv.Itoa(i) + "/"}})
		}
		tokens = append(tokens, testToken{name: "bench", token: "wg_bench", read: []string{"bench/"}, write: []string{"bench/"}})
		opts.Access = testPolicy(b, tokens...)
		opts.WriteRate = 1e9
	}
	s := newTestServer(b, opts, kv.Options{NoSync: noSync})
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	value := bytes.Repeat([]byte("v"), 100)

	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				req, _ := http.NewRequest(http.MethodPut, s.URL+"/v1/kv/bench/"+strconv.FormatInt(i, 10), bytes.NewReader(value))
				if withAccess {
					req.Header.Set("Authorization", "Bearer wg_bench")
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[c] = append(lat[c], time.Since(t0))
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("PUT: %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "puts/s")
	// Server and client together: both run in this process.
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(all)), "cpu-µs/op")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// discardWriter is a reusable http.ResponseWriter that keeps the header
// and the status and discards the body.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// SetReadDeadline is there because a connection has it (the handler sets
// one before reading a body).
func (w *discardWriter) SetReadDeadline(time.Time) error { return nil }

// BenchmarkPutHandler measures the server's own work for one PUT, without
// a network or an HTTP client: the handler chain (middleware, routing,
// access log, metrics, the JSON answer) and a NoSync store, 256 writers
// over 10,000 keys (so that writes share group commits as they do under
// load). allocs/op and B/op are the server's per write.
func BenchmarkPutHandler(b *testing.B) {
	log := zerolog.New(io.Discard)
	s := newTestServer(b, Options{Logger: &log}, kv.Options{NoSync: true})
	value := bytes.Repeat([]byte("v"), 100)
	paths := make([]string, 10000)
	for i := range paths {
		paths[i] = "/v1/kv/bench/" + strconv.Itoa(i)
	}
	proto, _ := http.NewRequest(http.MethodPut, "http://example.com/", nil)
	proto.RemoteAddr = "127.0.0.1:1234"
	proto.Header.Set("Content-Type", "application/octet-stream")
	proto.ContentLength = int64(len(value))
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(128)
	cpu0 := processCPU()
	defer func() {
		b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	}()
	b.RunParallel(func(pb *testing.PB) {
		body := bytes.NewReader(value)
		w := &discardWriter{h: make(http.Header)}
		for pb.Next() {
			r := *proto
			u := *proto.URL
			u.Path = paths[next.Add(1)%int64(len(paths))]
			r.URL = &u
			body.Reset(value)
			r.Body = io.NopCloser(body)
			clear(w.h)
			s.api.ServeHTTP(w, &r)
			if w.status/100 != 2 {
				b.Errorf("PUT: %d", w.status)
				return
			}
		}
	})
}

// processCPU is the CPU time (user and system) the process has used, which
// unlike the elapsed time does not grow when other processes share the
// cores.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
