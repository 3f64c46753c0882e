package sse

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/watchgate/watchgate/h2srv"
	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
	"github.com/watchgate/watchgate/watchhub"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// env is a real store, hub and handler behind a real HTTP server on
// loopback that speaks HTTP/1.1 and cleartext HTTP/2.
type env struct {
	store *kv.Store
	hub   *watchhub.Hub
	h     *Handler
	srv   *httptest.Server
	// conns counts the connections the server accepted.
	conns atomic.Int64
	// h1 speaks HTTP/1.1, h2 cleartext HTTP/2 (prior knowledge).
	h1, h2 *http.Client

	// srvX serves the same handler with package h2srv's HTTP/2 server,
	// whose streams the handler detaches; hx speaks cleartext HTTP/2 to
	// it whatever the URL's host (the URLs name srv), and connsX counts
	// its connections.
	srvX   *httptest.Server
	hx     *http.Client
	connsX atomic.Int64
}

// newEnv starts an env; everything is closed when the test ends, the
// store last, after a consistency check.
func newEnv(tb testing.TB, opts Options) *env {
	tb.Helper()
	return newEnvStore(tb, opts, kv.Options{})
}

// newEnvStore is newEnv with store options (benchmarks skip the fsync to
// measure the streams).
func newEnvStore(tb testing.TB, opts Options, kvOpts kv.Options) *env {
	tb.Helper()
	store, err := kv.Open(tb.TempDir(), kvOpts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := store.Check(); err != nil {
			tb.Error(err)
		}
		if err := store.Close(); err != nil {
			tb.Error(err)
		}
	})
	hub, err := watchhub.New(store, watchhub.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { hub.Close() })
	e := &env{store: store, hub: hub, h: NewHandler(hub, store, opts)}

	e.srv = httptest.NewUnstartedServer(e.h)
	e.srv.Config.Protocols = new(http.Protocols)
	e.srv.Config.Protocols.SetHTTP1(true)
	e.srv.Config.Protocols.SetUnencryptedHTTP2(true)
	// The HTTP/2 default of 250 concurrent streams a connection would
	// make clients open more connections for more watches.
	e.srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 4096}
	e.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.conns.Add(1)
		}
	}
	e.srv.Config.RegisterOnShutdown(e.h.Shutdown)
	e.srv.Start()
	tb.Cleanup(func() {
		e.h.Shutdown()
		e.srv.Close()
	})

	// A detached stream's write timeout is the connection's.
	h2 := h2srv.New(nil, h2srv.Options{MaxConcurrentStreams: 1 << 15, WriteTimeout: opts.WriteTimeout})
	e.srvX = httptest.NewUnstartedServer(e.h)
	e.srvX.Config.Protocols = new(http.Protocols)
	e.srvX.Config.Protocols.SetHTTP1(true)
	e.srvX.Config.Protocols.SetUnencryptedHTTP2(true)
	e.srvX.Config.TLSNextProto = h2.TLSNextProto()
	e.srvX.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			e.connsX.Add(1)
		}
	}
	e.srvX.Config.RegisterOnShutdown(e.h.Shutdown)
	e.srvX.Start()
	tb.Cleanup(func() {
		e.h.Shutdown()
		e.srvX.Close()
		if err := h2.Close(); err != nil {
			tb.Error(err)
		}
	})

	t1 := &http.Transport{}
	// One connection per origin, as a browser: never a second one for
	// more concurrent streams, nor when requests race the first dial.
	t2 := &http.Transport{Protocols: new(http.Protocols), MaxConnsPerHost: 1,
		HTTP2: &http.HTTP2Config{StrictMaxConcurrentRequests: true}}
	t2.Protocols.SetUnencryptedHTTP2(true)
	tx := &http.Transport{Protocols: new(http.Protocols), MaxConnsPerHost: 1,
		HTTP2: &http.HTTP2Config{StrictMaxConcurrentRequests: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.srvX.Listener.Addr().String())
		}}
	tx.Protocols.SetUnencryptedHTTP2(true)
	e.h1 = &http.Client{Transport: t1}
	e.h2 = &http.Client{Transport: t2}
	e.hx = &http.Client{Transport: tx}
	tb.Cleanup(func() {
		t1.CloseIdleConnections()
		t2.CloseIdleConnections()
		tx.CloseIdleConnections()
	})
	return e
}

// url returns the watch URL of key (escaped) with query q.
func (e *env) url(escapedKey, q string) string {
	u := e.srv.URL + "/v1/watch/" + escapedKey
	if q != "" {
		u += "?" + q
	}
	return u
}

