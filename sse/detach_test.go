package sse

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/watchgate/watchgate/h2srv"
)

// h2Peer is an HTTP/2 client over x/net's Framer, reading on the
// caller's goroutine: it holds thousands of streams with no goroutine
// each, which Go's client (and the race detector's goroutine limit)
// would not.
type h2Peer struct {
	tb   testing.TB
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
	// status and body are the responses' status and body so far, and
	// ended records END_STREAM or RST_STREAM, by stream id.
	status map[uint32]string
	body   map[uint32][]byte
	ended  map[uint32]bool
}

// dialH2 connects to addr with prior knowledge and opens the connection's
// receive window wide.
func dialH2(tb testing.TB, addr string) *h2Peer {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	p := &h2Peer{tb: tb, nc: nc,
		status: map[uint32]string{}, body: map[uint32][]byte{}, ended: map[uint32]bool{}}
	p.fr = http2.NewFramer(nc, bufio.NewReaderSize(nc, 64<<10))
	p.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	p.henc = hpack.NewEncoder(&p.hbuf)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		tb.Fatal(err)
	}
	if err := p.fr.WriteSettings(); err != nil {
		tb.Fatal(err)
	}
	if err := p.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		tb.Fatal(err)
	}
	return p
}

// get opens stream id with a GET of path.
func (p *h2Peer) get(id uint32, path string) {
	p.tb.Helper()
	p.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "watchgate"}, {":path", path}} {
		_ = p.henc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	err := p.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id,
		BlockFragment: p.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	if err != nil {
		p.tb.Fatal(err)
	}
}

// readUntil reads frames until done is true, for at most 30 seconds.
func (p *h2Peer) readUntil(what string, done func() bool) {
	p.tb.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for !done() {
		f, err := p.fr.ReadFrame()
		if err != nil {
			p.tb.Fatalf("waiting for %s: %v", what, err)
		}
		id := f.Header().StreamID
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := p.fr.WriteSettingsAck(); err != nil {
					p.tb.Fatal(err)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = p.fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			p.status[id] = f.PseudoValue("status")
			if f.StreamEnded() {
				p.ended[id] = true
			}
		case *http2.DataFrame:
			p.body[id] = append(p.body[id], f.Data()...)
			if n := len(f.Data()); n > 0 {
				// Give the stream its window back; the connection's is
				// wide enough for the test.
				if err := p.fr.WriteWindowUpdate(id, uint32(n)); err != nil {
					p.tb.Fatal(err)
				}
			}
			if f.StreamEnded() {
				p.ended[id] = true
			}
		case *http2.RSTStreamFrame:
			p.ended[id] = true
		case *http2.GoAwayFrame:
			p.tb.Fatalf("waiting for %s: GOAWAY %v", what, f.ErrCode)
		}
	}
}

// allFramed returns a condition for readUntil: the streams id(from) to
// id(to-1) have bodies that end with a whole message. It resumes where it
// stopped, so that waiting for n streams costs O(n) in all.
func (p *h2Peer) allFramed(id func(int) uint32, from, to int) func() bool {
	k := from
	return func() bool {
		for ; k < to; k++ {
			if !bytes.HasSuffix(p.body[id(k)], []byte("\n\n")) {
				return false
			}
		}
		return true
	}
}

// detachedCount is the number of streams detached from their handler.
func (h *Handler) detachedCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for s := h.sources; s != nil; s = s.next {
		n++
	}
	return n
}

