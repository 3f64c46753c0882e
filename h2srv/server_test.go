package h2srv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is an http.Server on loopback whose HTTP/2 connections the
// Server serves, with a client for it.
type testServer struct {
	*httptest.Server
	h2     *Server
	client *http.Client
}

// newTestServer serves h over HTTP/1.1 and cleartext HTTP/2 (tls false)
// or HTTP/2 over TLS; the client speaks HTTP/2 only.
func newTestServer(tb testing.TB, h http.Handler, opts Options, useTLS bool) *testServer {
	tb.Helper()
	return newTestServerConfig(tb, h, opts, useTLS, nil)
}

// newTestServerConfig is newTestServer with configure (if not nil) called
// on the http.Server before it starts.
func newTestServerConfig(tb testing.TB, h http.Handler, opts Options, useTLS bool, configure func(*http.Server)) *testServer {
	tb.Helper()
	s := New(h, opts)
	ts := httptest.NewUnstartedServer(h)
	ts.Config.TLSNextProto = s.TLSNextProto()
	ts.Config.ErrorLog = nil
	if configure != nil {
		configure(ts.Config)
	}
	var client *http.Client
	if useTLS {
		ts.EnableHTTP2 = true
		ts.StartTLS()
		client = ts.Client()
		tr := client.Transport.(*http.Transport)
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP2(true)
	} else {
		ts.Config.Protocols = new(http.Protocols)
		ts.Config.Protocols.SetHTTP1(true)
		ts.Config.Protocols.SetUnencryptedHTTP2(true)
		ts.Start()
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		client = &http.Client{Transport: tr}
	}
	t := &testServer{Server: ts, h2: s, client: client}
	tb.Cleanup(func() {
		client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ts.Config.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		if err := s.Shutdown(ctx); err != nil {
			tb.Errorf("h2srv Shutdown: %v", err)
		}
		ts.Close()
	})
	return t
}

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("X-Proto", r.Proto)
			if _, err := io.Copy(w, r.Body); err != nil {
				panic(http.ErrAbortHandler)
			}
		case "/sum":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
			for range 256 { // 16 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		default:
			// Read the body first, so that a malformed one resets the
			// stream before the response ends it.
			io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Method", r.Method)
			fmt.Fprintf(w, "%s %s %s %s", r.Method, r.URL.RequestURI(), r.Host, r.Header.Get("X-A"))
		}
	})
}

func TestRequests(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			ts := newTestServer(t, echoHandler(), Options{}, useTLS)
			tests := []struct {
				name, method, path, body string
				want                     string
				wantHeader               map[string]string
			}{
				{"get", "GET", "/a/b?x=1", "", "GET /a/b?x=1 HOST hdr", map[string]string{"X-Method": "GET"}},
				{"head", "HEAD", "/a", "", "", map[string]string{"X-Method": "HEAD"}},
				{"echo", "POST", "/echo", "hello", "hello", map[string]string{"X-Proto": "HTTP/2.0"}},
				{"sum", "PUT", "/sum", "abc", "3 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", nil},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					req, err := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
					if err != nil {
						t.Fatal(err)
					}
					req.Header.Set("X-A", "hdr")
					resp, err := ts.client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					if err != nil {
						t.Fatal(err)
					}
					host := strings.TrimPrefix(strings.TrimPrefix(ts.URL, "http://"), "https://")
					want := strings.Replace(tt.want, "HOST", host, 1)
					if resp.ProtoMajor != 2 {
						t.Errorf("proto %s", resp.Proto)
					}
					if diff := cmp.Diff(want, string(b)); diff != "" {
						t.Errorf("body (-want +got):\n%s", diff)
					}
					if tt.method == "GET" && resp.ContentLength != int64(len(want)) {
						t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(want))
					}
					for k, v := range tt.wantHeader {
						if got := resp.Header.Get(k); got != v {
							t.Errorf("header %s = %q, want %q", k, got, v)
						}
					}
				})
			}
		})
	}
}

func TestTrailers(t *testing.T) {
	ts := newTestServer(t, echoHandler(), Options{}, false)
	resp, err := ts.client.Get(ts.URL + "/trailer")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Errorf("body %q trailer %v", b, resp.Trailer)
	}
}

// TestLargeBodies moves bodies many times the windows both ways.
func TestLargeBodies(t *testing.T) {
	ts := newTestServer(t, echoHandler(), Options{StreamWindow: 65535, ConnWindow: 65535}, false)
	data := bytes.Repeat([]byte("watchgate"), 3<<20/9)
	resp, err := ts.client.Post(ts.URL+"/echo", "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("echo: got %d bytes, want %d", len(got), len(data))
	}
	resp, err = ts.client.Get(ts.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 16<<20 {
		t.Errorf("big: %d bytes, %v", n, err)
	}
}

func TestConcurrentStreams(t *testing.T) {
	ts := newTestServer(t, echoHandler(), Options{MaxConcurrentStreams: 50}, false)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Go(func() {
			body := strings.Repeat(fmt.Sprint(i), 1000+i)
			resp, err := ts.client.Post(ts.URL+"/echo", "text/plain", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != body {
				errs <- fmt.Errorf("stream %d: %d bytes, %v", i, len(b), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestClientCancel checks that a client's RST_STREAM cancels the
// handler's context.
func TestClientCancel(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	})
	ts := newTestServer(t, h, Options{}, false)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	resp.Body.Close()
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("handler's context not cancelled")
	}
}

// TestShutdownInFlight checks that Shutdown lets a stream in flight
// finish, then closes the connection.
func TestShutdownInFlight(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	})
	ts := newTestServer(t, h, Options{}, false)
	res := make(chan string, 1)
	go func() {
		resp, err := ts.client.Get(ts.URL)
		if err != nil {
			res <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- string(b)
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- ts.h2.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	if got := <-res; got != "done" {
		t.Errorf("in-flight response %q", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
