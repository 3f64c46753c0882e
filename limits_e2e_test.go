package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"

	"github.com/watchgate/watchgate/access"
)

// TestServerTimeouts checks --read-header-timeout (a client that never
// finishes its headers is cut), --idle-timeout (an idle keep-alive
// connection is closed) and --http2-max-streams (advertised in the
// server's SETTINGS).
func TestServerTimeouts(t *testing.T) {
	addr, _, _ := startRun(t, []string{"--read-header-timeout", "300ms", "--idle-timeout", "300ms", "--http2-max-streams", "1234"}, nil)

	closedWithin := func(c net.Conn, what string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the connection is still open after %v", what, time.Since(start))
			return
		}
		if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") {
			t.Errorf("%s: got %q before the close", what, b)
		}
	}
	// Headers that never end.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	closedWithin(c, "slow headers")

	// An idle keep-alive connection.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c2)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d, close %v", resp.StatusCode, resp.Close)
	}
	closedWithin(c2, "idle connection")

	// HTTP/2 SETTINGS.
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c3, http2.ClientPreface)
	fr := http2.NewFramer(c3, c3)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 1234 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d (%v), want 1234", v, ok)
	}
}

// TestBinaryFlood floods the binary with bad, oversized, unauthorised,
// forbidden, over-rate and over-limit requests and slow connections,
// while a good client writes keys and watches them over SSE (HTTP/2) and
// a WebSocket: every good write must be acknowledged, both watches must
// see every one of them exactly once and in order, and no flood request
// may get a 5xx.
func TestBinaryFlood(t *testing.T) {
	file := filepath.Join(t.TempDir(), "access.yaml")
	good, flood := access.NewToken(), access.NewToken()
	writeAccessFile(t, file, map[string]string{"good": good, "flood": flood})
	p := startBinary(t, t.TempDir(), "--access-file", file, "--write-rate", "300", "--write-burst", "300",
		"--max-streams", "8", "--max-value-size", "1024", "--max-key-size", "64", "--max-txn-ops", "4",
		"--read-header-timeout", "1s")
	const goodWrites = 40

	// The good client's watches, opened before the flood.
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	defer h2.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/v1/watch/good/?prefix=true&format=ndjson", nil)
	req.Header.Set("Authorization", "Bearer "+good)
	sresp, err := (&http.Client{Transport: h2}).Do(req)
	if err != nil || sresp.StatusCode != 200 {
		t.Fatalf("good watch: %v %v", err, sresp)
	}
	defer sresp.Body.Close()
	sock, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.base, "http")+"/v1/ws", &websocket.DialOptions{
		Subprotocols: []string{"watchgate.v1"}, HTTPHeader: http.Header{"Authorization": {"Bearer " + good}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.CloseNow()
	sock.SetReadLimit(1 << 20)
	sock.Write(ctx, websocket.MessageText, []byte(`{"op":"watch","id":"g","key":"good/","prefix":true}`))

	// The flood.
	var (
		mu       sync.Mutex
		statuses = map[string]map[int]int{} // kind -> status -> count
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	record := func(kind string, status int) {
		mu.Lock()
		defer mu.Unlock()
		if statuses[kind] == nil {
			statuses[kind] = map[int]int{}
		}
		statuses[kind][status]++
	}
	floodClient := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	big := bytes.Repeat([]byte("x"), 4096)
	kinds := []struct {
		name string
		req  func() *http.Request
	}{
		{"oversized value", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/flood/big", bytes.NewReader(big))
			r.Header.Set("Authorization", "Bearer "+flood)
			return r
		}},
		{"oversized chunked value", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/flood/big", io.MultiReader(bytes.NewReader(big), bytes.NewReader(big)))
			r.ContentLength = -1
			r.Header.Set("Authorization", "Bearer "+flood)
			return r
		}},
		{"oversized key", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/flood/"+strings.Repeat("k", 100), strings.NewReader("v"))
			r.Header.Set("Authorization", "Bearer "+flood)
			return r
		}},
		{"malformed txn", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, p.base+"/v1/txn", strings.NewReader(`{"success":[{"put":`))
			r.Header.Set("Authorization", "Bearer "+flood)
			return r
		}},
		{"too many ops", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, p.base+"/v1/txn", strings.NewReader(`{"success":[`+strings.Repeat(`{"get":{"key":"flood/a"}},`, 9)+`{"get":{"key":"flood/a"}}]}`))
			r.Header.Set("Authorization", "Bearer "+flood)
			return r
		}},
		{"no token", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/good/stolen", strings.NewReader("v"))
			return r
		}},
		{"bad token", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/good/stolen", strings.NewReader("v"))
			r.Header.Set("Authorization", "Bearer "+good+"x")
			return r
		}},
		{"forbidden", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/good/stolen", strings.NewReader("v"))
			r.Header.Set("Authorization", "Bearer "+flood)
			return r
		}},
		{"over rate", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/flood/k", strings.NewReader("v"))
			r.Header.Set("Authorization", "Bearer "+flood)
			return r
		}},
	}
	for _, k := range kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := floodClient.Do(k.req())
				if err != nil {
					record(k.name, -1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				record(k.name, resp.StatusCode)
			}
		}()
	}
	// Streams over the flood token's limit: they stay open until the end.
	var streams []*http.Response
	for i := 0; i < 12; i++ {
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/v1/watch/flood/?prefix=true", nil)
		r.Header.Set("Authorization", "Bearer "+flood)
		resp, err := (&http.Client{Transport: h2}).Do(r)
		if err != nil {
			t.Fatal(err)
		}
		record("streams", resp.StatusCode)
		if resp.StatusCode == 200 {
			streams = append(streams, resp)
		} else {
			resp.Body.Close()
		}
	}
	// Slow connections that never finish their headers.
	for i := 0; i < 20; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PUT /v1/kv/good/x HTTP/1.1\r\nHost: x\r\n")
	}

	// The good client writes while all this goes on.
	goodClient := &http.Client{Timeout: 20 * time.Second}
	var acked []int64
	goodStart := time.Now()
	for i := 0; i < goodWrites; i++ {
		r, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/good/%03d", p.base, i), strings.NewReader(strconv.Itoa(i)))
		r.Header.Set("Authorization", "Bearer "+good)
		resp, err := goodClient.Do(r)
		if err != nil {
			t.Fatalf("good write %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("good write %d: %d", i, resp.StatusCode)
		}
		acked = append(acked, mustAtoi(t, resp.Header.Get("X-Revision")))
	}

	t.Logf("%d good writes under the flood in %v", goodWrites, time.Since(goodStart))

	// Both watches see every good write once, in order.
	sc := bufio.NewScanner(sresp.Body)
	var sseRevs []int64
	for len(sseRevs) < goodWrites && sc.Scan() {
		var line struct {
			Type     string `json:"type"`
			Revision int64  `json:"revision"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("ndjson line %q: %v", sc.Text(), err)
		}
		if line.Type == "put" {
			sseRevs = append(sseRevs, line.Revision)
		}
	}
	var wsRevs []int64
	for len(wsRevs) < goodWrites {
		_, b, err := sock.Read(ctx)
		if err != nil {
			t.Fatalf("ws read after %d events: %v", len(wsRevs), err)
		}
		var m struct {
			Type   string `json:"type"`
			Events []struct {
				KV struct {
					ModRevision int64 `json:"mod_revision"`
				} `json:"kv"`
			} `json:"events"`
		}
		json.Unmarshal(b, &m)
		for _, ev := range m.Events {
			wsRevs = append(wsRevs, ev.KV.ModRevision)
		}
	}
	close(stop)
	wg.Wait()
	for _, s := range streams {
		s.Body.Close()
	}
	if fmt.Sprint(sseRevs) != fmt.Sprint(acked) {
		t.Errorf("SSE watch saw revisions %v,\nacknowledged %v", sseRevs, acked)
	}
	if fmt.Sprint(wsRevs) != fmt.Sprint(acked) {
		t.Errorf("WebSocket watch saw revisions %v,\nacknowledged %v", wsRevs, acked)
	}

	// Every flood request got the clear error of its kind, never a 5xx;
	// the flood token's requests are writes over its rate once its burst
	// is spent (the rate is checked before the body is read).
	want := map[string]int{
		"oversized value": 413, "oversized chunked value": 413, "oversized key": 413, "malformed txn": 400,
		"too many ops": 413, "no token": 401, "bad token": 401, "forbidden": 403,
	}
	var report []string
	for kind, byStatus := range statuses {
		for status, n := range byStatus {
			report = append(report, fmt.Sprintf("%s: %d x%d", kind, status, n))
			switch {
			case status >= 500:
				t.Errorf("%s: %d answers with status %d", kind, n, status)
			case kind == "over rate" || kind == "streams":
				if status != 201 && status != 200 && status != 429 && status != -1 {
					t.Errorf("%s: status %d", kind, status)
				}
			case status == 429 && kind != "no token" && kind != "bad token":
			case status != want[kind] && status != -1:
				t.Errorf("%s: status %d, want %d", kind, status, want[kind])
			}
		}
	}
	sort.Strings(report)
	t.Logf("flood answers: %v", report)
	if statuses["over rate"][429] == 0 || statuses["streams"][429] != 4 || statuses["streams"][200] != 8 {
		t.Errorf("limits not reached: over rate %v, streams %v", statuses["over rate"], statuses["streams"])
	}
}