// TestTenThousandDetached opens 10,000 watch streams over one HTTP/2
// connection to h2srv: every one is detached (no goroutine per stream),
// and one write reaches every one of them exactly once with its id.
func TestTenThousandDetached(t *testing.T) {
	e := newEnv(t, Options{})
	p := dialH2(t, e.srvX.Listener.Addr().String())
	const n, batch = 10000, 500
	id := func(i int) uint32 { return uint32(2*i + 1) }
	for first := 0; first < n; first += batch {
		for i := first; i < first+batch; i++ {
			path := "/v1/watch/m/x"
			if i%2 == 1 {
				path = "/v1/watch/m/?prefix=true"
			}
			p.get(id(i), path)
		}
		// Each answers its header and the retry line before the next
		// batch, so that handlers never pile up.
		p.readUntil("headers and retry lines", p.allFramed(id, first, first+batch))
	}
	for i := range n {
		if st := p.status[id(i)]; st != "200" || p.ended[id(i)] {
			t.Fatalf("stream %d: status %q, ended %v", id(i), st, p.ended[id(i)])
		}
		p.body[id(i)] = nil
	}
	if got := e.h.Streams(); got != n {
		t.Errorf("Streams() = %d, want %d", got, n)
	}
	if got := e.h.detachedCount(); got != n {
		t.Errorf("%d streams detached, want %d", got, n)
	}
	// The handlers have returned: what is left is the servers' and the
	// hub's own goroutines, not one a stream.
	if g := runtime.NumGoroutine(); g > 200 {
		t.Errorf("%d goroutines with %d streams open", g, n)
	}
	if got := e.connsX.Load(); got != 1 {
		t.Errorf("%d connections, want 1", got)
	}

	rev := e.put(t, "m/x", "to all")
	want := fmt.Sprintf("id: %d\nevent: put\n", rev)
	p.readUntil("the event on every stream", p.allFramed(id, 0, n))
	for i := range n {
		b := p.body[id(i)]
		if !bytes.HasPrefix(b, []byte(want)) || bytes.Count(b, []byte("id: ")) != 1 || !bytes.Contains(b, []byte(`"to all"`)) {
			t.Fatalf("stream %d got %q, want one event with id %d", id(i), b, rev)
		}
	}

	// The connection's end closes every detached stream.
	p.nc.Close()
	waitFor(t, func() bool { return e.h.Streams() == 0 && e.h.detachedCount() == 0 })
}

// TestOnEnd checks that Request.OnEnd is called once when the stream
// ends: when Serve returns on its goroutine, and for a detached stream
// not when its handler returns but when the stream ends.
func TestOnEnd(t *testing.T) {
	e := newEnv(t, Options{})
	var served, ended, detachedBytes atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := e.h.ParseRequest(r, []byte("k"))
		if err != nil {
			t.Error(err)
			return
		}
		req.OnEnd = func(n int64) {
			detachedBytes.Store(n)
			ended.Add(1)
		}
		e.h.Serve(w, r, req)
		served.Add(1)
	})
	for _, custom := range []bool{false, true} {
		t.Run(map[bool]string{false: "net/http", true: "h2srv"}[custom], func(t *testing.T) {
			served.Store(0)
			ended.Store(0)
			srv := httptest.NewUnstartedServer(handler)
			srv.Config.Protocols = new(http.Protocols)
			srv.Config.Protocols.SetHTTP1(true)
			srv.Config.Protocols.SetUnencryptedHTTP2(true)
			h2 := h2srv.New(nil, h2srv.Options{})
			if custom {
				srv.Config.TLSNextProto = h2.TLSNextProto()
			}
			srv.Start()
			defer srv.Close()
			defer h2.Close()
			p := dialH2(t, srv.Listener.Addr().String())
			p.get(1, "/")
			p.readUntil("the retry line", p.allFramed(func(int) uint32 { return 1 }, 0, 1))
			if custom {
				waitFor(t, func() bool { return served.Load() == 1 })
				if got := ended.Load(); got != 0 {
					t.Fatalf("OnEnd called %d times while the detached stream is open", got)
				}
			} else if got := served.Load() + ended.Load(); got != 0 {
				t.Fatalf("Serve returned (%d) or OnEnd called (%d) while the stream is open", served.Load(), ended.Load())
			}
			p.nc.Close()
			waitFor(t, func() bool { return ended.Load() == 1 && served.Load() == 1 })
			time.Sleep(50 * time.Millisecond)
			if got := ended.Load(); got != 1 {
				t.Fatalf("OnEnd called %d times", got)
			}
			// A detached stream reports its body (the retry line), which
			// did not go through the ResponseWriter; the other none.
			if n := detachedBytes.Load(); custom != (n > 0) {
				t.Errorf("OnEnd's detached bytes %d", n)
			}
		})
	}
}
