package watchhub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
)

func TestWatchFromNextRevision(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	put(t, st, "ns1/before", "x")
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{})
	reqs := map[string]WatchRequest{
		"prefix": prefixReq("prefix", "ns1/"),
		"key":    {ID: "key", Key: []byte("ns1/a"), PrevKV: true},
		"all":    {ID: "all", Key: nil, End: []byte{0}},
		"puts":   {ID: "puts", Key: []byte("ns1/"), End: kv.PrefixEnd([]byte("ns1/")), NoDelete: true},
	}
	for _, req := range reqs {
		if got, want := watch(t, s, req), int64(2); got != want {
			t.Fatalf("created revision %d, want %d", got, want)
		}
	}
	put(t, st, "ns1/a", "1")
	put(t, st, "ns10", "near prefix")
	txn(t, st, opPut("ns1/a", "2"), opPut("ns1/b", "1"), opPut("other", "o"))
	del(t, st, "ns1/", string(kv.PrefixEnd([]byte("ns1/"))))
	last := put(t, st, "ns1/c", "1")
	got := settle(t, s, nil, last)
	validate(t, history(t, rec), reqs, got, last)
	if diff := cmp.Diff([]string{"created", "events", "events", "events"}, kinds(got, "key")); diff != "" {
		t.Errorf("key watch kinds (-want +got):\n%s", diff)
	}
}

// TestUnsyncedCatchUp starts watchers behind, from disk history (beyond the
// recent window) and from the recent window, while writes go on, and checks
// that each joins the synced group with nothing lost or repeated at the
// boundary.
func TestUnsyncedCatchUp(t *testing.T) {
	for _, tt := range []struct {
		name   string
		recent int
	}{
		{"from disk", 4},
		{"from memory", 4096},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, kv.Options{})
			rec := watchtest.Record(st.Subscribe)
			defer rec.Stop()
			h := newHub(t, st, Options{RecentRevisions: tt.recent, SyncEvents: 16, SyncWatchers: 3})
			for i := range 200 {
				put(t, st, fmt.Sprintf("k/%d", i%13), fmt.Sprint(i))
			}
			s := newStream(t, h, StreamOptions{})
			reqs := map[string]WatchRequest{}
			for i, start := range []int64{1, 2, 50, 150, 199, 201, 202} {
				req := prefixReq(fmt.Sprint("w", i), "k/")
				req.StartRev = start
				req.PrevKV = i%2 == 0
				reqs[req.ID] = req
				watch(t, s, req)
			}
			single := WatchRequest{ID: "single", Key: []byte("k/3"), StartRev: 10}
			reqs[single.ID] = single
			watch(t, s, single)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range 100 {
					put(t, st, fmt.Sprintf("k/%d", i%7), "live")
				}
			}()
			<-done
			last := put(t, st, "k/last", "x")
			got := recv(t, s, nil, func(rs []Response) bool {
				for id := range reqs {
					if id != "single" && !upTo(id, last)(rs) {
						return false
					}
				}
				return true
			})
			if err := s.RequestProgress(); err != nil {
				t.Fatal(err)
			}
			got = recv(t, s, got, has(KindProgress, ""))
			validate(t, history(t, rec), reqs, got, last)
			if st := h.Stats(); st.Synced != len(reqs) || st.Unsynced != 0 || st.Victim != 0 {
				t.Errorf("stats %+v, want all %d synced", st, len(reqs))
			}
		})
	}
}

// TestVictim fills a stream's queue: its watcher becomes a victim whose
// events are kept aside, then delivered in order once the stream drains.
func TestVictim(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	h := newHub(t, st, Options{RetryInterval: time.Hour})
	s := newStream(t, h, StreamOptions{MaxQueueResponses: 2})
	req := prefixReq("v", "a/")
	watch(t, s, req)
	for i := range 5 {
		put(t, st, "a/k", fmt.Sprint(i))
	}
	if got := h.Stats(); got.Victim != 1 || got.Synced != 0 {
		t.Fatalf("stats %+v, want one victim", got)
	}
	last := put(t, st, "a/k", "last")
	got := recv(t, s, nil, upTo("v", last))
	if got := h.Stats(); got.Victim != 0 || got.Synced != 1 {
		t.Fatalf("stats %+v after draining, want one synced", got)
	}
	validate(t, history(t, rec), map[string]WatchRequest{"v": req}, got, last)
}

