package h2srv

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawConn is a hand-driven HTTP/2 client connection for hostile peers.
type rawConn struct {
	tb   testing.TB
	nc   net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

// dialRaw connects to ts, sends the preface and an empty SETTINGS, reads
// the server's SETTINGS and acknowledges them.
func dialRaw(tb testing.TB, ts *testServer) *rawConn {
	tb.Helper()
	return dialRawAck(tb, ts, true)
}

// dialRawAck is dialRaw that acknowledges the server's SETTINGS only
// when ack is true.
func dialRawAck(tb testing.TB, ts *testServer, ack bool) *rawConn {
	tb.Helper()
	nc, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	rc := &rawConn{tb: tb, nc: nc}
	rc.fr = http2.NewFramer(nc, nc)
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	if _, err := io.WriteString(nc, clientPreface); err != nil {
		tb.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		tb.Fatal(err)
	}
	rc.expect(func(f http2.Frame) bool {
		sf, ok := f.(*http2.SettingsFrame)
		return ok && !sf.IsAck()
	})
	if !ack {
		return rc
	}
	if err := rc.fr.WriteSettingsAck(); err != nil {
		tb.Fatal(err)
	}
	return rc
}

// headerBlock encodes a GET of path with extra fields (name, value pairs).
func (rc *rawConn) headerBlock(method, path string, extra ...string) []byte {
	rc.hbuf.Reset()
	fields := append([]string{":method", method, ":scheme", "http", ":authority", "x", ":path", path}, extra...)
	for i := 0; i < len(fields); i += 2 {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(rc.hbuf.Bytes())
}

func (rc *rawConn) request(id uint32, method, path string, end bool) {
	rc.tb.Helper()
	err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id,
		BlockFragment: rc.headerBlock(method, path), EndStream: end, EndHeaders: true})
	if err != nil {
		rc.tb.Fatal(err)
	}
}

// expect reads frames until match accepts one; it fails on EOF or after
// 5 seconds.
func (rc *rawConn) expect(match func(http2.Frame) bool) http2.Frame {
	rc.tb.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			rc.tb.Fatalf("waiting for a frame: %v", err)
		}
		if match(f) {
			return f
		}
	}
}

func (rc *rawConn) expectGoAway(code http2.ErrCode) {
	rc.tb.Helper()
	f := rc.expect(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if f.ErrCode != code {
		rc.tb.Fatalf("GOAWAY %v, want %v", f.ErrCode, code)
	}
	rc.expectClose()
}

func (rc *rawConn) expectReset(id uint32, code http2.ErrCode) {
	rc.tb.Helper()
	f := rc.expect(func(f http2.Frame) bool {
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			rc.tb.Fatalf("GOAWAY %v, want RST_STREAM %v", ga.ErrCode, code)
		}
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	}).(*http2.RSTStreamFrame)
	if f.ErrCode != code {
		rc.tb.Fatalf("RST_STREAM %v, want %v", f.ErrCode, code)
	}
}

// expectClose reads until the server closes the connection.
func (rc *rawConn) expectClose() {
	rc.tb.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, rc.nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rc.tb.Fatal("connection not closed")
	}
}

// expectAlive checks the connection still answers a PING.
func (rc *rawConn) expectAlive() {
	rc.tb.Helper()
	if err := rc.fr.WritePing(false, [8]byte{1, 2, 3}); err != nil {
		rc.tb.Fatal(err)
	}
	rc.expect(func(f http2.Frame) bool {
		p, ok := f.(*http2.PingFrame)
		return ok && p.IsAck() && p.Data == [8]byte{1, 2, 3}
	})
}

func blockingHandler(release chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
}

