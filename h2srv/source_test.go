package h2srv

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
)

// bufSource is a Source over a byte queue that a test appends to.
type bufSource struct {
	mu     sync.Mutex
	buf    []byte
	end    bool
	closed chan struct{}
	ready  func()
}

func newBufSource() *bufSource { return &bufSource{closed: make(chan struct{})} }

func (s *bufSource) Fill(dst []byte, max int) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(max, len(s.buf))
	dst = append(dst, s.buf[:n]...)
	s.buf = s.buf[n:]
	return dst, s.end && len(s.buf) == 0
}

func (s *bufSource) Close() { close(s.closed) }

func (s *bufSource) push(p string, end bool) {
	s.mu.Lock()
	s.buf = append(s.buf, p...)
	s.end = end
	ready := s.ready
	s.mu.Unlock()
	ready()
}

// detachHandler detaches every request to a new bufSource it sends on
// sources.
func detachHandler(sources chan<- *bufSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "retry: 1000\n\n")
		src := newBufSource()
		src.mu.Lock()
		ready, err := Detach(w, src)
		if err != nil {
			src.mu.Unlock()
			http.Error(w, err.Error(), 500)
			return
		}
		src.ready = ready
		src.mu.Unlock()
		sources <- src
	})
}

func TestDetach(t *testing.T) {
	sources := make(chan *bufSource, 1)
	ts := newTestServer(t, detachHandler(sources), Options{StreamWindow: 65535}, false)
	resp, err := ts.client.Get(ts.URL + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	src := <-sources
	lines := bufio.NewReader(resp.Body)
	read := func() string {
		l, err := lines.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if got := read() + read(); got != "retry: 1000\n\n" {
		t.Fatalf("first bytes %q", got)
	}
	// More than the windows, through many Fills.
	var want strings.Builder
	for i := range 20000 {
		ev := fmt.Sprintf("id: %d\n", i)
		want.WriteString(ev)
		src.push(ev, false)
	}
	var got strings.Builder
	for got.Len() < want.Len() {
		got.WriteString(read())
	}
	if diff := cmp.Diff(want.String(), got.String()); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff[:min(len(diff), 500)])
	}
	src.push("end\n", true)
	rest, err := io.ReadAll(lines)
	if err != nil || string(rest) != "end\n" {
		t.Fatalf("end of the body %q, %v", rest, err)
	}
	select {
	case <-src.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("source not closed at the end")
	}
}

// TestDetachNoGoroutine checks that detached streams keep no goroutine,
// and that a client's reset closes their source.
func TestDetachNoGoroutine(t *testing.T) {
	const n = 200
	sources := make(chan *bufSource, n)
	ts := newTestServer(t, detachHandler(sources), Options{}, false)
	// Warm up the connection.
	resp, err := ts.client.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	src0 := <-sources
	var resps []*http.Response
	for range n {
		resp, err := ts.client.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		resps = append(resps, resp)
	}
	var srcs []*bufSource
	for range n {
		srcs = append(srcs, <-sources)
	}
	time.Sleep(50 * time.Millisecond)
	// The server's goroutines: the connection's reader and writer, and no
	// handler.
	buf := make([]byte, 1<<22)
	stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
	server := 0
	for _, st := range stacks {
		if strings.Contains(st, "h2srv.(*") {
			server++
		}
	}
	if server != 2 {
		t.Errorf("%d server goroutines for %d detached streams, want 2", server, n)
	}
	for _, r := range append(resps, resp) {
		r.Body.Close()
	}
	for _, s := range append(srcs, src0) {
		select {
		case <-s.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("source not closed after the client's reset")
		}
	}
}

// TestDetachStalled checks that a detached stream whose peer stops
// opening its window is reset after WriteTimeout and its source closed,
// while a stream of the same connection that is read goes on, past
// several write timeouts.
func TestDetachStalled(t *testing.T) {
	const wt = 200 * time.Millisecond
	sources := make(chan *bufSource, 2)
	ts := newTestServer(t, detachHandler(sources), Options{WriteTimeout: wt}, false)
	rc := dialRaw(t, ts)
	// Only the streams' windows limit the server.
	if err := rc.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	rc.request(1, http.MethodGet, "/stalled", true)
	stalled := <-sources
	rc.request(3, http.MethodGet, "/read", true)
	read := <-sources
	// More than the stream's initial window of 65,535 bytes.
	stalled.push(strings.Repeat("x", 100000), false)
	start := time.Now()
	var reset *http2.RSTStreamFrame
	for i := 0; time.Since(start) < 3*wt; i++ {
		read.push(fmt.Sprintf("id: %d\n", i), false)
		f := rc.expect(func(f http2.Frame) bool {
			if r, ok := f.(*http2.RSTStreamFrame); ok {
				if r.StreamID != 1 {
					t.Fatalf("stream %d reset: %v", r.StreamID, r.ErrCode)
				}
				reset = r
				if d := time.Since(start); d < wt {
					t.Errorf("stalled stream reset after %v, before the write timeout", d)
				}
			}
			d, ok := f.(*http2.DataFrame)
			return ok && d.StreamID == 3 && len(d.Data()) > 0
		})
		n := len(f.(*http2.DataFrame).Data())
		if err := rc.fr.WriteWindowUpdate(3, uint32(n)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(wt / 20)
	}
	if reset == nil {
		rc.expectReset(1, http2.ErrCodeCancel)
	} else if reset.ErrCode != http2.ErrCodeCancel {
		t.Errorf("stalled stream reset with %v, want CANCEL", reset.ErrCode)
	}
	select {
	case <-stalled.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled stream's source not closed")
	}
	select {
	case <-read.closed:
		t.Fatal("the stream being read was closed")
	default:
	}
	rc.expectAlive()
}