// TestVictimOverflow exceeds a victim's pending bound: its buffer is
// dropped and it catches up from history, still without a gap.
func TestVictimOverflow(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	h := newHub(t, st, Options{RetryInterval: time.Hour, RecentRevisions: 2})
	s := newStream(t, h, StreamOptions{MaxQueueResponses: 1, MaxPendingBytes: 1000})
	req := prefixReq("v", "a/")
	watch(t, s, req)
	for i := range 20 {
		put(t, st, "a/k", fmt.Sprint(i))
	}
	if got := h.Stats(); got.Unsynced != 1 || got.Victim != 0 {
		t.Fatalf("stats %+v, want the victim moved to unsynced", got)
	}
	last := put(t, st, "a/k", "last")
	got := recv(t, s, nil, upTo("v", last))
	validate(t, history(t, rec), map[string]WatchRequest{"v": req}, got, last)
	if got := h.Stats(); got.Synced != 1 {
		t.Fatalf("stats %+v, want synced again", got)
	}
}

// TestSlowStreamDoesNotSlowOthers checks that a stream that never drains
// costs its own watchers only.
func TestSlowStreamDoesNotSlowOthers(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	h := newHub(t, st, Options{})
	slow := newStream(t, h, StreamOptions{MaxQueueResponses: 1, MaxPendingBytes: 1 << 10})
	fast := newStream(t, h, StreamOptions{})
	req := prefixReq("w", "a/")
	watch(t, slow, req)
	watch(t, fast, req)
	var last int64
	for i := range 300 {
		last = put(t, st, "a/k", fmt.Sprint(i))
	}
	got := recv(t, fast, nil, upTo("w", last))
	validate(t, history(t, rec), map[string]WatchRequest{"w": req}, got, last)
	if n := slow.queued(); n > 2 {
		t.Fatalf("slow stream holds %d responses, want its bound", n)
	}
	got = recv(t, slow, nil, upTo("w", last))
	validate(t, history(t, rec), map[string]WatchRequest{"w": req}, got, last)
}

func TestCompactedAtStart(t *testing.T) {
	st := openStore(t, kv.Options{})
	for i := range 10 {
		put(t, st, "c/k", fmt.Sprint(i))
	}
	if err := st.Compact(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{})
	req := prefixReq("c", "c/")
	req.StartRev = 5
	watch(t, s, req)
	got := recv(t, s, nil, has(KindCompacted, "c"))
	want := []Response{
		{Kind: KindCreated, WatchID: "c", Revision: 11},
		{Kind: KindCompacted, WatchID: "c", Revision: 11, CompactRevision: 8},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Response{})); diff != "" {
		t.Errorf("responses (-want +got):\n%s", diff)
	}
	if s.Len() != 0 {
		t.Errorf("compacted watch still on the stream")
	}
	// The id is free again, and a watch at the compact revision is served.
	req.StartRev = 8
	watch(t, s, req)
	recv(t, s, nil, upTo("c", 11))
}

