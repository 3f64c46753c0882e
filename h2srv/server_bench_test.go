package h2srv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// benchServer serves h over cleartext HTTP/2 with h2srv or with net/http's
// own HTTP/2 server, for A/B comparisons in one run.
func benchServer(b *testing.B, kind string, h http.Handler, maxStreams int) *httptest.Server {
	b.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: maxStreams}
	var s *Server
	if kind == "h2srv" {
		s = New(h, Options{MaxConcurrentStreams: uint32(maxStreams)})
		ts.Config.TLSNextProto = s.TLSNextProto()
	}
	ts.Start()
	b.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		if s != nil {
			s.Close()
		}
	})
	return ts
}

// benchConn is a raw client connection whose windows are wide open.
type benchConn struct {
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	wmu  sync.Mutex
}

func dialBench(b *testing.B, addr string) *benchConn {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	// Buffered reads, or the client would cost two read(2) a frame.
	bc := &benchConn{nc: nc, fr: http2.NewFramer(nc, bufio.NewReaderSize(nc, 64<<10))}
	bc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	bc.fr.SetReuseFrames()
	bc.henc = hpack.NewEncoder(&bc.hbuf)
	io.WriteString(nc, clientPreface)
	bc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	bc.fr.WriteWindowUpdate(0, 1<<30)
	return bc
}

func (bc *benchConn) get(id uint32, path string) {
	bc.wmu.Lock()
	defer bc.wmu.Unlock()
	bc.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
		bc.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	bc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: bc.hbuf.Bytes(), EndStream: true, EndHeaders: true})
}

// readUntil reads frames, acknowledging SETTINGS, until match says so.
func (bc *benchConn) readUntil(b *testing.B, match func(http2.Frame) bool) {
	for {
		f, err := bc.fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			bc.wmu.Lock()
			bc.fr.WriteSettingsAck()
			bc.wmu.Unlock()
		}
		if match(f) {
			return
		}
	}
}

// idleHandler answers a watch-like stream: a header, a flush, then nothing
// until the request ends.
func idleHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, "retry: 2000\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
}

func liveBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}

// BenchmarkIdleStream measures the server's memory (live heap and
// stacks, client included: a raw framer that costs next to nothing a
// stream) for each idle stream with an ordinary handler.
func BenchmarkIdleStream(b *testing.B) {
	for _, kind := range []string{"nethttp", "h2srv"} {
		b.Run(kind, func(b *testing.B) {
			ts := benchServer(b, kind, idleHandler(), 1<<20)
			bc := dialBench(b, ts.Listener.Addr().String())
			before := liveBytes()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				id := uint32(2*i + 1)
				bc.get(id, "/watch")
				bc.readUntil(b, func(f http2.Frame) bool {
					d, ok := f.(*http2.DataFrame)
					return ok && d.StreamID == id
				})
			}
			b.StopTimer()
			after := liveBytes()
			b.ReportMetric(float64(after-before)/float64(b.N), "B/stream")
		})
	}
}

