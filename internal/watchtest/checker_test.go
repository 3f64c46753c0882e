package watchtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/watchgate/watchgate/kv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openStore opens a real store in a temporary directory, checked and
// closed at the end of the test.
func openStore(tb testing.TB) *kv.Store {
	tb.Helper()
	s, err := kv.Open(tb.TempDir(), kv.Options{NoSync: true})
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

// fixture writes a small history with the traps the checker must see:
// near-prefix keys (ns1/ and ns10), multi-key revisions, deletes, updates.
func fixture(tb testing.TB) *History {
	tb.Helper()
	s := openStore(tb)
	rec := Record(s.Subscribe)
	defer rec.Stop()
	ctx := context.Background()
	put := func(k, v string) kv.Op { return kv.Op{Type: kv.OpPut, Key: []byte(k), Value: []byte(v)} }
	del := func(k string) kv.Op { return kv.Op{Type: kv.OpDelete, Key: []byte(k)} }
	for _, ops := range [][]kv.Op{
		{put("ns1/a", "1")},                                      // 2
		{put("ns10", "x")},                                       // 3
		{put("ns1/b", "1"), put("ns1/c", "1")},                   // 4
		{put("ns1/a", "2"), put("other", "o")},                   // 5
		{del("ns1/b")},                                           // 6
		{put("ns1/a", "3"), put("ns10", "y"), put("ns1/d", "1")}, // 7
		{put("ns1/c", "2")},                                      // 8
		{del("ns1/a"), del("ns1/d")},                             // 9
		{put("ns1/e", "1")},                                      // 10
	} {
		if _, err := s.Txn(ctx, kv.TxnRequest{Success: ops}); err != nil {
			tb.Fatal(err)
		}
	}
	h, err := rec.History()
	if err != nil {
		tb.Fatal(err)
	}
	if h.Base() != 1 || h.Last() != 10 {
		tb.Fatalf("history covers (%d, %d], want (1, 10]", h.Base(), h.Last())
	}
	return h
}

var prefix = Request{Key: []byte("ns1/"), End: kv.PrefixEnd([]byte("ns1/")), StartRev: 2, PrevKV: true}

// correct builds, independently of the Checker, the stream a watch of req
// must receive: one events item per revision with matching events.
func correct(h *History, req Request) []Item {
	r := keyRange{key: req.Key, end: req.End}
	var items []Item
	for _, b := range h.Batches() {
		if b.Revision < req.StartRev {
			continue
		}
		var evs []Event
		for i := range b.Events {
			e := &b.Events[i]
			if !r.contains(e.KV.Key) || (e.Type == kv.EventPut && req.NoPut) || (e.Type == kv.EventDelete && req.NoDelete) {
				continue
			}
			if b.Revision == req.StartRev && e.Sub < req.StartSub {
				continue
			}
			evs = append(evs, FromKV(e, req.PrevKV, ""))
		}
		if len(evs) > 0 {
			items = append(items, Item{Kind: Events, Revision: b.Revision, Events: evs})
		}
	}
	return items
}

func cloneItems(items []Item) []Item {
	out := slices.Clone(items)
	for i := range out {
		out[i].Events = slices.Clone(out[i].Events)
	}
	return out
}

func TestCheckerAcceptsCorrectStreams(t *testing.T) {
	h := fixture(t)
	tests := []struct {
		name string
		req  Request
	}{
		{"prefix", prefix},
		{"single key", Request{Key: []byte("ns1/a"), StartRev: 2}},
		{"all keys", Request{Key: nil, End: []byte{0}, StartRev: 2}},
		{"open range", Request{Key: []byte("ns10"), End: []byte{0}, StartRev: 3}},
		{"puts only", Request{Key: []byte("ns1/"), End: kv.PrefixEnd([]byte("ns1/")), StartRev: 2, NoDelete: true}},
		{"deletes only", Request{Key: []byte("ns1/"), End: kv.PrefixEnd([]byte("ns1/")), StartRev: 2, NoPut: true}},
		{"from the middle", Request{Key: []byte("ns1/"), End: kv.PrefixEnd([]byte("ns1/")), StartRev: 6}},
		{"inside a revision", Request{Key: []byte("ns1/"), End: kv.PrefixEnd([]byte("ns1/")), StartRev: 7, StartSub: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := correct(h, tt.req)
			if len(items) == 0 {
				t.Fatal("fixture gives no events")
			}
			c := NewChecker(h, tt.req)
			for _, it := range items {
				if err := c.Add(it); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Add(Item{Kind: Progress, Revision: 10}); err != nil {
				t.Fatal(err)
			}
			if err := c.Complete(10); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCheckerCatches proves that each kind of broken stream is rejected.
func TestCheckerCatches(t *testing.T) {
	h := fixture(t)
	good := correct(h, prefix)
	// good: 2 [a], 4 [b c], 5 [a], 6 [del b], 7 [a d], 8 [c], 9 [del a, del d], 10 [e]
	tests := []struct {
		name   string
		req    Request
		mutate func([]Item) []Item
		want   string
	}{
		{"dropped event", prefix, func(it []Item) []Item { return slices.Delete(it, 2, 3) }, "gap"},
		{"dropped event inside a revision", prefix, func(it []Item) []Item {
			it[1].Events = it[1].Events[1:]
			return it
		}, "gap"},
		{"duplicated event", prefix, func(it []Item) []Item { return slices.Insert(it, 3, it[2]) }, "repeated"},
		{"swapped events", prefix, func(it []Item) []Item {
			it[2], it[3] = it[3], it[2]
			return it
		}, "gap"},
		{"swapped inside a revision", prefix, func(it []Item) []Item {
			e := it[1].Events
			e[0], e[1] = e[1], e[0]
			return it
		}, "gap"},
		{"split revision", prefix, func(it []Item) []Item {
			a, b := it[1], it[1]
			a.Events, b.Events = a.Events[:1], b.Events[1:]
			a.Revision = 0
			return slices.Concat(it[:1], []Item{a, b}, it[2:])
		}, "split"},
		{"bookmark ahead of an event", prefix, func(it []Item) []Item {
			return slices.Concat(it[:3], []Item{{Kind: Progress, Revision: 7}}, it[3:])
		}, "passes undelivered"},
		{"events revision ahead of an event", prefix, func(it []Item) []Item {
			it[2].Revision = 6
			return it
		}, "passes undelivered"},
		{"bookmark behind an event", prefix, func(it []Item) []Item {
			return slices.Concat(it[:3], []Item{{Kind: Progress, Revision: 3}}, it[3:])
		}, "behind"},
		{"near-prefix leak", prefix, func(it []Item) []Item {
			b := h.Batches()[1] // revision 3: ns10
			leak := Item{Kind: Events, Revision: 3, Events: []Event{FromKV(&b.Events[0], true, "")}}
			return slices.Concat(it[:1], []Item{leak}, it[1:])
		}, "outside the watched range"},
		{"filtered delete delivered", Request{Key: prefix.Key, End: prefix.End, StartRev: 2, NoDelete: true}, func([]Item) []Item {
			return correct(h, Request{Key: prefix.Key, End: prefix.End, StartRev: 2})
		}, "despite the filter"},
		{"prev_kv missing", prefix, func([]Item) []Item {
			return correct(h, Request{Key: prefix.Key, End: prefix.End, StartRev: 2})
		}, "prev_kv"},
		{"prev_kv not asked", Request{Key: prefix.Key, End: prefix.End, StartRev: 2}, func([]Item) []Item { return good }, "not asked"},
		{"wrong value", prefix, func(it []Item) []Item {
			it[2].Events[0].KV.Value = []byte("zzz")
			return it
		}, "kv"},
		{"compacted while readable", prefix, func(it []Item) []Item {
			return slices.Concat(it[:2], []Item{{Kind: Compacted, CompactRevision: 4, Revision: 10}})
		}, "still readable"},
		{"event after compacted", prefix, func(it []Item) []Item {
			return slices.Concat(it[:2], []Item{{Kind: Compacted, CompactRevision: 8, Revision: 10}}, it[2:3])
		}, "ended"},
		{"event before the start", Request{Key: prefix.Key, End: prefix.End, StartRev: 5, PrevKV: true}, func(it []Item) []Item { return it }, "repeated"},
		{"wrong sse id", prefix, func(it []Item) []Item {
			it[1].Events[0].ID = "4"
			return it
		}, "id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			items := tt.mutate(cloneItems(good))
			err := Check(h, tt.req, items)
			if err == nil {
				t.Fatalf("broken stream accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestCheckerSSEIDs checks the per-event id rule: one event a message,
// "R.S" for all but the watch's last event of R.
func TestCheckerSSEIDs(t *testing.T) {
	h := fixture(t)
	var items []Item
	for _, it := range correct(h, prefix) {
		for i, e := range it.Events {
			e.ID = fmt.Sprint(e.KV.ModRevision)
			if i < len(it.Events)-1 {
				e.ID = fmt.Sprintf("%d.%d", e.KV.ModRevision, e.Sub)
			}
			items = append(items, Item{Kind: Events, Events: []Event{e}})
		}
	}
	if err := Check(h, prefix, items); err != nil {
		t.Fatal(err)
	}
	// Resume after every message: the resume id must continue exactly.
	for cut := 1; cut < len(items); cut++ {
		c := NewChecker(h, prefix)
		for _, it := range items[:cut] {
			if err := c.Add(it); err != nil {
				t.Fatal(err)
			}
		}
		rev, sub := c.ResumePoint()
		if got, want := c.ResumeID(), items[cut-1].Events[0].ID; got != want {
			t.Fatalf("cut %d: resume id %q, want the last id %q", cut, got, want)
		}
		if err := c.Resume(rev, sub); err != nil {
			t.Fatal(err)
		}
		for _, it := range items[cut:] {
			if err := c.Add(it); err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
		}
	}
}

func TestCheckerResume(t *testing.T) {
	h := fixture(t)
	good := correct(h, prefix)
	t.Run("exact", func(t *testing.T) {
		c := NewChecker(h, prefix)
		for _, it := range good[:3] {
			if err := c.Add(it); err != nil {
				t.Fatal(err)
			}
		}
		rev, sub := c.ResumePoint()
		if rev != 6 || sub != 0 {
			t.Fatalf("resume point %d.%d, want 6.0", rev, sub)
		}
		if err := c.Resume(rev, sub); err != nil {
			t.Fatal(err)
		}
		if err := c.Add(Item{Kind: Created, Revision: 10}); err != nil {
			t.Fatal(err)
		}
		for _, it := range good[3:] {
			if err := c.Add(it); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("beyond the resume point", func(t *testing.T) {
		c := NewChecker(h, prefix)
		for _, it := range good[:3] {
			if err := c.Add(it); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Resume(7, 0); err == nil {
			t.Fatal("resume that skips revision 6 accepted")
		}
	})
	t.Run("segment repeats", func(t *testing.T) {
		c := NewChecker(h, prefix)
		for _, it := range good[:3] {
			if err := c.Add(it); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Resume(6, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.Add(good[2]); err == nil {
			t.Fatal("resumed stream repeating revision 5 accepted")
		}
	})
}

func TestCheckerSnapshot(t *testing.T) {
	h := fixture(t)
	req := Request{Key: prefix.Key, End: prefix.End, Snapshot: true}
	state, err := h.StateAt(5, req.Key, req.End)
	if err != nil {
		t.Fatal(err)
	}
	var puts []Event
	for _, k := range state {
		puts = append(puts, Event{Type: kv.EventPut, KV: k})
	}
	if len(puts) != 3 {
		t.Fatalf("state at 5 has %d keys, want ns1/a ns1/b ns1/c", len(puts))
	}
	live := correct(h, Request{Key: req.Key, End: req.End, StartRev: 6})
	head := []Item{{Kind: Created, Revision: 5}, {Kind: Reset, Revision: 5}}
	tests := []struct {
		name  string
		items []Item
		want  string
	}{
		{"correct", slices.Concat(head, []Item{{Kind: Snapshot, Events: puts[:2]}, {Kind: Snapshot, Events: puts[2:]}, {Kind: Synced, Revision: 5}}, live), ""},
		{"missing key", slices.Concat(head, []Item{{Kind: Snapshot, Events: puts[1:]}, {Kind: Synced, Revision: 5}}, live), "snapshot"},
		{"synced early", slices.Concat(head, []Item{{Kind: Snapshot, Events: puts[:2]}, {Kind: Synced, Revision: 5}}, live), "after 2 of the 3"},
		{"stale value", slices.Concat(head, []Item{{Kind: Snapshot, Events: []Event{puts[0], puts[1], {Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("ns1/c"), Value: []byte("2"), CreateRevision: 4, ModRevision: 8, Version: 2}}}}, {Kind: Synced, Revision: 5}}, live), "snapshot"},
		{"live event repeats the snapshot", slices.Concat(head, []Item{{Kind: Snapshot, Events: puts}, {Kind: Synced, Revision: 5}}, correct(h, Request{Key: req.Key, End: req.End, StartRev: 5})), "repeated"},
		{"event inside the snapshot", slices.Concat(head, live[:1]), "inside the snapshot"},
		{"compacted instead of reset", slices.Concat(head[:1], []Item{{Kind: Compacted, CompactRevision: 8, Revision: 10}}), "heal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(h, req, tt.items)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && err == nil:
				t.Fatal("broken snapshot accepted")
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestCheckerCompleteCatchesTrailingGap(t *testing.T) {
	h := fixture(t)
	good := correct(h, prefix)
	c := NewChecker(h, prefix)
	for _, it := range good[:len(good)-1] {
		if err := c.Add(it); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Complete(9); err != nil {
		t.Fatal(err)
	}
	if err := c.Complete(10); err == nil {
		t.Fatal("stream missing revision 10 reported complete")
	}
}
