package h2srv

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http2"
)

// TestConnWindowStalled checks that a peer that opens its streams'
// windows but never the connection's, while streams have bytes ready,
// gets GOAWAY ENHANCE_YOUR_CALM after WriteTimeout and is closed, for
// detached streams as for handlers blocked in Write; and that a peer
// that keeps opening the connection window slowly is not.
func TestConnWindowStalled(t *testing.T) {
	const wt = 200 * time.Millisecond
	tests := []struct {
		name  string
		start func(t *testing.T, rc *rawConn, sources chan *bufSource)
	}{
		{"detached", func(t *testing.T, rc *rawConn, sources chan *bufSource) {
			rc.request(1, http.MethodGet, "/a", true)
			(<-sources).push(strings.Repeat("x", 100000), false)
			rc.request(3, http.MethodGet, "/b", true)
			(<-sources).push("more", false)
		}},
		{"handler", func(t *testing.T, rc *rawConn, sources chan *bufSource) {
			rc.request(1, http.MethodGet, "/big", true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sources := make(chan *bufSource, 2)
			detach := detachHandler(sources)
			echo := echoHandler()
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/big" {
					echo.ServeHTTP(w, r)
					return
				}
				detach.ServeHTTP(w, r)
			})
			ts := newTestServer(t, h, Options{WriteTimeout: wt}, false)
			rc := dialRaw(t, ts)
			// Stream windows wide open; the connection's stays at 65,535.
			rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
			start := time.Now()
			tt.start(t, rc, sources)
			var got int
			f := rc.expect(func(f http2.Frame) bool {
				if d, ok := f.(*http2.DataFrame); ok {
					got += len(d.Data())
				}
				_, ok := f.(*http2.GoAwayFrame)
				return ok
			}).(*http2.GoAwayFrame)
			if f.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", f.ErrCode)
			}
			if d := time.Since(start); d < wt {
				t.Errorf("GOAWAY after %v, before the write timeout", d)
			}
			if got != 65535 {
				t.Errorf("%d bytes of DATA, want the connection window, 65535", got)
			}
			rc.expectClose()
			for range len(sources) {
				src := <-sources
				select {
				case <-src.closed:
				case <-time.After(5 * time.Second):
					t.Fatal("source not closed with the connection")
				}
			}
		})
	}

	t.Run("slow but moving", func(t *testing.T) {
		const wt = 500 * time.Millisecond // with a margin for a loaded machine
		ts := newTestServer(t, echoHandler(), Options{WriteTimeout: wt}, false)
		rc := dialRaw(t, ts)
		rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
		rc.request(1, http.MethodGet, "/big", true)
		start := time.Now()
		for time.Since(start) < 3*wt {
			f := rc.expect(func(f http2.Frame) bool {
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					t.Fatalf("GOAWAY %v while the window moves", ga.ErrCode)
				}
				d, ok := f.(*http2.DataFrame)
				return ok && len(d.Data()) > 0
			})
			time.Sleep(wt / 10)
			rc.fr.WriteWindowUpdate(0, uint32(len(f.(*http2.DataFrame).Data())))
		}
		rc.expectAlive()
		rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	})
}

// TestSettingsAck checks that a peer that does not acknowledge the
// server's SETTINGS within PingTimeout gets GOAWAY SETTINGS_TIMEOUT, that
// one that does is kept past it, and that an acknowledgement of SETTINGS
// never sent is a PROTOCOL_ERROR.
func TestSettingsAck(t *testing.T) {
	const timeout = 500 * time.Millisecond
	opts := Options{PingTimeout: timeout}
	t.Run("never acknowledged", func(t *testing.T) {
		ts := newTestServer(t, echoHandler(), opts, false)
		start := time.Now()
		rc := dialRawAck(t, ts, false)
		// The connection works meanwhile.
		rc.expectAlive()
		rc.expectGoAway(http2.ErrCodeSettingsTimeout)
		if d := time.Since(start); d < timeout {
			t.Errorf("GOAWAY after %v, before the timeout", d)
		}
	})
	t.Run("acknowledged late but in time", func(t *testing.T) {
		ts := newTestServer(t, echoHandler(), opts, false)
		rc := dialRawAck(t, ts, false)
		time.Sleep(timeout / 5)
		rc.fr.WriteSettingsAck()
		time.Sleep(2 * timeout)
		rc.expectAlive()
	})
	t.Run("acknowledged twice", func(t *testing.T) {
		ts := newTestServer(t, echoHandler(), opts, false)
		rc := dialRaw(t, ts)
		rc.fr.WriteSettingsAck()
		rc.expectGoAway(http2.ErrCodeProtocol)
	})
}

