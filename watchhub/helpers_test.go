package watchhub

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

func TestMain(m *testing.M) {
	code := m.Run()
	closeCatchUpStore()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// openStore opens a real store in a temporary directory; its consistency
// is checked and it is closed when the test ends.
func openStore(tb testing.TB, opts kv.Options) *kv.Store {
	tb.Helper()
	opts.NoSync = true
	s, err := kv.Open(tb.TempDir(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Check(); err != nil {
			tb.Error(err)
		}
		if err := s.Close(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// newHub makes a hub on s, closed when the test ends (before the store).
func newHub(tb testing.TB, s Store, opts Options) *Hub {
	tb.Helper()
	h, err := New(s, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

func newStream(tb testing.TB, h *Hub, opts StreamOptions) *Stream {
	tb.Helper()
	s, err := h.NewStream(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

func put(tb testing.TB, s *kv.Store, key, value string) int64 {
	tb.Helper()
	r, err := s.Put(context.Background(), []byte(key), []byte(value))
	if err != nil {
		tb.Fatal(err)
	}
	return r.Revision
}

func del(tb testing.TB, s *kv.Store, key, end string) int64 {
	tb.Helper()
	var e []byte
	if end != "" {
		e = []byte(end)
	}
	r, err := s.Delete(context.Background(), []byte(key), e)
	if err != nil {
		tb.Fatal(err)
	}
	return r.Revision
}

func txn(tb testing.TB, s *kv.Store, ops ...kv.Op) int64 {
	tb.Helper()
	r, err := s.Txn(context.Background(), kv.TxnRequest{Success: ops})
	if err != nil {
		tb.Fatal(err)
	}
	return r.Revision
}

func opPut(k, v string) kv.Op { return kv.Op{Type: kv.OpPut, Key: []byte(k), Value: []byte(v)} }
func opDel(k string) kv.Op    { return kv.Op{Type: kv.OpDelete, Key: []byte(k)} }

func watch(tb testing.TB, s *Stream, req WatchRequest) int64 {
	tb.Helper()
	rev, err := s.Watch(req)
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

// recv drains s until cond holds for what it has received, or fails the
// test after a generous timeout.
func recv(tb testing.TB, s *Stream, got []Response, cond func([]Response) bool) []Response {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !cond(got) {
		var err error
		got, err = s.Recv(ctx, got)
		if err != nil {
			tb.Fatalf("waiting for responses: %v; got %s", err, dump(got))
		}
	}
	return got
}

// settle requests a stream-level bookmark and drains s until one at rev or
// beyond arrives: every watch of s has then been sent everything up to rev.
func settle(tb testing.TB, s *Stream, got []Response, rev int64) []Response {
	tb.Helper()
	if err := s.RequestProgress(); err != nil {
		tb.Fatal(err)
	}
	return recv(tb, s, got, func(rs []Response) bool {
		for _, r := range rs {
			if r.Kind == KindProgress && r.Revision >= rev {
				return true
			}
		}
		return false
	})
}

// has returns a condition: a response of kind k for watch id.
func has(k Kind, id string) func([]Response) bool {
	return func(rs []Response) bool {
		for _, r := range rs {
			if r.Kind == k && r.WatchID == id {
				return true
			}
		}
		return false
	}
}

// upTo returns a condition: watch id has been sent everything up to rev
// (an events response or a bookmark at rev or beyond), or ended.
func upTo(id string, rev int64) func([]Response) bool {
	return func(rs []Response) bool {
		for _, r := range rs {
			switch {
			case r.WatchID == id && r.Kind == KindEvents && r.Revision >= rev,
				r.Kind == KindProgress && r.Revision >= rev,
				r.WatchID == id && (r.Kind == KindCompacted || r.Kind == KindCanceled || r.Kind == KindError):
				return true
			}
		}
		return false
	}
}

func dump(rs []Response) string {
	var b bytes.Buffer
	for _, r := range rs {
		fmt.Fprintf(&b, "\n  %s id=%q rev=%d", r.Kind, r.WatchID, r.Revision)
		if r.Kind == KindCompacted {
			fmt.Fprintf(&b, " compact=%d", r.CompactRevision)
		}
		for _, e := range r.Events {
			fmt.Fprintf(&b, " %s:%s@%d.%d", e.Type, e.KV.Key, e.KV.ModRevision, e.Sub)
		}
	}
	return b.String()
}

// items converts a stream's responses into each watch's watchtest items.
// A stream-level bookmark goes to every watch live at that point. It also
// checks the shared encodings against kvjson.
func items(tb testing.TB, rs []Response) map[string][]watchtest.Item {
	tb.Helper()
	out := map[string][]watchtest.Item{}
	live := map[string]bool{}
	for _, r := range rs {
		it := watchtest.Item{Revision: r.Revision, CompactRevision: r.CompactRevision}
		switch r.Kind {
		case KindProgress:
			for id := range live {
				out[id] = append(out[id], watchtest.Item{Kind: watchtest.Progress, Revision: r.Revision})
			}
			continue
		case KindCreated:
			it.Kind = watchtest.Created
			live[r.WatchID] = true
		case KindEvents:
			it.Kind = watchtest.Events
		case KindWatchProgress:
			it.Kind = watchtest.Progress
		case KindReset:
			it.Kind = watchtest.Reset
		case KindSnapshot:
			it.Kind = watchtest.Snapshot
		case KindSynced:
			it.Kind = watchtest.Synced
		case KindCompacted:
			it.Kind = watchtest.Compacted
			delete(live, r.WatchID)
		case KindCanceled:
			it.Kind = watchtest.Canceled
			delete(live, r.WatchID)
		case KindError:
			it.Kind = watchtest.Error
			delete(live, r.WatchID)
		default:
			tb.Fatalf("unknown response kind %d", r.Kind)
		}
		for i, e := range r.Events {
			it.Events = append(it.Events, watchtest.FromKV(e.Event, r.PrevKV, ""))
			if i%7 == 0 { // spot-check the shared encodings
				if got, want := e.JSON(r.PrevKV), kvjson.AppendEvent(nil, e.Event, r.PrevKV); !bytes.Equal(got, want) {
					tb.Fatalf("event JSON %s, want %s", got, want)
				}
				if got, want := e.Data(r.PrevKV), kvjson.AppendEventKV(nil, e.Event, r.PrevKV); !bytes.Equal(got, want) {
					tb.Fatalf("event data %s, want %s", got, want)
				}
			}
		}
		out[r.WatchID] = append(out[r.WatchID], it)
	}
	return out
}

// validate checks each watch's stream against the history with its request.
func validate(tb testing.TB, h *watchtest.History, reqs map[string]WatchRequest, rs []Response, complete int64) {
	tb.Helper()
	for id, its := range items(tb, rs) {
		req, ok := reqs[id]
		if !ok {
			tb.Fatalf("responses for unknown watch %q", id)
		}
		c := watchtest.NewChecker(h, checkReq(req))
		for _, it := range its {
			if err := c.Add(it); err != nil {
				tb.Fatalf("%v\nresponses:%s", err, dump(rs))
			}
		}
		if complete > 0 {
			if err := c.Complete(complete); err != nil {
				tb.Fatalf("%v\nresponses:%s", err, dump(rs))
			}
		}
	}
}

func checkReq(r WatchRequest) watchtest.Request {
	return watchtest.Request{
		Key: r.Key, End: r.End, StartRev: r.StartRev, StartSub: r.StartSub,
		PrevKV: r.PrevKV, NoPut: r.NoPut, NoDelete: r.NoDelete, Snapshot: r.Snapshot,
	}
}

func history(tb testing.TB, rec *watchtest.Recorder) *watchtest.History {
	tb.Helper()
	h, err := rec.History()
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func prefixReq(id, p string) WatchRequest {
	return WatchRequest{ID: id, Key: []byte(p), End: kv.PrefixEnd([]byte(p))}
}

// kinds lists the kinds of rs for watch id, for compact assertions.
func kinds(rs []Response, id string) []string {
	var out []string
	for _, r := range rs {
		if r.WatchID == id || (id == "*" && r.WatchID == "") {
			out = append(out, r.Kind.String())
		}
	}
	return out
}
