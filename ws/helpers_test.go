package ws

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
	"github.com/watchgate/watchgate/watchhub"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testServer is the real thing on loopback: a store in a temporary
// directory, the hub, the handler mounted at /v1/ws of an httptest server.
type testServer struct {
	store *kv.Store
	hub   *watchhub.Hub
	h     *Handler
	srv   *httptest.Server
	url   string // ws://host/v1/ws
}

func newTestServer(tb testing.TB, opts Options) *testServer {
	tb.Helper()
	return newTestServerWith(tb, opts, watchhub.Options{}, kv.Options{})
}

func newTestServerWith(tb testing.TB, opts Options, hopts watchhub.Options, kopts kv.Options) *testServer {
	tb.Helper()
	store, err := kv.Open(tb.TempDir(), kopts)
	if err != nil {
		tb.Fatal(err)
	}
	hub, err := watchhub.New(store, hopts)
	if err != nil {
		store.Close()
		tb.Fatal(err)
	}
	h, err := NewHandler(hub, opts)
	if err != nil {
		hub.Close()
		store.Close()
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/ws", h)
	srv := httptest.NewServer(mux)
	ts := &testServer{store: store, hub: hub, h: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws"}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			tb.Errorf("Shutdown: %v", err)
		}
		srv.Close()
		hub.Close()
		if err := store.Check(); err != nil {
			tb.Errorf("store check: %v", err)
		}
		if err := store.Close(); err != nil {
			tb.Errorf("store close: %v", err)
		}
	})
	return ts
}

// put writes key=value and returns the revision.
func (ts *testServer) put(tb testing.TB, key, value string) int64 {
	tb.Helper()
	resp, err := ts.store.Put(context.Background(), []byte(key), []byte(value))
	if err != nil {
		tb.Fatalf("put %q: %v", key, err)
	}
	return resp.Revision
}

// putMany writes n keys prefix000000.. in transactions of up to 128 puts
// and returns the last revision.
func (ts *testServer) putMany(tb testing.TB, prefix string, n int) int64 {
	tb.Helper()
	return ts.putManyTxn(tb, prefix, n, 128)
}

// putManyTxn is putMany with txnOps puts per transaction.
func (ts *testServer) putManyTxn(tb testing.TB, prefix string, n, txnOps int) int64 {
	tb.Helper()
	var rev int64
	for i := 0; i < n; {
		var ops []kv.Op
		for ; i < n && len(ops) < txnOps; i++ {
			ops = append(ops, kv.Op{Type: kv.OpPut, Key: fmt.Appendf(nil, "%s%06d", prefix, i), Value: fmt.Appendf(nil, "v%d", i)})
		}
		resp, err := ts.store.Txn(context.Background(), kv.TxnRequest{Success: ops})
		if err != nil {
			tb.Fatalf("txn: %v", err)
		}
		rev = resp.Revision
	}
	return rev
}

// history returns the store's whole history.
func (ts *testServer) history(tb testing.TB) *watchtest.History {
	tb.Helper()
	rev, _ := ts.store.Revisions()
	var all []kv.Batch
	for from := int64(2); from <= rev; {
		bs, next, err := ts.store.History(context.Background(), from, rev, 100000)
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, bs...)
		from = next
	}
	h, err := watchtest.NewHistory(1, all)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// client is a test client on the coder/websocket library.
type client struct {
	tb testing.TB
	c  *websocket.Conn
}

func (ts *testServer) dial(tb testing.TB) *client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	if c.Subprotocol() != Subprotocol {
		tb.Fatalf("subprotocol %q", c.Subprotocol())
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	c.SetReadLimit(-1)
	tb.Cleanup(func() { c.CloseNow() })
	return &client{tb: tb, c: c}
}

func (c *client) send(msg string) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		c.tb.Fatalf("send %s: %v", msg, err)
	}
}

// sendAll sends msg(0) .. msg(n-1) from another goroutine and reports
// the first error on the returned channel.
func (c *client) sendAll(n int, msg func(i int) string) <-chan error {
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range n {
			if err := c.c.Write(ctx, websocket.MessageText, []byte(msg(i))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	return errc
}

// recv reads the next message; it fails the test after 10 seconds.
func (c *client) recv() Message {
	c.tb.Helper()
	m, err := c.read(10 * time.Second)
	if err != nil {
		c.tb.Fatalf("recv: %v", err)
	}
	return m
}

func (c *client) read(timeout time.Duration) (Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		return Message{}, err
	}
	if typ != websocket.MessageText {
		return Message{}, fmt.Errorf("message type %v", typ)
	}
	return decodeMessage(b)
}

func decodeMessage(b []byte) (Message, error) {
	var m Message
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("message %s: %v", b, err)
	}
	return m, nil
}

// closeStatus reads until the connection ends and returns its close code.
func (c *client) closeStatus() websocket.StatusCode {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				c.tb.Fatalf("connection still open: %v", err)
			}
			return websocket.CloseStatus(err)
		}
	}
}

// kvOf converts a received kv back to the store's type.
func kvOf(tb testing.TB, k *kvjson.KeyValue) kv.KeyValue {
	tb.Helper()
	key, err := k.KeyBytes()
	if err != nil {
		tb.Fatal(err)
	}
	value, err := k.ValueBytes()
	if err != nil {
		tb.Fatal(err)
	}
	return kv.KeyValue{Key: key, Value: value, CreateRevision: k.CreateRevision, ModRevision: k.ModRevision, Version: k.Version}
}

// itemizer turns one watch's messages into watchtest items.
type itemizer struct {
	tb     testing.TB
	inSnap bool
}

func (z *itemizer) item(m Message) watchtest.Item {
	z.tb.Helper()
	it := watchtest.Item{Revision: m.Revision, CompactRevision: m.CompactRevision}
	switch m.Type {
	case TypeCreated:
		it.Kind = watchtest.Created
	case TypeEvents:
		it.Kind = watchtest.Events
		if z.inSnap {
			it.Kind = watchtest.Snapshot
		}
		for _, e := range m.Events {
			ev := watchtest.Event{KV: kvOf(z.tb, &e.KV)}
			if e.Type == "delete" {
				ev.Type = kv.EventDelete
			} else if e.Type != "put" {
				z.tb.Fatalf("event type %q", e.Type)
			}
			if e.PrevKV != nil {
				p := kvOf(z.tb, e.PrevKV)
				ev.PrevKV = &p
			}
			it.Events = append(it.Events, ev)
		}
	case TypeProgress:
		it.Kind = watchtest.Progress
	case TypeReset:
		it.Kind = watchtest.Reset
		z.inSnap = true
	case TypeSynced:
		it.Kind = watchtest.Synced
		z.inSnap = false
	case TypeCompacted:
		it.Kind = watchtest.Compacted
	case TypeCanceled:
		it.Kind = watchtest.Canceled
	case TypeError:
		it.Kind = watchtest.Error
	default:
		z.tb.Fatalf("no item for message %+v", m)
	}
	return it
}

// newChecker checks a prefix watch from revision from.
func newChecker(tb testing.TB, h *watchtest.History, from int64, prefix string) *watchtest.Checker {
	tb.Helper()
	return watchtest.NewChecker(h, watchtest.Request{Key: []byte(prefix), End: kv.PrefixEnd([]byte(prefix)), StartRev: from})
}

func kvjsonKV(key, value string, create, mod, version int64) kvjson.KeyValue {
	return kvjson.KeyValue{Key: &key, Value: &value, CreateRevision: create, ModRevision: mod, Version: version}
}