// TestEmptyFrames checks that a flood of frames that carry nothing
// (CVE-2019-9518) ends the connection with GOAWAY ENHANCE_YOUR_CALM,
// and that empty frames between frames that do work do not.
func TestEmptyFrames(t *testing.T) {
	const flood = 2 * maxEmptyFrames
	tests := []struct {
		name string
		run  func(t *testing.T, rc *rawConn)
	}{
		{"empty DATA", func(t *testing.T, rc *rawConn) {
			rc.request(1, http.MethodPost, "/block", false)
			for range flood {
				rc.fr.WriteData(1, false, nil)
			}
			rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		}},
		{"empty padded DATA", func(t *testing.T, rc *rawConn) {
			rc.request(1, http.MethodPost, "/block", false)
			for range flood {
				rc.fr.WriteDataPadded(1, false, nil, make([]byte, 10))
			}
			rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		}},
		{"empty HEADERS", func(t *testing.T, rc *rawConn) {
			for id := uint32(1); id < 2*flood; id += 2 {
				rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true})
			}
			rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		}},
		{"empty CONTINUATION", func(t *testing.T, rc *rawConn) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock("GET", "/")})
			for range flood {
				rc.fr.WriteContinuation(1, false, nil)
			}
			rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		}},
		{"zero WINDOW_UPDATE", func(t *testing.T, rc *rawConn) {
			rc.request(1, http.MethodGet, "/block", true)
			for range flood {
				// The Framer refuses to write a zero increment.
				rc.nc.Write([]byte{0, 0, 4, byte(http2.FrameWindowUpdate), 0, 0, 0, 0, 1, 0, 0, 0, 0})
			}
			rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		}},
		{"empty frames between data", func(t *testing.T, rc *rawConn) {
			rc.request(1, http.MethodPost, "/", false)
			for i := range 3 * maxEmptyFrames {
				if i%(maxEmptyFrames/2) == 0 {
					rc.fr.WriteData(1, false, []byte("x"))
					continue
				}
				rc.fr.WriteData(1, false, nil)
			}
			rc.fr.WriteData(1, true, nil)
			f := rc.expect(func(f http2.Frame) bool {
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					t.Fatalf("GOAWAY %v", ga.ErrCode)
				}
				_, ok := f.(*http2.MetaHeadersFrame)
				return ok
			}).(*http2.MetaHeadersFrame)
			if got := f.PseudoValue("status"); got != "200" {
				t.Errorf("status %s, want 200", got)
			}
			rc.expectAlive()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			ts := newTestServer(t, blockingHandler(release), Options{}, false)
			tt.run(t, dialRaw(t, ts))
		})
	}
}

// TestFrameSniffer checks that the sniffer finds the frame boundaries
// however the bytes are split, counting the empty CONTINUATION frames
// without END_HEADERS only.
func TestFrameSniffer(t *testing.T) {
	var raw bytes.Buffer
	fr := http2.NewFramer(&raw, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}})
	fr.WriteContinuation(1, false, nil)                   // counted
	fr.WriteContinuation(1, false, []byte{0, 0, 0, 0, 9}) // payload that looks like a frame header
	fr.WriteData(1, false, bytes.Repeat([]byte{0}, 100000))
	fr.WriteContinuation(1, false, nil) // counted
	fr.WriteContinuation(1, true, nil)  // ends the block: not counted
	fr.WriteData(1, false, nil)         // DATA is counted elsewhere
	for _, chunk := range []int{1, 2, 7, 9, 10, 4096, raw.Len()} {
		t.Run(fmt.Sprintf("chunk=%d", chunk), func(t *testing.T) {
			var empty emptyFrames
			s := &frameSniffer{empty: &empty}
			for b := raw.Bytes(); len(b) > 0; {
				k := min(chunk, len(b))
				s.scan(b[:k])
				b = b[k:]
			}
			if empty.n != 2 || s.nhdr != 0 || s.remain != 0 {
				t.Errorf("counted %d, at header byte %d, %d payload bytes left; want 2, 0, 0", empty.n, s.nhdr, s.remain)
			}
		})
	}
}

