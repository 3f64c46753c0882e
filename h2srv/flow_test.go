package h2srv

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestPeerInitialWindow checks that the server sends no more than the
// peer's SETTINGS_INITIAL_WINDOW_SIZE, and that a change of it applies to
// open streams.
func TestPeerInitialWindow(t *testing.T) {
	ts := newTestServer(t, echoHandler(), Options{}, false)
	rc := dialRaw(t, ts)
	rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
	rc.request(1, "GET", "/big", true)
	data := func() int {
		f := rc.expect(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
		return len(f.(*http2.DataFrame).Data())
	}
	if n := data(); n != 100 {
		t.Fatalf("first DATA %d bytes, want 100", n)
	}
	rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 250})
	if n := data(); n != 150 {
		t.Fatalf("DATA after the new SETTINGS %d bytes, want 150", n)
	}
	rc.fr.WriteWindowUpdate(1, 20)
	if n := data(); n != 20 {
		t.Fatalf("DATA after WINDOW_UPDATE %d bytes, want 20", n)
	}
	rc.expectAlive()
}

// TestPeerMaxFrameSize checks that DATA frames respect the peer's
// SETTINGS_MAX_FRAME_SIZE, by default 16 KiB.
func TestPeerMaxFrameSize(t *testing.T) {
	ts := newTestServer(t, echoHandler(), Options{}, false)
	rc := dialRaw(t, ts)
	rc.fr.WriteWindowUpdate(0, 1<<30)
	rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	rc.request(1, "GET", "/big", true)
	for range 20 {
		f := rc.expect(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
		if n := len(f.(*http2.DataFrame).Data()); n > 16384 {
			t.Fatalf("DATA of %d bytes over the default MAX_FRAME_SIZE", n)
		}
	}
}

// TestWriteDeadline checks that a write blocked on a closed window fails
// when its deadline passes, and that a deadline set in the past from
// another goroutine aborts a write in progress.
func TestWriteDeadline(t *testing.T) {
	errs := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.URL.Path == "/abort" {
			go func() {
				time.Sleep(200 * time.Millisecond)
				rc.SetWriteDeadline(time.Now().Add(-time.Second))
			}()
		} else {
			rc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		}
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				errs <- err
				return
			}
		}
	})
	ts := newTestServer(t, h, Options{}, false)
	for _, path := range []string{"/deadline", "/abort"} {
		t.Run(path, func(t *testing.T) {
			rc := dialRaw(t, ts)
			rc.request(1, "GET", path, true)
			select {
			case err := <-errs:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("Write: %v, want a deadline error", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the write did not fail")
			}
			rc.expectReset(1, http2.ErrCodeCancel)
		})
	}
}

// TestIdleTimeout checks that a connection without streams is closed
// with GOAWAY after the idle timeout.
func TestIdleTimeout(t *testing.T) {
	ts := newTestServer(t, echoHandler(), Options{IdleTimeout: 200 * time.Millisecond}, false)
	rc := dialRaw(t, ts)
	rc.request(1, "GET", "/", true)
	rc.expect(func(f http2.Frame) bool {
		return f.Header().StreamID == 1 && f.Header().Flags.Has(http2.FlagDataEndStream)
	})
	start := time.Now()
	rc.expectGoAway(http2.ErrCodeNo)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("closed after %v", d)
	}
}

// TestRequestBodyCancel checks that a handler reading a body whose stream
// the client resets gets an error rather than waiting forever.
func TestRequestBodyCancel(t *testing.T) {
	errs := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		errs <- err
	})
	ts := newTestServer(t, h, Options{}, false)
	rc := dialRaw(t, ts)
	rc.request(1, "POST", "/", false)
	rc.fr.WriteData(1, false, []byte("part"))
	rc.fr.WriteRSTStream(1, http2.ErrCodeCancel)
	select {
	case err := <-errs:
		if err == nil {
			t.Error("body read ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("body read hangs after RST_STREAM")
	}
	rc.expectAlive()
}

// TestPing checks that a silent connection gets a PING, and is closed
// when the PING is not acknowledged.
func TestPing(t *testing.T) {
	ts := newTestServer(t, echoHandler(), Options{PingInterval: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond}, false)
	rc := dialRaw(t, ts)
	for range 2 {
		f := rc.expect(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() }).(*http2.PingFrame)
		rc.fr.WritePing(true, f.Data)
	}
	rc.expect(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && !p.IsAck() })
	start := time.Now()
	rc.expectClose()
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("closed %v after an unanswered PING", d)
	}
}

// TestRequestTrailers checks that a request's declared trailers reach
// the handler after its body.
func TestRequestTrailers(t *testing.T) {
	got := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got <- r.Trailer.Get("X-Check")
	})
	ts := newTestServer(t, h, Options{}, false)
	req, _ := http.NewRequest("POST", ts.URL, io.NopCloser(strings.NewReader("body")))
	req.Trailer = http.Header{"X-Check": nil}
	req.ContentLength = -1
	req.Trailer.Set("X-Check", "ok")
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := <-got; v != "ok" {
		t.Errorf("trailer %q, want ok", v)
	}
}
