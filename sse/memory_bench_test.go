package sse_test

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/watchgate/watchgate/h2srv"
	"github.com/watchgate/watchgate/httpapi"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/sse"
	"github.com/watchgate/watchgate/watchhub"
)

var (
	memStreams     = flag.Int("streammem.n", 4000, "idle streams BenchmarkStreamMemory opens on one HTTP/2 connection")
	memHeapProfile = flag.String("streammem.heapprofile", "", "write BenchmarkStreamMemory's heap profiles, with the streams open, to this file name prefix")
)

// BenchmarkStreamMemory opens idle watch streams over one cleartext HTTP/2
// connection to a real server on loopback and reports what each costs the
// server after a few garbage collections: live heap, goroutine stack
// (memory the runtime holds for stacks) and goroutines. The client is one
// goroutine on raw frames, so the process's figures are the server's.
//
//   - floor: net/http's HTTP/2 server with a minimal streaming handler
//     (WriteHeader, Flush, wait for the end of the request): what net/http
//     costs whatever the handler does;
//   - sse: the sse.Handler alone, on a real store and hub;
//   - httpapi: the whole API server (router, middleware, access, limits);
//   - sse-h2srv, httpapi-h2srv: the same served by package h2srv, whose
//     streams the handler detaches (no goroutine a stream).
//
// The streams have been idle for longer than half their write timeout.
// Run with -benchtime 1x; -streammem.n sets the number of streams.
func BenchmarkStreamMemory(b *testing.B) {
	cases := []struct {
		name    string
		handler func(tb testing.TB, n int) http.Handler
	}{
		{"floor", func(testing.TB, int) http.Handler { return http.HandlerFunc(floorHandler) }},
		{"sse", func(tb testing.TB, _ int) http.Handler {
			store, hub := memHub(tb)
			return sse.NewHandler(hub, store, sse.Options{WriteTimeout: memWriteTimeout})
		}},
		{"httpapi", func(tb testing.TB, n int) http.Handler {
			store, hub := memHub(tb)
			s, err := httpapi.New(store, httpapi.Options{Hub: hub, MaxStreams: n + 1,
				SSE: sse.Options{WriteTimeout: memWriteTimeout}})
			if err != nil {
				tb.Fatal(err)
			}
			return s
		}},
	}
	for _, tc := range cases {
		if tc.name != "floor" {
			cases = append(cases, struct {
				name    string
				handler func(tb testing.TB, n int) http.Handler
			}{tc.name + "-h2srv", tc.handler})
		}
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			n := *memStreams
			var heap, stack, gs float64
			for b.Loop() {
				h, s, g := measureStreams(b, tc.handler(b, n), n, tc.name)
				heap, stack, gs = heap+h, stack+s, gs+g
			}
			k := float64(b.N)
			b.ReportMetric(heap/k, "heap-B/stream")
			b.ReportMetric(stack/k, "stack-B/stream")
			b.ReportMetric((heap+stack)/k, "B/stream")
			b.ReportMetric(gs/k, "goroutines/stream")
		})
	}
}

// memWriteTimeout is the streams' write timeout: the figures are taken
// once the write deadline of the first flush has been cleared, as on a
// stream that has been idle for WriteTimeout/2.
const memWriteTimeout = 2 * time.Second

// floorHandler is the least a streaming handler does.
func floorHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	<-r.Context().Done()
}

// memHub opens a store and a hub that live until the benchmark ends.
func memHub(tb testing.TB) (*kv.Store, *watchhub.Hub) {
	store, err := kv.Open(tb.TempDir(), kv.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	hub, err := watchhub.New(store, watchhub.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { hub.Close() })
	return store, hub
}

// measureStreams serves h, opens n streams on one connection and returns
// the server's heap bytes, stack bytes and goroutines per open stream.
func measureStreams(tb testing.TB, h http.Handler, n int, name string) (heap, stack, goroutines float64) {
	srv := newH2Server(h, n+1, strings.HasSuffix(name, "-h2srv"))
	defer srv.Close()

	c, err := dialH2(srv.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.close()
	// A first stream warms the handler up (pools, lazily built state).
	c.open(1, "/v1/watch/mem/0")
	if err := c.waitOpen(1); err != nil {
		tb.Fatal(err)
	}
	before := memSample()
	for i := 1; i < n+1; i++ {
		c.open(uint32(2*i+1), "/v1/watch/mem/"+strconv.Itoa(i%100))
	}
	if err := c.waitOpen(n + 1); err != nil {
		tb.Fatal(err)
	}
	time.Sleep(memWriteTimeout)
	after := memSample()
	if *memHeapProfile != "" {
		f, err := os.Create(*memHeapProfile + "." + name + ".pprof")
		if err != nil {
			tb.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			tb.Fatal(err)
		}
		f.Close()
	}
	k := float64(n)
	return float64(after.heap-before.heap) / k, float64(after.stack-before.stack) / k,
		float64(after.goroutines-before.goroutines) / k
}

// newH2Server starts h on loopback, cleartext HTTP/2 with up to
// maxStreams streams a connection, by net/http or with custom by package
// h2srv.
func newH2Server(h http.Handler, maxStreams int, custom bool) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: maxStreams}
	if custom {
		srv.Config.Protocols.SetHTTP1(true) // the handoff goes through net/http's HTTP/1 side
		srv.Config.TLSNextProto = h2srv.New(nil, h2srv.Options{}).TLSNextProto()
	}
	srv.Start()
	return srv
}