// TestGracefulGoAway checks the two-step GOAWAY of a graceful shutdown:
// a request the peer sends after the first GOAWAY left the server (it
// was on its way) is served, and the final GOAWAY names it; without the
// PING's acknowledgement, the final GOAWAY follows after a timeout.
func TestGracefulGoAway(t *testing.T) {
	for _, ack := range []bool{true, false} {
		t.Run(fmt.Sprintf("ack=%v", ack), func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			ts := newTestServer(t, blockingHandler(release), Options{}, false)
			rc := dialRaw(t, ts)
			rc.request(1, http.MethodGet, "/", true)
			rc.expect(func(f http2.Frame) bool {
				return f.Header().StreamID == 1 && f.Header().Flags.Has(http2.FlagDataEndStream)
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ts.h2.Shutdown(ctx) }()

			first := rc.expect(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
			if first.ErrCode != http2.ErrCodeNo || first.LastStreamID != 1<<31-1 {
				t.Errorf("first GOAWAY %v, last stream %d; want NO_ERROR, 2^31-1", first.ErrCode, first.LastStreamID)
			}
			// A request that crossed the GOAWAY.
			rc.request(3, http.MethodGet, "/", true)
			ping := rc.expect(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() }).(*http2.PingFrame)
			start := time.Now()
			if ack {
				rc.fr.WritePing(true, ping.Data)
			}
			var status string
			var final *http2.GoAwayFrame
			rc.expect(func(f http2.Frame) bool {
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					if f.StreamID == 3 {
						status = f.PseudoValue("status")
					}
				case *http2.RSTStreamFrame:
					t.Errorf("stream %d reset: %v", f.StreamID, f.ErrCode)
				case *http2.GoAwayFrame:
					final = f
				}
				return final != nil && status != ""
			})
			if status != "200" {
				t.Errorf("status %s of the request sent after the first GOAWAY, want 200", status)
			}
			if final.ErrCode != http2.ErrCodeNo || final.LastStreamID != 3 {
				t.Errorf("final GOAWAY %v, last stream %d; want NO_ERROR, 3", final.ErrCode, final.LastStreamID)
			}
			if d := time.Since(start); !ack && d < goAwayNoticeTimeout/2 {
				t.Errorf("final GOAWAY %v after an unanswered PING, want about %v", d, goAwayNoticeTimeout)
			}
			rc.expectClose()
			rc.nc.Close()
			if err := <-done; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

// TestInadequateTLS checks RFC 9113 section 9.2: HTTP/2 over TLS older
// than 1.2, or TLS 1.2 with a prohibited cipher suite, gets GOAWAY
// INADEQUATE_SECURITY as its only frame; TLS 1.2 with ECDHE and AEAD,
// and TLS 1.3, are served. The http.Server's
// HTTP2.PermitProhibitedCipherSuites lets the suites through, not the
// old versions; ServeConn handshakes a *tls.Conn first and checks the
// same.
func TestInadequateTLS(t *testing.T) {
	newServer := func(permit bool) string {
		s := New(echoHandler(), Options{})
		ts := httptest.NewUnstartedServer(echoHandler())
		ts.TLS = &tls.Config{MinVersion: tls.VersionTLS10}
		ts.EnableHTTP2 = true
		ts.Config.TLSNextProto = s.TLSNextProto()
		ts.Config.HTTP2 = &http.HTTP2Config{PermitProhibitedCipherSuites: permit}
		ts.StartTLS()
		t.Cleanup(func() {
			ts.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
		return ts.Listener.Addr().String()
	}
	// serveConn accepts connections and hands them to ServeConn before
	// their TLS handshake.
	serveConn := func() string {
		cert := httptest.NewUnstartedServer(nil)
		cert.StartTLS()
		certs := cert.TLS.Certificates
		cert.Close()
		s := New(echoHandler(), Options{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				cfg := &tls.Config{Certificates: certs, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS10}
				wg.Go(func() { s.ServeConn(tls.Server(c, cfg), nil) })
			}
		})
		t.Cleanup(func() {
			ln.Close()
			s.Close()
			wg.Wait()
		})
		return ln.Addr().String()
	}
	servers := []struct {
		name   string
		addr   string
		permit bool
	}{
		{"TLSNextProto", newServer(false), false},
		{"PermitProhibitedCipherSuites", newServer(true), true},
		{"ServeConn", serveConn(), false},
	}
	tests := []struct {
		name    string
		version uint16
		suite   uint16
		ok      bool
		permit  bool // ok when prohibited suites are permitted
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false, false},
		{"TLS 1.1", tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, false, false},
		{"TLS 1.2 CBC", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false, true},
		{"TLS 1.2 GCM", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true, true},
		{"TLS 1.2 ChaCha20", tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true, true},
		{"TLS 1.3", tls.VersionTLS13, 0, true, true},
	}
	for _, srv := range servers {
		for _, tt := range tests {
			t.Run(srv.name+"/"+tt.name, func(t *testing.T) {
				cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"},
					MinVersion: tt.version, MaxVersion: tt.version}
				if tt.suite != 0 {
					cfg.CipherSuites = []uint16{tt.suite}
				}
				tc, err := tls.Dial("tcp", srv.addr, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer tc.Close()
				st := tc.ConnectionState()
				if st.NegotiatedProtocol != "h2" || st.Version != tt.version || (tt.suite != 0 && st.CipherSuite != tt.suite) {
					t.Fatalf("negotiated %q, %s, %s", st.NegotiatedProtocol, tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
				}
				rc := &rawConn{tb: t, nc: tc, fr: http2.NewFramer(tc, tc)}
				io.WriteString(tc, clientPreface)
				rc.fr.WriteSettings()
				_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
				f, err := rc.fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				if tt.ok || (srv.permit && tt.permit) {
					if _, ok := f.(*http2.SettingsFrame); !ok {
						t.Fatalf("first frame %v, want SETTINGS", f)
					}
					rc.fr.WriteSettingsAck()
					rc.expectAlive()
					return
				}
				ga, ok := f.(*http2.GoAwayFrame)
				if !ok || ga.ErrCode != http2.ErrCodeInadequateSecurity {
					t.Fatalf("first frame %v, want GOAWAY INADEQUATE_SECURITY", f)
				}
				rc.expectClose()
			})
		}
	}
}

// TestHTTP2Config checks that the http.Server's HTTP2 settings,
// MaxHeaderBytes and IdleTimeout are adopted where Options leaves them
// zero (advertised in SETTINGS and enforced), and that Options wins.
func TestHTTP2Config(t *testing.T) {
	const (
		sendPing  = 400 * time.Millisecond
		pingWait  = 800 * time.Millisecond
		writeWait = 200 * time.Millisecond
	)
	configure := func(hs *http.Server) {
		hs.HTTP2 = &http.HTTP2Config{
			MaxConcurrentStreams:          3,
			MaxReadFrameSize:              32 << 10,
			MaxReceiveBufferPerStream:     100000,
			MaxReceiveBufferPerConnection: 200000,
			SendPingTimeout:               sendPing,
			PingTimeout:                   pingWait,
			WriteByteTimeout:              writeWait,
		}
		hs.MaxHeaderBytes = 8192
		hs.IdleTimeout = 5 * time.Second
	}
	release := make(chan struct{})
	defer close(release)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			echoHandler().ServeHTTP(w, r)
			return
		}
		blockingHandler(release).ServeHTTP(w, r)
	})
	ts := newTestServerConfig(t, h, Options{}, false, configure)

	t.Run("settings", func(t *testing.T) {
		tests := []struct {
			name    string
			ts      *testServer
			want    map[http2.SettingID]uint32
			connInc uint32 // the connection's WINDOW_UPDATE
		}{
			{"defaults", newTestServer(t, h, Options{}, false), map[http2.SettingID]uint32{
				http2.SettingMaxFrameSize: DefaultMaxReadFrameSize, http2.SettingMaxConcurrentStreams: DefaultMaxConcurrentStreams,
				http2.SettingInitialWindowSize: DefaultStreamWindow, http2.SettingMaxHeaderListSize: http.DefaultMaxHeaderBytes},
				DefaultConnWindow - 65535},
			{"from HTTP2Config", ts, map[http2.SettingID]uint32{
				http2.SettingMaxFrameSize: 32 << 10, http2.SettingMaxConcurrentStreams: 3,
				http2.SettingInitialWindowSize: 100000, http2.SettingMaxHeaderListSize: 8192},
				200000 - 65535},
			{"Options first", newTestServerConfig(t, h, Options{MaxConcurrentStreams: 9, MaxReadFrameSize: 1 << 16,
				StreamWindow: 70000, ConnWindow: 300000, MaxHeaderBytes: 4096}, false, configure), map[http2.SettingID]uint32{
				http2.SettingMaxFrameSize: 1 << 16, http2.SettingMaxConcurrentStreams: 9,
				http2.SettingInitialWindowSize: 70000, http2.SettingMaxHeaderListSize: 4096},
				300000 - 65535},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				nc, err := net.Dial("tcp", tt.ts.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				fr := http2.NewFramer(nc, nc)
				io.WriteString(nc, clientPreface)
				fr.WriteSettings()
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatal(err)
				}
				sf, ok := f.(*http2.SettingsFrame)
				if !ok {
					t.Fatalf("first frame %v", f.Header())
				}
				got := map[http2.SettingID]uint32{}
				sf.ForeachSetting(func(s http2.Setting) error { got[s.ID] = s.Val; return nil })
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("SETTINGS (-want +got):\n%s", diff)
				}
				f, err = fr.ReadFrame()
				if wu, ok := f.(*http2.WindowUpdateFrame); err != nil || !ok || wu.StreamID != 0 || wu.Increment != tt.connInc {
					t.Errorf("after SETTINGS %v, %v; want the connection's WINDOW_UPDATE of %d", f, err, tt.connInc)
				}
			})
		}
	})
	t.Run("max concurrent streams", func(t *testing.T) {
		rc := dialRaw(t, ts)
		for id := uint32(1); id <= 7; id += 2 {
			rc.request(id, http.MethodGet, "/block", true)
		}
		rc.expectReset(7, http2.ErrCodeRefusedStream)
		rc.expectAlive()
	})
	t.Run("max read frame size", func(t *testing.T) {
		rc := dialRaw(t, ts)
		rc.request(1, http.MethodPost, "/", false)
		rc.fr.WriteData(1, false, make([]byte, 32<<10))
		rc.expectAlive()
		rc.fr.WriteData(1, false, make([]byte, 32<<10+1))
		rc.expectGoAway(http2.ErrCodeFrameSize)
	})
	t.Run("write byte timeout", func(t *testing.T) {
		rc := dialRaw(t, ts)
		rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
		rc.request(1, http.MethodGet, "/big", true)
		start := time.Now()
		rc.expectGoAway(http2.ErrCodeEnhanceYourCalm)
		// Not the default 10 s, which expect would not wait for.
		if d := time.Since(start); d < writeWait {
			t.Errorf("GOAWAY after %v, before WriteByteTimeout %v", d, writeWait)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		const idle = 200 * time.Millisecond
		ts := newTestServerConfig(t, h, Options{}, false, func(hs *http.Server) { hs.IdleTimeout = idle })
		rc := dialRaw(t, ts)
		start := time.Now()
		rc.expectGoAway(http2.ErrCodeNo)
		if d := time.Since(start); d < idle {
			t.Errorf("idle connection closed after %v, want %v", d, idle)
		}
	})
	t.Run("ping", func(t *testing.T) {
		rc := dialRaw(t, ts)
		start := time.Now()
		rc.expect(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() })
		if d := time.Since(start); d < sendPing/2 {
			t.Errorf("PING after %v of silence, want %v", d, sendPing)
		}
		rc.expectClose()
		if d := time.Since(start); d < sendPing+pingWait/2 {
			t.Errorf("closed %v after the unanswered PING was sent, want %v", d-sendPing, pingWait)
		}
	})
}

