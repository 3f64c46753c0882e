package watchhub

import (
	"fmt"
	"testing"
	"time"

	"github.com/watchgate/watchgate/kv"
)

// TestEventNotified checks the notify stamp: every event a synced watcher
// receives from a commit carries the time the hub was notified, one time for
// all the events of a transaction, between the write's start and the
// response's arrival; events read back from the store's history carry none.
func TestEventNotified(t *testing.T) {
	st := openStore(t, kv.Options{})
	// A recent window of one revision: a watcher starting further back
	// reads its events from disk.
	h := newHub(t, st, Options{RecentRevisions: 1})
	for i := range 5 {
		put(t, st, fmt.Sprint("old/", i), "x")
	}
	s := newStream(t, h, StreamOptions{})
	watch(t, s, prefixReq("live", "k/"))
	old := prefixReq("old", "old/")
	old.StartRev = 1
	watch(t, s, old)
	got := settle(t, s, nil, 5)
	for _, r := range got {
		if r.Kind != KindEvents || r.WatchID != "old" {
			continue
		}
		for _, e := range r.Events {
			if n := e.Notified(); !n.IsZero() {
				t.Errorf("history event at revision %d notified at %v, want the zero time", e.KV.ModRevision, n)
			}
		}
	}

	before := time.Now()
	last := txn(t, st, opPut("k/a", "1"), opPut("k/b", "2"), opPut("k/c", "3"))
	got = settle(t, s, nil, last)
	after := time.Now()
	var evs []*Event
	for _, r := range got {
		if r.Kind == KindEvents && r.WatchID == "live" {
			evs = append(evs, r.Events...)
		}
	}
	if len(evs) != 3 {
		t.Fatalf("live watch got %d events, want 3:\n%s", len(evs), dump(got))
	}
	first := evs[0].Notified()
	for i, e := range evs {
		n := e.Notified()
		if !n.Equal(first) {
			t.Errorf("event %d notified at %v, the transaction's first at %v: want one time per commit", i, n, first)
		}
		if n.Before(before) || n.After(after) {
			t.Errorf("event %d notified at %v, outside the write [%v, %v]", i, n, before, after)
		}
	}
}