type memFigures struct{ heap, stack, goroutines int64 }

// memSample collects garbage until the stacks have shrunk (each cycle
// halves a stack that uses under a quarter of it) and reads the runtime's
// figures.
func memSample() memFigures {
	for range 4 {
		runtime.GC()
	}
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/sched/goroutines:goroutines"},
	}
	metrics.Read(s)
	return memFigures{int64(s[0].Value.Uint64()), int64(s[1].Value.Uint64()), int64(s[2].Value.Uint64())}
}

// h2Conn is a minimal HTTP/2 client on one connection: it opens GET
// streams and one goroutine reads every frame, answering settings and
// pings and counting the streams answered 200.
type h2Conn struct {
	nc net.Conn

	wmu sync.Mutex
	fw  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer

	mu     sync.Mutex
	cond   *sync.Cond
	opened int
	err    error
	done   chan struct{}
	// data counts the DATA frames with a payload; ndata is signalled
	// each time it reaches dataWant.
	data     atomic.Int64
	dataWant atomic.Int64
	ndata    chan struct{}
}

func dialH2(addr string) (*h2Conn, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h2Conn{nc: nc, fw: http2.NewFramer(nc, nil), done: make(chan struct{}), ndata: make(chan struct{}, 1)}
	c.dataWant.Store(-1)
	c.cond = sync.NewCond(&c.mu)
	c.enc = hpack.NewEncoder(&c.hb)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		nc.Close()
		return nil, err
	}
	c.wmu.Lock()
	err = c.fw.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	if err == nil {
		err = c.fw.WriteWindowUpdate(0, 1<<30)
	}
	c.wmu.Unlock()
	if err != nil {
		nc.Close()
		return nil, err
	}
	go c.read()
	return c, nil
}

func (c *h2Conn) open(id uint32, path string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hb.Reset()
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "watchgate"}, {Name: ":path", Value: path},
		{Name: "accept", Value: "text/event-stream"},
	} {
		_ = c.enc.WriteField(f)
	}
	if err := c.fw.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		c.fail(err)
	}
}

func (c *h2Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

// waitOpen waits until n streams have been answered 200, or 60s.
func (c *h2Conn) waitOpen(n int) error {
	t := time.AfterFunc(60*time.Second, func() { c.fail(errors.New("streams not answered in 60s")) })
	defer t.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.opened < n && c.err == nil {
		c.cond.Wait()
	}
	return c.err
}

func (c *h2Conn) read() {
	defer close(c.done)
	// Buffered: a frame a read(2) would make the client the cost.
	fr := http2.NewFramer(nil, bufio.NewReaderSize(c.nc, 64<<10))
	// Each frame is used before the next is read: allocations a delivery
	// are the server's, not a DATA frame struct of the client's.
	fr.SetReuseFrames()
	status := ""
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			status = f.Value
		}
	})
	// Received bytes not yet given back to the windows.
	unread := map[uint32]int{}
	connUnread := 0
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			c.fail(err)
			return
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if len(f.Data()) > 0 && c.data.Add(1) == c.dataWant.Load() {
				c.ndata <- struct{}{}
			}
			n := int(f.Header().Length)
			unread[f.StreamID] += n
			connUnread += n
			if u := unread[f.StreamID]; u >= 1<<19 {
				unread[f.StreamID] = 0
				c.wmu.Lock()
				_ = c.fw.WriteWindowUpdate(f.StreamID, uint32(u))
				c.wmu.Unlock()
			}
			if connUnread >= 1<<20 {
				c.wmu.Lock()
				_ = c.fw.WriteWindowUpdate(0, uint32(connUnread))
				c.wmu.Unlock()
				connUnread = 0
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fw.WriteSettingsAck()
				c.wmu.Unlock()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				_ = c.fw.WritePing(true, f.Data)
				c.wmu.Unlock()
			}
		case *http2.HeadersFrame:
			status = ""
			if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
				c.fail(err)
				return
			}
			if !f.HeadersEnded() {
				c.fail(errors.New("CONTINUATION frames not handled"))
				return
			}
			if status != "200" {
				c.fail(fmt.Errorf("stream %d: status %q", f.StreamID, status))
				return
			}
			c.mu.Lock()
			c.opened++
			c.cond.Broadcast()
			c.mu.Unlock()
		case *http2.RSTStreamFrame:
			c.fail(fmt.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode))
			return
		case *http2.GoAwayFrame:
			c.fail(fmt.Errorf("go away: %v", f.ErrCode))
			return
		}
	}
}

func (c *h2Conn) close() {
	c.nc.Close()
	<-c.done
}