// TestResponseBuffers checks responses written in pieces of every size,
// flushed or not, on concurrent streams of one connection: each client
// gets exactly its bytes, whatever the pooled buffers beneath.
func TestResponseBuffers(t *testing.T) {
	body := func(seed int64) ([]byte, []int, []bool) {
		r := rand.New(rand.NewSource(seed))
		var data []byte
		var pieces []int
		var flush []bool
		for len(data) < 300<<10 {
			n := r.Intn(40 << 10)
			if r.Intn(3) == 0 {
				n = r.Intn(100)
			}
			p := make([]byte, n)
			r.Read(p)
			data = append(data, p...)
			pieces = append(pieces, n)
			flush = append(flush, r.Intn(2) == 0)
		}
		return data, pieces, flush
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seed, _ := strconv.ParseInt(r.URL.Query().Get("seed"), 10, 64)
		data, pieces, flush := body(seed)
		for i, n := range pieces {
			if _, err := w.Write(data[:n]); err != nil {
				return
			}
			data = data[n:]
			if flush[i] {
				w.(http.Flusher).Flush()
			}
		}
	})
	ts := newTestServer(t, h, Options{}, false)
	var wg sync.WaitGroup
	for seed := range int64(20) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := ts.client.Get(fmt.Sprintf("%s/?seed=%d", ts.URL, seed))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			want, _, _ := body(seed)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("seed %d: %d bytes (%v), want %d, equal %v", seed, len(got), err, len(want), bytes.Equal(got, want))
			}
		}()
	}
	wg.Wait()
}

