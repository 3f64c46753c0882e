package h2srv

import (
	"net/http"
	"strings"
	"testing"
	"time"

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
		ts := newTestServer(t, echoHandler(), Options{WriteTimeout: wt}, false)
		rc := dialRaw(t, ts)
		rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
		rc.request(1, http.MethodGet, "/big", true)
		start := time.Now()
		for time.Since(start) < 4*wt {
			f := rc.expect(func(f http2.Frame) bool {
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					t.Fatalf("GOAWAY %v while the window moves", ga.ErrCode)
				}
				d, ok := f.(*http2.DataFrame)
				return ok && len(d.Data()) > 0
			})
			time.Sleep(wt / 4)
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
	const timeout = 200 * time.Millisecond
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
		time.Sleep(timeout / 2)
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