// BenchmarkGet measures a small GET, server and raw client, one at a
// time on one connection.
func BenchmarkGet(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"key":"config/a","value":"on","mod_revision":42}`)
	})
	for _, kind := range []string{"nethttp", "h2srv"} {
		b.Run(kind, func(b *testing.B) {
			ts := benchServer(b, kind, h, 1000)
			bc := dialBench(b, ts.Listener.Addr().String())
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				id := uint32(2*i + 1)
				bc.get(id, "/v1/kv/config/a")
				bc.readUntil(b, func(f http2.Frame) bool {
					return f.Header().StreamID == id && f.Header().Flags.Has(http2.FlagDataEndStream)
				})
			}
		})
	}
}

// BenchmarkFanOut measures one event (an SSE-sized write and flush) to
// each of 1,000 streams on one connection, handlers on goroutines as
// package sse has them: an op ends when the client has read every
// stream's DATA.
func BenchmarkFanOut(b *testing.B) {
	const streams = 1000
	event := []byte("id: 42\nevent: put\ndata: {\"key\":\"config/a\",\"value\":\"on\",\"create_revision\":5,\"mod_revision\":42,\"version\":3}\n\n")
	for _, kind := range []string{"nethttp", "h2srv"} {
		b.Run(kind, func(b *testing.B) {
			var mu sync.Mutex
			cond := sync.NewCond(&mu)
			gen := 0
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				stop := context.AfterFunc(r.Context(), func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
				defer stop()
				seen := 0
				for {
					mu.Lock()
					for gen == seen && r.Context().Err() == nil {
						cond.Wait()
					}
					seen = gen
					mu.Unlock()
					if r.Context().Err() != nil {
						return
					}
					w.Write(event)
					w.(http.Flusher).Flush()
				}
			})
			ts := benchServer(b, kind, h, streams)
			bc := dialBench(b, ts.Listener.Addr().String())
			for i := range streams {
				bc.get(uint32(2*i+1), "/watch")
			}
			n := 0
			bc.readUntil(b, func(f http2.Frame) bool {
				if _, ok := f.(*http2.MetaHeadersFrame); ok {
					n++
				}
				return n == streams
			})
			time.Sleep(100 * time.Millisecond)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				mu.Lock()
				gen++
				cond.Broadcast()
				mu.Unlock()
				got := 0
				bc.readUntil(b, func(f http2.Frame) bool {
					if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
						got++
					}
					return got == streams
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/delivery")
			for i := range streams {
				bc.fr.WriteRSTStream(uint32(2*i+1), http2.ErrCodeCancel)
			}
		})
	}
}

// eventSource is a Source of copies of one event, as a watch's queue of
// pre-encoded events.
type eventSource struct {
	event   []byte
	pending atomic.Int64
	ready   func()
}

func (s *eventSource) Fill(dst []byte, max int) ([]byte, bool) {
	for s.pending.Load() > 0 && len(s.event) <= max {
		dst = append(dst, s.event...)
		max -= len(s.event)
		s.pending.Add(-1)
	}
	return dst, false
}

func (s *eventSource) Close() {}

// detachedHandler detaches every stream to an eventSource it registers.
func detachedHandler(event []byte, reg func(*eventSource)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, "retry: 2000\n\n")
		src := &eventSource{event: event}
		ready, err := Detach(w, src)
		if err != nil {
			panic(err)
		}
		src.ready = ready
		reg(src)
	})
}

// BenchmarkIdleStreamDetached is BenchmarkIdleStream for streams whose
// handler detached them to a Source and returned.
func BenchmarkIdleStreamDetached(b *testing.B) {
	var mu sync.Mutex
	var srcs []*eventSource
	ts := benchServer(b, "h2srv", detachedHandler(nil, func(s *eventSource) {
		mu.Lock()
		srcs = append(srcs, s)
		mu.Unlock()
	}), 1<<20)
	bc := dialBench(b, ts.Listener.Addr().String())
	before := liveBytes()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := uint32(2*i + 1)
		bc.get(id, "/watch")
		bc.readUntil(b, func(f http2.Frame) bool {
			d, ok := f.(*http2.DataFrame)
			return ok && d.StreamID == id
		})
	}
	b.StopTimer()
	after := liveBytes()
	b.ReportMetric(float64(after-before)/float64(b.N), "B/stream")
}

// BenchmarkFanOutDetached is BenchmarkFanOut for detached streams: an op
// queues one event on every stream's Source and calls its ready.
func BenchmarkFanOutDetached(b *testing.B) {
	event := []byte("id: 42\nevent: put\ndata: {\"key\":\"config/a\",\"value\":\"on\",\"create_revision\":5,\"mod_revision\":42,\"version\":3}\n\n")
	for _, streams := range []int{1000, 10000} {
		b.Run(fmt.Sprint(streams), func(b *testing.B) {
			var mu sync.Mutex
			var srcs []*eventSource
			ts := benchServer(b, "h2srv", detachedHandler(event, func(s *eventSource) {
				mu.Lock()
				srcs = append(srcs, s)
				mu.Unlock()
			}), streams)
			bc := dialBench(b, ts.Listener.Addr().String())
			for i := range streams {
				bc.get(uint32(2*i+1), "/watch")
			}
			n := 0
			bc.readUntil(b, func(f http2.Frame) bool {
				if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
					n++
				}
				return n == streams
			})
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for _, s := range srcs {
					s.pending.Add(1)
					s.ready()
				}
				got := 0
				bc.readUntil(b, func(f http2.Frame) bool {
					if d, ok := f.(*http2.DataFrame); ok && len(d.Data()) > 0 {
						got++
					}
					return got == streams
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/delivery")
		})
	}
}

// BenchmarkDownload measures a 256 KiB response written in flushed
// 16 KiB pieces, as a streaming handler writes: an op ends when the
// client has read the END_STREAM.
func BenchmarkDownload(b *testing.B) {
	const size, piece = 256 << 10, 16 << 10
	chunk := bytes.Repeat([]byte("x"), piece)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for range size / piece {
			w.Write(chunk)
			w.(http.Flusher).Flush()
		}
	})
	for _, kind := range []string{"nethttp", "h2srv"} {
		b.Run(kind, func(b *testing.B) {
			ts := benchServer(b, kind, h, 1000)
			bc := dialBench(b, ts.Listener.Addr().String())
			b.ReportAllocs()
			b.SetBytes(size)
			b.ResetTimer()
			for i := range b.N {
				id := uint32(2*i + 1)
				bc.get(id, "/download")
				bc.readUntil(b, func(f http2.Frame) bool {
					return f.Header().StreamID == id && f.Header().Flags.Has(http2.FlagDataEndStream)
				})
				bc.wmu.Lock()
				bc.fr.WriteWindowUpdate(0, size)
				bc.wmu.Unlock()
			}
		})
	}
}