// TestHandlerStalled checks that a handler's stream whose send window
// stays at zero for WriteTimeout, its output waiting, is reset and its
// Write fails, with no write deadline set, while a stream of the same
// connection that is read goes on.
func TestHandlerStalled(t *testing.T) {
	const wt = 200 * time.Millisecond
	errs := make(chan error, 2)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1000)
		for {
			if _, err := w.Write(chunk); err != nil {
				errs <- err
				return
			}
			w.(http.Flusher).Flush()
			if r.URL.Path == "/read" {
				time.Sleep(wt / 20)
			}
		}
	})
	ts := newTestServer(t, h, Options{WriteTimeout: wt}, false)
	rc := dialRaw(t, ts)
	// Only the streams' windows limit the server.
	rc.fr.WriteWindowUpdate(0, 1<<30)
	rc.request(1, http.MethodGet, "/stalled", true)
	rc.request(3, http.MethodGet, "/read", true)
	start := time.Now()
	var reset *http2.RSTStreamFrame
	for (reset == nil || time.Since(start) < 3*wt) && time.Since(start) < 5*time.Second {
		f := rc.expect(func(f http2.Frame) bool {
			if r, ok := f.(*http2.RSTStreamFrame); ok {
				if r.StreamID != 1 || r.ErrCode != http2.ErrCodeCancel {
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
		rc.fr.WriteWindowUpdate(3, uint32(len(f.(*http2.DataFrame).Data())))
	}
	if reset == nil {
		t.Fatal("the stalled stream was not reset")
	}
	select {
	case err := <-errs:
		if !errors.Is(err, ErrStreamClosed) {
			t.Errorf("stalled handler's Write: %v, want ErrStreamClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled handler's Write did not fail")
	}
	select {
	case err := <-errs:
		t.Fatalf("the handler being read failed: %v", err)
	default:
	}
	rc.expectAlive()
	rc.fr.WriteRSTStream(3, http2.ErrCodeCancel)
	<-errs
}

// TestUnreadBodies checks that request bodies no handler reads are
// buffered up to the connection's window, 1 MiB by default as in
// net/http, and no more: past it the peer violates flow control.
func TestUnreadBodies(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	ts := newTestServer(t, blockingHandler(release), Options{}, false)
	rc := dialRaw(t, ts)
	for id := uint32(1); id <= 5; id += 2 {
		rc.request(id, http.MethodPost, "/block", false)
	}
	chunk := make([]byte, 16<<10)
	for i := range DefaultConnWindow / len(chunk) {
		rc.fr.WriteData(uint32(1+2*(i%3)), false, chunk)
	}
	rc.expectAlive()
	rc.fr.WriteData(1, false, []byte("x"))
	rc.expectGoAway(http2.ErrCodeFlowControl)
}

// TestCountError checks that the errors the server sends are reported to
// the http.Server's HTTP2.CountError.
func TestCountError(t *testing.T) {
	var mu sync.Mutex
	var got []string
	release := make(chan struct{})
	defer close(release)
	ts := newTestServerConfig(t, blockingHandler(release), Options{}, false, func(hs *http.Server) {
		hs.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 1, CountError: func(name string) {
			mu.Lock()
			got = append(got, name)
			mu.Unlock()
		}}
	})
	rc := dialRaw(t, ts)
	rc.request(1, http.MethodGet, "/block", true)
	rc.request(3, http.MethodGet, "/block", true)
	rc.expectReset(3, http2.ErrCodeRefusedStream)
	rc.request(4, http.MethodGet, "/", true)
	rc.expectGoAway(http2.ErrCodeProtocol)
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"stream_refused_stream", "conn_protocol_error"}, got); diff != "" {
		t.Errorf("CountError (-want +got):\n%s", diff)
	}
}