// TestCompactedWhileBehind compacts history while an unsynced watcher waits
// for room in its stream: it gets KindCompacted when it is served again,
// and other watches of the stream go on.
func TestCompactedWhileBehind(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	h := newHub(t, st, Options{RecentRevisions: 2, RetryInterval: time.Hour})
	s := newStream(t, h, StreamOptions{MaxQueueResponses: 1})
	for i := range 10 {
		put(t, st, "c/k", fmt.Sprint(i))
	}
	other := WatchRequest{ID: "other", Key: []byte("o")}
	watch(t, s, other)
	// Fill the queue so that the catch-up cannot start.
	put(t, st, "o", "1")
	behind := prefixReq("behind", "c/")
	behind.StartRev = 2
	watch(t, s, behind)
	if got := h.Stats(); got.Unsynced != 1 {
		t.Fatalf("stats %+v, want one unsynced", got)
	}
	rev, _ := st.Revisions()
	if err := st.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	last := put(t, st, "o", "2")
	got := recv(t, s, nil, func(rs []Response) bool { return has(KindCompacted, "behind")(rs) && upTo("other", last)(rs) })
	validate(t, history(t, rec), map[string]WatchRequest{"other": other, "behind": behind}, got, 0)
}

func TestSnapshot(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	for i := range 11 {
		put(t, st, fmt.Sprintf("s/%02d", i), fmt.Sprint(i))
	}
	put(t, st, "s0", "near prefix")
	del(t, st, "s/03", "")
	h := newHub(t, st, Options{SnapshotChunk: 3})
	s := newStream(t, h, StreamOptions{MaxQueueResponses: 2})
	req := prefixReq("snap", "s/")
	req.Snapshot = true
	rev := watch(t, s, req)
	last := txn(t, st, opPut("s/00", "new"), opDel("s/01"))
	got := recv(t, s, nil, upTo("snap", last))
	validate(t, history(t, rec), map[string]WatchRequest{"snap": req}, got, last)
	want := []string{"created", "reset", "snapshot", "snapshot", "snapshot", "snapshot", "synced", "events"}
	if diff := cmp.Diff(want, kinds(got, "snap")); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	for _, r := range got {
		if (r.Kind == KindReset || r.Kind == KindSynced) && r.Revision != rev {
			t.Errorf("%s at %d, want %d", r.Kind, r.Revision, rev)
		}
	}
}

// TestSnapshotHeals resumes a snapshot watch from a compacted revision: it
// heals with reset, a fresh snapshot and synced instead of compacted.
func TestSnapshotHeals(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	for i := range 6 {
		put(t, st, fmt.Sprintf("s/%d", i%3), fmt.Sprint(i))
	}
	if err := st.Compact(context.Background(), 6); err != nil {
		t.Fatal(err)
	}
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{})
	req := prefixReq("snap", "s/")
	req.Snapshot = true
	req.StartRev = 3
	watch(t, s, req)
	last := put(t, st, "s/9", "x")
	got := recv(t, s, nil, upTo("snap", last))
	validate(t, history(t, rec), map[string]WatchRequest{"snap": req}, got, last)
	if diff := cmp.Diff([]string{"created", "reset", "snapshot", "synced", "events"}, kinds(got, "snap")); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
}

func TestResumeInsideRevision(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	rev := txn(t, st, opPut("r/a", "1"), opPut("x", "1"), opPut("r/b", "1"), opPut("r/c", "1"))
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{})
	// An SSE client saw "rev.0" (r/a): it resumes after sub-revision 0.
	req := prefixReq("r", "r/")
	req.StartRev, req.StartSub = rev, 1
	watch(t, s, req)
	last := put(t, st, "r/d", "1")
	got := recv(t, s, nil, upTo("r", last))
	validate(t, history(t, rec), map[string]WatchRequest{"r": req}, got, last)
	// The catch-up may merge revision rev+1 (r/d) into the same response
	// when the put lands before the watch is caught up: a response never
	// splits a revision but may hold several.
	first := got[1]
	if len(first.Events) < 2 || string(first.Events[0].KV.Key) != "r/b" || string(first.Events[1].KV.Key) != "r/c" {
		t.Fatalf("first events %s, want r/b and r/c first", dump(got[1:2]))
	}
	if first.LastOfRevision(0) || !first.LastOfRevision(1) {
		t.Errorf("LastOfRevision wrong for %s", dump(got[1:2]))
	}
	if len(first.Events) > 2 && (first.Events[2].Revision() != last || !first.LastOfRevision(2)) {
		t.Errorf("events after revision %d in %s, want only r/d at %d", rev, dump(got[1:2]), last)
	}
}

