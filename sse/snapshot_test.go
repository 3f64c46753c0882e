package sse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// snapshotWires is what a snapshot of the keys kvs at rev looks like:
// reset and puts without id, then synced with id rev. lastID is the id the
// client had before.
func snapshotWires(rev int64, lastID string, kvs []kv.KeyValue) []wire {
	rs := fmt.Sprintf(`{"revision":%d}`, rev)
	w := []wire{{lastID, "reset", rs}}
	for i := range kvs {
		w = append(w, wire{lastID, "put", string(kvjson.AppendKV(nil, &kvs[i], false))})
	}
	return append(w, wire{fmt.Sprint(rev), "synced", rs})
}

func (e *env) rangeAt(tb testing.TB, prefix string) []kv.KeyValue {
	tb.Helper()
	res, err := e.store.Range(context.Background(), kv.RangeRequest{Key: []byte(prefix), End: kv.PrefixEnd([]byte(prefix))})
	if err != nil {
		tb.Fatal(err)
	}
	return res.KVs
}

func TestWatchSnapshot(t *testing.T) {
	e := newEnv(t, Options{})
	e.put(t, "s/a", "1")
	e.txn(t, "s/b", "2", "s/c", "3", "t/x", "4")
	e.del(t, "s/a")
	S := e.put(t, "s/d", "5")
	state := e.rangeAt(t, "s/")
	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			s := connect(t, cl.c, e.url("s/", "prefix=true&snapshot=true"), sseclient.Options{})
			var got []wire
			want := snapshotWires(S, "", state)
			for range want {
				got = append(got, nextWire(t, s))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("snapshot (-want +got):\n%s", diff)
			}
			r := e.put(t, "s/e", "6")
			if w := nextWire(t, s); w.ID != fmt.Sprint(r) || w.Type != "put" {
				t.Errorf("live event %+v", w)
			}
			// A resume id skips the snapshot.
			s2 := connect(t, cl.c, e.url("s/", "prefix=true&snapshot=true"), sseclient.Options{LastEventID: fmt.Sprint(S)})
			if w := nextWire(t, s2); w.ID != fmt.Sprint(r) || w.Type != "put" {
				t.Errorf("resumed snapshot stream began with %+v", w)
			}
			S = r
			state = e.rangeAt(t, "s/")
		})
	}
}

// TestWatchSnapshotHeals resumes a snapshot stream from a compacted id: it
// heals with a fresh reset ... synced instead of a compacted event.
func TestWatchSnapshotHeals(t *testing.T) {
	e := newEnv(t, Options{})
	old := e.put(t, "s/a", "1")
	e.put(t, "s/b", "2")
	e.del(t, "s/a")
	C := e.put(t, "s/c", "3")
	if err := e.store.Compact(context.Background(), C); err != nil {
		t.Fatal(err)
	}
	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			s := connect(t, cl.c, e.url("s/", "prefix=true&snapshot=true"), sseclient.Options{LastEventID: fmt.Sprint(old)})
			want := snapshotWires(C, fmt.Sprint(old), e.rangeAt(t, "s/"))
			var got []wire
			for range want {
				got = append(got, nextWire(t, s))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("healing snapshot (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWatchCompacted(t *testing.T) {
	e := newEnv(t, Options{})
	first := e.put(t, "k", "1")
	e.put(t, "k", "2")
	C := e.put(t, "k", "3")
	if err := e.store.Compact(context.Background(), C); err != nil {
		t.Fatal(err)
	}
	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			// rev= and a resume id both find their revision compacted.
			for _, o := range []struct {
				query string
				id    string
			}{{fmt.Sprintf("rev=%d", first), ""}, {"", fmt.Sprint(first)}, {"", fmt.Sprintf("%d.0", first+1)}} {
				s := connect(t, cl.c, e.url("k", o.query), sseclient.Options{LastEventID: o.id, Reconnect: true, ReconnectDelay: time.Millisecond})
				want := wire{"compacted", "compacted", fmt.Sprintf(`{"compact_revision":%d,"revision":%d}`, C, C)}
				if w := nextWire(t, s); w != want {
					t.Errorf("%+v: got %+v, want %+v", o, w, want)
				}
				// The stream ends; the reconnection with id "compacted" gets
				// 204, which stops a browser's EventSource for good.
				if _, err := s.Next(); statusOf(err) != http.StatusNoContent {
					t.Errorf("%+v: after compacted: %v, want a 204", o, err)
				}
			}
			// Without reconnection the stream just ends.
			s := connect(t, cl.c, e.url("k", fmt.Sprintf("rev=%d", first)), sseclient.Options{})
			nextWire(t, s)
			if _, err := s.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("after compacted: %v, want the end of the stream", err)
			}
		})
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url("k", ""), nil)
	req.Header.Set("Last-Event-ID", "compacted")
	resp, err := e.h1.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Revision") != strconv.FormatInt(C, 10) ||
		resp.Header.Get("X-Compact-Revision") != strconv.FormatInt(C, 10) {
		t.Errorf("Last-Event-ID: compacted: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = e.h1.Get(e.url("k", fmt.Sprintf("format=ndjson&rev=%d", first)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`{"id":"compacted","type":"compacted","compact_revision":%d,"revision":%d}`+"\n", C, C); string(body) != want {
		t.Errorf("NDJSON compacted stream %q, want %q", body, want)
	}
}