func TestHostilePeers(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		run  func(t *testing.T, rc *rawConn)
	}{
		{"data on a closed stream", Options{}, func(t *testing.T, rc *rawConn) {
			rc.request(1, "GET", "/", true)
			rc.expect(func(f http2.Frame) bool {
				return f.Header().Flags.Has(http2.FlagDataEndStream) && f.Header().StreamID == 1
			})
			rc.fr.WriteData(1, false, []byte("late"))
			rc.expectReset(1, http2.ErrCodeStreamClosed)
			rc.expectAlive()
		}},
		{"stream id going down", Options{}, func(t *testing.T, rc *rawConn) {
			rc.request(5, "GET", "/", true)
			rc.request(3, "GET", "/", true)
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"even stream id", Options{}, func(t *testing.T, rc *rawConn) {
			rc.request(2, "GET", "/", true)
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"data on an idle stream", Options{}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteData(7, false, []byte("x"))
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"window update on an idle stream", Options{}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteWindowUpdate(9, 1)
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"connection window overflow", Options{}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteWindowUpdate(0, 1<<31-1)
			rc.expectGoAway(http2.ErrCodeFlowControl)
		}},
		{"stream window overflow", Options{}, func(t *testing.T, rc *rawConn) {
			rc.request(1, "GET", "/block", true)
			rc.fr.WriteWindowUpdate(1, 1<<31-1)
			rc.expectReset(1, http2.ErrCodeFlowControl)
			rc.expectAlive()
		}},
		{"data past the stream window", Options{StreamWindow: 65535}, func(t *testing.T, rc *rawConn) {
			rc.request(1, "POST", "/block", false)
			chunk := make([]byte, 16384)
			for range 4 {
				rc.fr.WriteData(1, false, chunk)
			}
			rc.expectReset(1, http2.ErrCodeFlowControl)
			rc.expectAlive()
		}},
		{"frame too large", Options{}, func(t *testing.T, rc *rawConn) {
			rc.request(1, "POST", "/", false)
			rc.fr.WriteData(1, false, make([]byte, DefaultMaxReadFrameSize+1))
			rc.expectGoAway(http2.ErrCodeFrameSize)
		}},
		{"too many streams", Options{MaxConcurrentStreams: 2}, func(t *testing.T, rc *rawConn) {
			rc.request(1, "GET", "/block", true)
			rc.request(3, "GET", "/block", true)
			rc.request(5, "GET", "/block", true)
			rc.expectReset(5, http2.ErrCodeRefusedStream)
			rc.expectAlive()
		}},
		{"rapid reset", Options{MaxResetsPerSecond: 1, MaxConcurrentStreams: 10}, func(t *testing.T, rc *rawConn) {
			for id := uint32(1); id < 200; id += 2 {
				rc.request(id, "GET", "/block", true)
				rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		}},
		{"continuation flood", Options{}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock("GET", "/")})
			big := rc.headerBlock("GET", "/", "x-flood", strings.Repeat("a", 16000))
			go func() {
				for range 1000 {
					if rc.fr.WriteContinuation(1, false, big) != nil {
						return
					}
				}
			}()
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"oversized header list", Options{MaxHeaderBytes: 4096}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: rc.headerBlock("GET", "/", "x-a", strings.Repeat("a", 2000),
					"x-b", strings.Repeat("b", 2000), "x-c", strings.Repeat("c", 2000))})
			f := rc.expect(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok }).(*http2.MetaHeadersFrame)
			if got := f.PseudoValue("status"); got != "431" {
				t.Errorf("status %s, want 431", got)
			}
			rc.expectAlive()
		}},
		{"header value over the list limit", Options{MaxHeaderBytes: 4096}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: rc.headerBlock("GET", "/", "x-big", strings.Repeat("b", 5000))})
			rc.expectGoAway(http2.ErrCodeCompression)
		}},
		{"headers without method", Options{}, func(t *testing.T, rc *rawConn) {
			rc.hbuf.Reset()
			rc.henc.WriteField(hpack.HeaderField{Name: ":path", Value: "/"})
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true, BlockFragment: bytes.Clone(rc.hbuf.Bytes())})
			rc.expectReset(1, http2.ErrCodeProtocol)
			rc.expectAlive()
		}},
		{"connection header", Options{}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true,
				BlockFragment: rc.headerBlock("GET", "/", "connection", "close")})
			rc.expectReset(1, http2.ErrCodeProtocol)
			rc.expectAlive()
		}},
		{"content-length mismatch", Options{}, func(t *testing.T, rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: rc.headerBlock("POST", "/", "content-length", "10")})
			rc.fr.WriteData(1, true, []byte("short"))
			rc.expectReset(1, http2.ErrCodeProtocol)
			rc.expectAlive()
		}},
		{"push promise", Options{}, func(t *testing.T, rc *rawConn) {
			rc.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: rc.headerBlock("GET", "/"), EndHeaders: true})
			rc.expectGoAway(http2.ErrCodeProtocol)
		}},
		{"ping flood", Options{}, func(t *testing.T, rc *rawConn) {
			// The client never reads: the server's writes back up and its
			// PING acknowledgements pile up until it gives up.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 1 << 20 {
					if rc.fr.WritePing(false, [8]byte{}) != nil {
						return
					}
				}
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the server kept reading a PING flood")
			}
		}},
		{"settings ack flood of settings", Options{}, func(t *testing.T, rc *rawConn) {
			for range 100 {
				rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
			}
			rc.expectAlive()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			ts := newTestServer(t, blockingHandler(release), tt.opts, false)
			rc := dialRaw(t, ts)
			tt.run(t, rc)
		})
	}
}

func TestBadPreface(t *testing.T) {
	ts := newTestServer(t, blockingHandler(nil), Options{}, false)
	s := ts.h2
	// Through ServeConn, where the Server reads the preface itself.
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(a, nil) }()
	go io.Copy(io.Discard, b)
	io.WriteString(b, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
	select {
	case err := <-done:
		if err == nil {
			t.Error("ServeConn accepted a bad preface")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn hangs on a bad preface")
	}
	b.Close()
}