func TestProgress(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{RecentRevisions: 2, RetryInterval: time.Hour})
	s := newStream(t, h, StreamOptions{MaxQueueResponses: 1})
	watch(t, s, WatchRequest{ID: "a", Key: []byte("a")})
	rev := put(t, st, "b", "1")
	if err := s.RequestProgress(); err != nil {
		t.Fatal(err)
	}
	got := s.Drain(nil)
	want := []Response{{Kind: KindCreated, WatchID: "a", Revision: 1}, {Kind: KindProgress, Revision: rev}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Response{})); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}

	// A watch behind defers the stream's bookmark until it caught up.
	put(t, st, "a", "1") // fills the queue
	watch(t, s, WatchRequest{ID: "old", Key: []byte("b"), StartRev: 1})
	if err := s.RequestProgress(); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestWatchProgress("a"); err != nil {
		t.Fatal(err)
	}
	got = recv(t, s, nil, has(KindProgress, ""))
	var sawOld bool
	for _, r := range got {
		if r.Kind == KindEvents && r.WatchID == "old" {
			sawOld = true
		}
		if r.Kind == KindProgress && !sawOld {
			t.Fatalf("stream bookmark before the lagging watch caught up:%s", dump(got))
		}
	}
	if !has(KindWatchProgress, "a")(got) {
		t.Errorf("no per-watch bookmark:%s", dump(got))
	}
	if err := s.RequestWatchProgress("nope"); !errors.Is(err, ErrWatchNotFound) {
		t.Errorf("RequestWatchProgress(unknown) = %v, want ErrWatchNotFound", err)
	}
}

func TestIdleProgress(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{ProgressInterval: 20 * time.Millisecond})
	watch(t, s, prefixReq("p", "p/"))
	rev := put(t, st, "p/a", "1")
	got := recv(t, s, nil, func(rs []Response) bool {
		n := 0
		for _, r := range rs {
			if r.Kind == KindProgress && r.Revision == rev {
				n++
			}
		}
		return n >= 2
	})
	for i, r := range got {
		if r.Kind == KindProgress && i < 2 {
			t.Fatalf("bookmark before the event:%s", dump(got))
		}
	}
}

func TestCancelAndErrors(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{})
	watch(t, s, prefixReq("a", "a/"))
	for _, tt := range []struct {
		name string
		req  WatchRequest
		want error
	}{
		{"duplicate id", prefixReq("a", "b/"), ErrWatchExists},
		{"empty single key", WatchRequest{ID: "x"}, ErrInvalidRange},
		{"end before key", WatchRequest{ID: "x", Key: []byte("b"), End: []byte("a")}, ErrInvalidRange},
		{"end equals key", WatchRequest{ID: "x", Key: []byte("b"), End: []byte("b")}, ErrInvalidRange},
		{"negative revision", WatchRequest{ID: "x", Key: []byte("b"), StartRev: -1}, ErrInvalidRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Watch(tt.req); !errors.Is(err, tt.want) {
				t.Fatalf("Watch = %v, want %v", err, tt.want)
			}
		})
	}
	if err := s.Cancel("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Cancel("a"); !errors.Is(err, ErrWatchNotFound) {
		t.Fatalf("second Cancel = %v, want ErrWatchNotFound", err)
	}
	put(t, st, "a/x", "1")
	if err := s.RequestProgress(); err != nil {
		t.Fatal(err)
	}
	got := recv(t, s, nil, has(KindProgress, ""))
	if diff := cmp.Diff([]string{"created", "canceled"}, kinds(got, "a")); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if st := h.Stats(); st.Synced != 0 {
		t.Errorf("stats %+v after cancel", st)
	}
}

