package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/watchgate/watchgate/internal/testbin"
	"github.com/watchgate/watchgate/web"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// server is the watchgate binary on a fixed loopback port over a store in
// a fixed directory, so that it can be stopped and started again where
// its clients expect it. base is the URL the browser uses.
type server struct {
	t    *testing.T
	dir  string
	addr string // host:port of the binary, the same across restarts
	base string // URL of the pages: the binary, or the front below
	api  string // URL of the binary itself
	logs *testbin.LogBuffer
	args []string // more flags for the binary

	cmd    *exec.Cmd
	exited chan struct{}

	// front serves the dashboard before the binary's router does: the
	// embedded files here, everything else proxied to the binary. It lives
	// and dies with the binary, on one address, so that a browser sees a
	// restart as it would without it: connections cut, then refused.
	front        *http.Server
	frontAddr    string
	frontHandler http.Handler
}

// startServer runs the binary on a free loopback port over a new store.
func startServer(t *testing.T) *server {
	t.Helper()
	return startServerWith(t)
}

// startServerWith runs the binary as startServer does, with more flags
// (for example --access-file).
func startServerWith(t *testing.T, args ...string) *server {
	t.Helper()
	testbin.Build(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &server{t: t, dir: t.TempDir(), addr: addr, api: "http://" + addr, logs: &testbin.LogBuffer{}, args: args}
	s.base = s.api
	t.Cleanup(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			s.cmd.Process.Kill()
			<-s.exited
		}
		s.stopFront()
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	s.start()
	s.mountDashboard()
	return s
}

// start runs the binary and waits until it is ready (GET /readyz 200).
func (s *server) start() {
	s.t.Helper()
	cmd := exec.Command(testbin.Build(s.t), append([]string{"--addr", s.addr, "--data", s.dir, "--log-level", "info"}, s.args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WATCHGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout = s.logs
	cmd.Stderr = s.logs
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting the binary: %v", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.waitReady(exited)
	if s.frontHandler != nil {
		s.startFront()
	}
}

// waitReady polls GET /readyz until it answers 200, failing the test if
// the process exits first or after 30s.
func (s *server) waitReady(exited <-chan struct{}) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	poll := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			s.t.Fatalf("the binary exited before it was ready: %v\n%s", s.cmd.ProcessState, s.logs.String())
		default:
		}
		resp, err := poll.Get(s.api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the binary was not ready after 30s:\n%s", s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the binary with SIGTERM (a graceful shutdown) and waits for
// it to exit.
func (s *server) stop() { s.signal(syscall.SIGTERM) }

// kill stops the binary with SIGKILL: no shutdown, connections are cut.
func (s *server) kill() { s.signal(syscall.SIGKILL) }

func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.t.Fatalf("the binary did not exit 20s after %v:\n%s", sig, s.logs.String())
	}
	s.stopFront()
}

// mountDashboard makes base serve the dashboard. When the binary's own
// router serves it (GET /watchgate.js is the embedded client), base is
// the binary. Otherwise a front server on another port serves web.Handler
// at its paths and proxies every other request (streams and WebSocket
// upgrades included) to the binary.
func (s *server) mountDashboard() {
	s.t.Helper()
	want, err := fsReadFile("watchgate.js")
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := http.Get(s.api + web.PathClient)
	if err != nil {
		s.t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && bytes.Equal(got, want) {
		return
	}
	s.t.Logf("the binary does not serve the dashboard (GET %s: %d): serving web.Handler in front of it", web.PathClient, resp.StatusCode)
	target, _ := url.Parse(s.api)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	proxy.ErrorLog = log.New(io.Discard, "", 0) // a restart cuts streams: expected
	h := web.NewHandler(web.Options{})
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", h)
	mux.Handle("GET "+web.PathClient, h)
	mux.Handle("GET "+web.PathAssets, h)
	mux.Handle("/", proxy)
	s.frontHandler = mux
	s.startFront()
	s.base = "http://" + s.frontAddr
}

// startFront serves the front on its address (a new one the first time).
func (s *server) startFront() {
	s.t.Helper()
	addr := s.frontAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Fatalf("front: %v", err)
	}
	s.frontAddr = ln.Addr().String()
	s.front = &http.Server{Handler: s.frontHandler, ReadHeaderTimeout: 10 * time.Second}
	go s.front.Serve(ln)
}

// stopFront closes the front and every connection through it.
func (s *server) stopFront() {
	if s.front != nil {
		s.front.Close()
		s.front = nil
	}
}

func fsReadFile(name string) ([]byte, error) {
	f, err := web.Files.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// client is the HTTP client of the tests' own REST calls.
var client = &http.Client{Timeout: 10 * time.Second}

// kvResult is the JSON of a write or a read of one key.
type kvResult struct {
	Revision int64 `json:"revision"`
	KV       struct {
		Key            string `json:"key"`
		Value          string `json:"value"`
		CreateRevision int64  `json:"create_revision"`
		ModRevision    int64  `json:"mod_revision"`
		Version        int64  `json:"version"`
	} `json:"kv"`
}

// do sends a request to the binary and returns its status and body; a
// network error is returned, not fatal, for callers that retry.
func (s *server) do(ctx context.Context, method, key, body string, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.api+"/v1/kv/"+url.PathEscape(key), strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// put writes key = value and returns the result, failing the test on any
// error.
func (s *server) put(tb testing.TB, key, value string) kvResult {
	tb.Helper()
	status, body, err := s.do(context.Background(), http.MethodPut, key, value, nil)
	if err != nil || (status != http.StatusOK && status != http.StatusCreated) {
		tb.Fatalf("PUT %s: %d %s %v", key, status, body, err)
	}
	var r kvResult
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Fatalf("PUT %s: %v in %s", key, err, body)
	}
	return r
}

// get reads key as JSON; found is false on 404.
func (s *server) get(tb testing.TB, key string) (r kvResult, found bool) {
	tb.Helper()
	status, body, err := s.do(context.Background(), http.MethodGet, key, "", map[string]string{"Accept": "application/json"})
	if err != nil {
		tb.Fatalf("GET %s: %v", key, err)
	}
	if status == http.StatusNotFound {
		return r, false
	}
	if status != http.StatusOK {
		tb.Fatalf("GET %s: %d %s", key, status, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		tb.Fatalf("GET %s: %v in %s", key, err, body)
	}
	return r, true
}

// getAt reads key as of revision rev and returns the response, its body
// read and closed.
func (s *server) getAt(tb testing.TB, key string, rev int64) *http.Response {
	tb.Helper()
	resp, err := client.Get(fmt.Sprintf("%s/v1/kv/%s?rev=%d", s.api, url.PathEscape(key), rev))
	if err != nil {
		tb.Fatalf("GET %s at revision %d: %v", key, rev, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}