// proto is a client of one of env's servers, by protocol.
type proto struct {
	name string
	c    *http.Client
	// conns counts the connections of the server it speaks to.
	conns *atomic.Int64
}

// clients are the protocols and servers every end-to-end test runs
// over: HTTP/1.1 and HTTP/2 of net/http, and HTTP/2 of package h2srv
// (detached streams).
func (e *env) clients() []proto {
	return append([]proto{{"HTTP/1.1", e.h1, &e.conns}}, e.h2Clients()...)
}

// protoNames are the names of clients' protocols.
var protoNames = []string{"HTTP/1.1", "HTTP/2", "HTTP/2-h2srv"}

// client is the client of clients named name.
func (e *env) client(name string) *http.Client {
	for _, p := range e.clients() {
		if p.name == name {
			return p.c
		}
	}
	panic("no client " + name)
}

// h2Names names the HTTP/2 clients, for tests that need an env of their
// own for each.
var h2Names = []string{"HTTP/2", "HTTP/2-h2srv"}

// h2Clients are the HTTP/2 clients, of net/http's server and of h2srv's.
func (e *env) h2Clients() []proto {
	return []proto{{"HTTP/2", e.h2, &e.conns}, {"HTTP/2-h2srv", e.hx, &e.connsX}}
}

func (e *env) put(tb testing.TB, key, value string) int64 {
	tb.Helper()
	r, err := e.store.Put(context.Background(), []byte(key), []byte(value))
	if err != nil {
		tb.Fatal(err)
	}
	return r.Revision
}

func (e *env) del(tb testing.TB, key string) int64 {
	tb.Helper()
	r, err := e.store.Delete(context.Background(), []byte(key), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return r.Revision
}

// txn runs one transaction of puts (value set) and deletes (value "-").
func (e *env) txn(tb testing.TB, kvs ...string) int64 {
	tb.Helper()
	var ops []kv.Op
	for i := 0; i < len(kvs); i += 2 {
		if kvs[i+1] == "-" {
			ops = append(ops, kv.Op{Type: kv.OpDelete, Key: []byte(kvs[i])})
		} else {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: []byte(kvs[i]), Value: []byte(kvs[i+1])})
		}
	}
	r, err := e.store.Txn(context.Background(), kv.TxnRequest{Success: ops})
	if err != nil {
		tb.Fatal(err)
	}
	return r.Revision
}

// connect opens an SSE stream; it is closed when the test ends.
func connect(tb testing.TB, c *http.Client, url string, opts sseclient.Options) *sseclient.Stream {
	tb.Helper()
	opts.Client = c
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	s, err := sseclient.Connect(ctx, url, opts)
	if err != nil {
		tb.Fatalf("connect %s: %v", url, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// nextEvent returns the stream's next event, failing the test on error.
// connect's deadline bounds the wait.
func nextEvent(tb testing.TB, s *sseclient.Stream) sseclient.Event {
	tb.Helper()
	ev, err := s.Next()
	if err != nil {
		tb.Fatalf("Next: %v", err)
	}
	return ev
}

// wire is an event as a test compares it: id, type and data.
type wire struct{ ID, Type, Data string }

func nextWire(tb testing.TB, s *sseclient.Stream) wire {
	tb.Helper()
	ev := nextEvent(tb, s)
	return wire{ev.ID, ev.Type, ev.Data}
}

// kvData is the data of a put or delete for the store's event.
func kvData(ev *kv.Event, prev bool) string {
	return string(kvjson.AppendEventKV(nil, ev, prev))
}

// storeEvents returns the store's events of revision rev.
func (e *env) storeEvents(tb testing.TB, rev int64) []kv.Event {
	tb.Helper()
	b, _, err := e.store.History(context.Background(), rev, rev, 1<<20)
	if err != nil || len(b) != 1 {
		tb.Fatalf("History(%d): %v, %d batches", rev, err, len(b))
	}
	return b[0].Events
}

// problem decodes a problem+json answer.
func problem(tb testing.TB, resp *http.Response) map[string]any {
	tb.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var m map[string]any
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &m); err != nil {
		tb.Fatalf("problem %q: %v", body, err)
	}
	return m
}

// statusOf unwraps a refused connection's status.
func statusOf(err error) int {
	var se *sseclient.StatusError
	if errors.As(err, &se) {
		return se.StatusCode
	}
	return 0
}

// lines splits NDJSON.
func lines(s string) []string {
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

func mustUnmarshal(tb testing.TB, s string, v any) {
	tb.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		tb.Fatalf("%q: %v", s, err)
	}
}