func TestCloseStreamAndHub(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	s1 := newStream(t, h, StreamOptions{})
	s2 := newStream(t, h, StreamOptions{})
	watch(t, s1, prefixReq("a", "a/"))
	watch(t, s2, WatchRequest{ID: "b", Key: []byte("b"), StartRev: 1})
	s1.Close()
	s1.Close()
	if _, err := s1.Watch(prefixReq("c", "c/")); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("Watch on a closed stream = %v", err)
	}
	if got := h.Stats(); got.Streams != 1 || got.Synced+got.Unsynced != 1 {
		t.Fatalf("stats %+v after closing one stream", got)
	}
	put(t, st, "b", "1")
	h.Close()
	select {
	case <-s2.Done():
	default:
		t.Fatal("stream not closed by the hub's Close")
	}
	ctx := context.Background()
	var err error
	for err == nil {
		_, err = s2.Recv(ctx, nil)
	}
	if !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("Recv after Close = %v", err)
	}
	if _, err := h.NewStream(StreamOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewStream after Close = %v", err)
	}
}

// TestEncodeOnce checks that every stream gets the same shared event and
// that its bytes are computed once.
func TestEncodeOnce(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	var streams []*Stream
	for i := range 3 {
		s := newStream(t, h, StreamOptions{})
		watch(t, s, WatchRequest{ID: fmt.Sprint(i), Key: []byte("k"), PrevKV: i == 0})
		streams = append(streams, s)
	}
	put(t, st, "k", "1")
	rev := put(t, st, "k", "2")
	var evs []*Event
	for i, s := range streams {
		got := recv(t, s, nil, upTo(fmt.Sprint(i), rev))
		for _, r := range got {
			evs = append(evs, r.Events...)
		}
	}
	if len(evs) != 6 || evs[1] != evs[3] || evs[3] != evs[5] {
		t.Fatalf("streams got different events")
	}
	a, b := evs[1].JSON(false), evs[3].JSON(false)
	if &a[0] != &b[0] {
		t.Errorf("JSON encoded twice")
	}
	if string(evs[1].Data(true)) == string(evs[1].Data(false)) {
		t.Errorf("prev_kv form equals the plain form: %s", evs[1].Data(true))
	}
}

// TestWatchFutureRevision starts a watch at a revision not yet committed:
// it gets nothing before it.
func TestWatchFutureRevision(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{})
	req := prefixReq("f", "f/")
	req.StartRev = 4
	watch(t, s, req)
	put(t, st, "f/a", "2")
	put(t, st, "f/a", "3")
	last := put(t, st, "f/a", "4")
	got := settle(t, s, nil, last)
	validate(t, history(t, rec), map[string]WatchRequest{"f": req}, got, last)
	if n := len(got[1].Events); got[1].Kind != KindEvents || n != 1 || got[1].Events[0].KV.ModRevision != 4 {
		t.Fatalf("want only revision 4:%s", dump(got))
	}
}

// TestStreamFull refuses new watches on a stream whose client reads
// nothing, so its queue of control responses stays bounded.
func TestStreamFull(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{MaxQueueResponses: 2})
	var err error
	for i := 0; err == nil; i++ {
		if i > 100 {
			t.Fatal("no bound on an undrained stream's queue")
		}
		_, err = s.Watch(WatchRequest{ID: fmt.Sprint(i), Key: []byte("k")})
	}
	if !errors.Is(err, ErrStreamFull) {
		t.Fatalf("Watch = %v, want ErrStreamFull", err)
	}
	if got := len(s.Drain(nil)); got != 9 {
		t.Fatalf("%d responses queued, want 9", got)
	}
	if _, err := s.Watch(WatchRequest{ID: "again", Key: []byte("k")}); err != nil {
		t.Fatalf("Watch after draining = %v", err)
	}
}

