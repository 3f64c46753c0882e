package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// newHub starts a watch hub on a gateway; it is closed before the gateway.
func newHub(tb testing.TB, s *etcdstore.Store) *watchhub.Hub {
	tb.Helper()
	h, err := watchhub.New(s, watchhub.Options{RetryInterval: 20 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// toItems converts one watch's hub responses into watchtest items.
func toItems(tb testing.TB, rs []watchhub.Response) []watchtest.Item {
	tb.Helper()
	var out []watchtest.Item
	for _, r := range rs {
		it := watchtest.Item{Revision: r.Revision, CompactRevision: r.CompactRevision}
		switch r.Kind {
		case watchhub.KindCreated:
			it.Kind = watchtest.Created
		case watchhub.KindEvents:
			it.Kind = watchtest.Events
		case watchhub.KindProgress, watchhub.KindWatchProgress:
			it.Kind = watchtest.Progress
		case watchhub.KindCompacted:
			it.Kind = watchtest.Compacted
		case watchhub.KindCanceled:
			it.Kind = watchtest.Canceled
		case watchhub.KindError:
			it.Kind = watchtest.Error
		default:
			tb.Fatalf("unexpected response %v", r.Kind)
		}
		for _, e := range r.Events {
			it.Events = append(it.Events, watchtest.FromKV(e.Event, r.PrevKV, ""))
		}
		out = append(out, it)
	}
	return out
}

// segment is what a watcher received from one gateway, and where it
// resumed there.
type segment struct {
	gateway  int
	startRev int64
	resps    []watchhub.Response
}

// watchUntil watches req on hub from startRev until stop says so, and
// returns what it received and the revision to resume at: the revision
// after the last one an events response or a bookmark completed.
func watchUntil(tb testing.TB, hub *watchhub.Hub, req watchhub.WatchRequest, stop func(resume int64) bool) ([]watchhub.Response, int64) {
	tb.Helper()
	st, err := hub.NewStream(watchhub.StreamOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Watch(req); err != nil {
		tb.Fatal(err)
	}
	resume := req.StartRev
	var got []watchhub.Response
	deadline := time.Now().Add(30 * time.Second)
	for !stop(resume) {
		if time.Now().After(deadline) {
			tb.Fatalf("watch from %d: resume point %d after 30s", req.StartRev, resume)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		rs, err := st.Recv(ctx, nil)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			// Idle: ask for a bookmark, so the resume point moves on
			// even when nothing matches.
			if err := st.RequestWatchProgress(req.ID); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range rs {
			switch r.Kind {
			case watchhub.KindEvents, watchhub.KindWatchProgress, watchhub.KindProgress:
				resume = max(resume, r.Revision+1)
			case watchhub.KindCompacted, watchhub.KindCanceled, watchhub.KindError:
				tb.Fatalf("watch ended: %v %+v", r.Kind, r)
			}
		}
		got = append(got, rs...)
	}
	return got, resume
}

// TestWatcherMovesBetweenGateways runs the real watch hub on two gateways
// of one cluster. A watcher hops from one to the other, resuming each time
// at the revision after the last one it was sent, while writes go on
// through both and a member is killed and restarted. The whole stream is
// checked against etcd's history: no event lost, none repeated, none out
// of order, revisions never split.
func TestWatcherMovesBetweenGateways(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	gws := []*etcdstore.Store{openStore(t, c, testOptions(c)), openStore(t, c, testOptions(c))}
	hubs := []*watchhub.Hub{newHub(t, gws[0]), newHub(t, gws[1])}
	w1 := startWriter(gws[0], "w/")
	w2 := startWriter(gws[1], "o/")
	defer w2.finish()
	defer w1.finish()

	req := watchhub.WatchRequest{ID: "a", Key: []byte("w/"), End: kv.PrefixEnd([]byte("w/")), StartRev: 2, PrevKV: true}
	var segs []segment
	for hop := range 6 {
		g := hop % 2
		switch hop {
		case 2:
			c.Kill(1)
		case 4:
			c.Restart(1)
		}
		target := func() int64 { rev, _ := gws[g].Revisions(); return rev + 20 }()
		rs, resume := watchUntil(t, hubs[g], req, func(resume int64) bool { return resume > target })
		segs = append(segs, segment{gateway: g, startRev: req.StartRev, resps: rs})
		req.StartRev = resume
	}
	w1.finish()
	w2.finish()
	last, err := currentRevision(ctxT(t), gws[0])
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := watchUntil(t, hubs[0], req, func(resume int64) bool { return resume > last })
	segs = append(segs, segment{gateway: 0, startRev: req.StartRev, resps: rs})

	h, err := watchtest.NewHistory(1, etcdHistory(t, c, 2, last))
	if err != nil {
		t.Fatal(err)
	}
	chk := watchtest.NewChecker(h, watchtest.Request{Key: req.Key, End: req.End, StartRev: 2, PrevKV: true})
	for i, sg := range segs {
		if i > 0 {
			if err := chk.Resume(sg.startRev, 0); err != nil {
				t.Fatalf("hop %d to gateway %d at %d: %v", i, sg.gateway, sg.startRev, err)
			}
		}
		for _, it := range toItems(t, sg.resps) {
			if err := chk.Add(it); err != nil {
				t.Fatalf("hop %d (gateway %d, from revision %d): %v", i, sg.gateway, sg.startRev, err)
			}
		}
	}
	if err := chk.Complete(last); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d events over %d hops, revisions 2..%d", chk.Events(), len(segs), last)
	if chk.Events() < 50 {
		t.Errorf("only %d events checked", chk.Events())
	}
}

// TestHubTellsCompactionInBand compacts the cluster through one gateway and
// watches from a compacted revision through another that has not learned
// of the compaction: the history read meets it in etcd, and the hub ends
// the watch with KindCompacted carrying the compact revision shown (etcd's
// plus one).
func TestHubTellsCompactionInBand(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	g1 := openStore(t, c, testOptions(c))
	opts := testOptions(c)
	opts.HealthInterval = time.Hour // learns only from etcd's answers
	g2 := openStore(t, c, opts)
	for i := range 10 {
		put(t, g1, fmt.Sprintf("k/%d", i), "v")
	}
	hub := newHub(t, g2)
	if err := g1.Compact(ctxT(t), 8); err != nil {
		t.Fatal(err)
	}
	if _, compact := g2.Revisions(); compact != 1 {
		t.Fatalf("gateway 2 already knows compact revision %d", compact)
	}
	st, err := hub.NewStream(watchhub.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Watch(watchhub.WatchRequest{ID: "old", Key: []byte("k/"), End: kv.PrefixEnd([]byte("k/")), StartRev: 3}); err != nil {
		t.Fatal(err)
	}
	var got []watchhub.Response
	for len(got) == 0 || got[len(got)-1].Kind != watchhub.KindCompacted {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rs, err := st.Recv(ctx, nil)
		cancel()
		if err != nil {
			t.Fatalf("after %+v: %v", got, err)
		}
		got = append(got, rs...)
		if k := got[len(got)-1].Kind; k == watchhub.KindEvents || k == watchhub.KindError {
			t.Fatalf("watch from a compacted revision got %+v", got[len(got)-1])
		}
	}
	if r := got[len(got)-1]; r.CompactRevision != 9 || r.Revision != 11 {
		t.Errorf("compacted response %+v; want compact revision 9 (etcd's 8, plus one), revision 11", r)
	}
	h, err := watchtest.NewHistory(1, etcdHistory(t, c, 8, 11))
	if err == nil {
		err = watchtest.Check(h, watchtest.Request{Key: []byte("k/"), End: kv.PrefixEnd([]byte("k/")), StartRev: 3}, toItems(t, got))
	}
	if err != nil {
		t.Error(err)
	}
}
