package httpapi

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// metricValue returns the value of the sample whose line starts with
// series (name and labels as Prometheus writes them), or -1.
func metricValue(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	s := newTestServer(t, Options{Metrics: m}, kvOptionsForTest())
	_, cancel := s.store.Subscribe(m.ObserveCommits)
	defer cancel()
	s.put(t, "a", "1")
	s.put(t, "b", "2")
	s.do(t, req{path: "/v1/kv/a"})
	s.do(t, req{path: "/v1/kv/missing"})
	s.do(t, req{method: http.MethodPost, path: "/v1/txn", body: `{"success":[{"put":{"key":"c","value":"3"}},{"put":{"key":"d","value":"4"}}]}`})
	w := s.openWatch(t, s.h2, "/v1/watch/a", nil)
	sock := s.dialWS(t, nil)
	sock.send(t, `{"op":"watch","id":"w","key":"b","prefix":true}`)
	sock.expect(t, "created", "w")
	_ = w
	badHTTP2Request(t, s.Listener.Addr().String())

	resp := s.do(t, req{path: "/metrics"})
	mustStatus(t, resp, http.StatusOK)
	text := string(resp.body)
	for series, want := range map[string]float64{
		`watchgate_http_requests_total{code="201",method="PUT",route="/v1/kv/*"}`: 2,
		`watchgate_http_requests_total{code="200",method="GET",route="/v1/kv/*"}`: 1,
		`watchgate_http_requests_total{code="404",method="GET",route="/v1/kv/*"}`: 1,
		`watchgate_http_requests_total{code="200",method="POST",route="/v1/txn"}`: 1,
		`watchgate_write_duration_seconds_count{method="PUT",route="/v1/kv/*"}`:   2,
		`watchgate_write_duration_seconds_count{method="POST",route="/v1/txn"}`:   1,
		`watchgate_commit_events_total`:                                           4,
		`watchgate_revision`:                                                      float64(s.revision()),
		`watchgate_compact_revision`:                                              1,
		`watchgate_keys`:                                                          4,
		`watchgate_watchers{group="synced"}`:                                      2,
		`watchgate_watchers{group="victim"}`:                                      0,
		`watchgate_connections{transport="sse"}`:                                  1,
		`watchgate_connections{transport="ws"}`:                                   1,
		`watchgate_hub_streams`:                                                   2,
		`watchgate_ready`:                                                         1,
		`watchgate_limited_total{limit="write_rate"}`:                             0,
		`watchgate_http2_errors_total{type="stream_protocol_error"}`:              1,
	} {
		if got := metricValue(text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// Three commits (two puts, one transaction of two puts) of one
	// revision each, unless two were grouped.
	if c := metricValue(text, "watchgate_commit_revisions_count"); c < 2 || c > 3 {
		t.Errorf("watchgate_commit_revisions_count = %v", c)
	}
	if metricValue(text, "watchgate_db_size_bytes") <= 0 || !strings.Contains(text, "go_goroutines") || !strings.Contains(text, "process_") {
		t.Errorf("store size, Go or process metrics missing:\n%.2000s", text)
	}
	// Route patterns, never raw paths: keys do not become label values.
	if regexp.MustCompile(`route="/v1/kv/a"`).MatchString(text) {
		t.Errorf("a raw path is a label value")
	}
}

func TestPprof(t *testing.T) {
	off := newTestServer(t, Options{}, kvOptionsForTest())
	resp, _ := off.rawDo(t, http.MethodGet, "/debug/pprof/cmdline", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("pprof served without the option: %d", resp.StatusCode)
	}
	on := newTestServer(t, Options{Pprof: true, Access: testPolicy(t, tokAdmin)}, kvOptionsForTest())
	resp, _ = on.rawDo(t, http.MethodGet, "/debug/pprof/cmdline", nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("pprof without a token: %d", resp.StatusCode)
	}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1"} {
		start := time.Now()
		resp, body := on.rawDo(t, http.MethodGet, p, bearer(tokAdmin.token))
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("%s: %d, %d bytes in %v", p, resp.StatusCode, len(body), time.Since(start))
		}
	}
}

// badHTTP2Request sends, over a cleartext HTTP/2 connection of its own, a
// request with a connection-specific header, which HTTP/2 forbids, and
// waits for the server's RST_STREAM.
func badHTTP2Request(tb testing.TB, addr string) {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		tb.Fatal(err)
	}
	fr := http2.NewFramer(nc, nc)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", addr}, {":path", "/healthz"}, {"connection", "close"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteSettings(); err != nil {
		tb.Fatal(err)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		tb.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			tb.Fatalf("reading the answer to a bad request: %v", err)
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.ErrCode != http2.ErrCodeProtocol {
				tb.Fatalf("RST_STREAM %v, want PROTOCOL_ERROR", rst.ErrCode)
			}
			return
		}
	}
}