// TestDrainSwapsArrays checks that draining into an empty buffer hands the
// queue's array over without copying, and that responses are not lost
// when the buffer is not empty.
func TestDrainSwapsArrays(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	s := newStream(t, h, StreamOptions{})
	watch(t, s, WatchRequest{ID: "a", Key: []byte("k")})
	got := s.Drain(make([]Response, 0, 8))
	if len(got) != 1 || got[0].Kind != KindCreated {
		t.Fatalf("got %s", dump(got))
	}
	rev := put(t, st, "k", "1")
	got = s.Drain(got)
	if len(got) != 2 || got[1].Kind != KindEvents || got[1].Revision != rev {
		t.Fatalf("appending drain got %s", dump(got))
	}
	put(t, st, "k", "2")
	got = s.Drain(got[:0])
	if len(got) != 1 || got[0].Kind != KindEvents {
		t.Fatalf("swapping drain got %s", dump(got))
	}
}

// TestSnapshotRestartsWhenCompacted compacts past a snapshot's revision
// while it is being sent: the snapshot restarts at a new revision.
func TestSnapshotRestartsWhenCompacted(t *testing.T) {
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	for i := range 5 {
		put(t, st, fmt.Sprintf("s/%d", i), fmt.Sprint(i))
	}
	h := newHub(t, st, Options{SnapshotChunk: 1, RetryInterval: time.Hour})
	s := newStream(t, h, StreamOptions{MaxQueueResponses: 1})
	req := prefixReq("snap", "s/")
	req.Snapshot = true
	first := watch(t, s, req)
	// Created, Reset and the first chunk, which fills the queue.
	for deadline := time.Now().Add(10 * time.Second); s.queued() < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("first chunk not queued")
		}
		time.Sleep(time.Millisecond)
	}
	put(t, st, "s/1", "changed")
	rev := put(t, st, "s/9", "new")
	if err := st.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	last := put(t, st, "s/2", "live")
	got := settle(t, s, nil, last)
	validate(t, history(t, rec), map[string]WatchRequest{"snap": req}, got, last)
	var resets []int64
	for _, r := range got {
		if r.Kind == KindReset {
			resets = append(resets, r.Revision)
		}
	}
	if len(resets) != 2 || resets[0] != first || resets[1] < rev {
		t.Fatalf("resets at %v, want %d then one at %d or later:%s", resets, first, rev, dump(got))
	}
}

// TestProgressWaitsForWatchAhead: a watch that starts beyond the hub's
// revision (a client that saw later revisions through another gateway)
// gets no bookmark, stream-level, per-watch or idle, below what its
// client has seen: they wait until the hub reaches its start.
func TestProgressWaitsForWatchAhead(t *testing.T) {
	for _, tt := range []struct {
		name     string
		startSub int32
		reach    int // writes after which the hub reaches the start
	}{
		{"whole revision", 0, 2},
		{"inside a revision", 1, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, kv.Options{})
			h := newHub(t, st, Options{})
			s := newStream(t, h, StreamOptions{ProgressInterval: 10 * time.Millisecond})
			rev, _ := st.Revisions()
			start := rev + 3 // the client has seen everything up to rev+2 (or rev+3.0)
			watch(t, s, WatchRequest{ID: "w", Key: []byte("k"), StartRev: start, StartSub: tt.startSub})
			if err := s.RequestProgress(); err != nil {
				t.Fatal(err)
			}
			if err := s.RequestWatchProgress("w"); err != nil {
				t.Fatal(err)
			}
			var got []Response
			for i := 1; i <= 3; i++ {
				time.Sleep(30 * time.Millisecond) // idle bookmarks would be due
				got = append(got, s.Drain(nil)...)
				put(t, st, "other", strconv.Itoa(i))
				if i == tt.reach {
					break
				}
			}
			got = recv(t, s, got, has(KindWatchProgress, "w"))
			got = recv(t, s, got, has(KindProgress, ""))
			seen := start - 1 // the client's position
			if tt.startSub > 0 {
				seen = start
			}
			for _, r := range got {
				if (r.Kind == KindProgress || r.Kind == KindWatchProgress) && r.Revision < seen {
					t.Fatalf("bookmark at %d, below the client's position %d:%s", r.Revision, seen, dump(got))
				}
			}
		})
	}
}
