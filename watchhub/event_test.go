package watchhub

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
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

// TestEventEncoded checks that every encoded form of an Event is the
// kvjson encoding of its store event, for short, long, escaped and binary
// keys and values, and that a form is computed once and then shared.
func TestEventEncoded(t *testing.T) {
	long := strings.Repeat("0123456789", 100)
	prev := &kv.KeyValue{Key: []byte("k"), Value: []byte("old\x00\"value\""), CreateRevision: 2, ModRevision: 2, Version: 1}
	tests := []struct {
		name string
		ev   kv.Event
	}{
		{"put", kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 2, ModRevision: 4, Version: 2}, PrevKV: prev}},
		{"put no prev", kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 4, ModRevision: 4, Version: 1}}},
		{"long escaped", kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("k\n\u2028"), Value: []byte(long + "\"\\\t" + long), CreateRevision: 1 << 40, ModRevision: 1<<40 + 1, Version: 1 << 30}, PrevKV: prev}},
		{"binary", kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte{0xff, 'k'}, Value: bytes.Repeat([]byte{0xfe, 0}, 300), CreateRevision: 2, ModRevision: 4, Version: 2}, PrevKV: &kv.KeyValue{Key: []byte{0xff, 'k'}, Value: []byte{0xc3}, CreateRevision: 2, ModRevision: 2, Version: 1}}},
		{"delete", kv.Event{Type: kv.EventDelete, KV: kv.KeyValue{Key: []byte("k"), ModRevision: 5}, PrevKV: prev}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Event{Event: &tt.ev}
			for _, withPrev := range []bool{false, true} {
				if diff := cmp.Diff(string(kvjson.AppendEvent(nil, &tt.ev, withPrev)), string(e.JSON(withPrev))); diff != "" {
					t.Errorf("JSON(%v) (-want +got):\n%s", withPrev, diff)
				}
				if diff := cmp.Diff(string(kvjson.AppendEventKV(nil, &tt.ev, withPrev)), string(e.Data(withPrev))); diff != "" {
					t.Errorf("Data(%v) (-want +got):\n%s", withPrev, diff)
				}
				if a, b := e.JSON(withPrev), e.JSON(withPrev); &a[0] != &b[0] {
					t.Errorf("JSON(%v) encoded twice", withPrev)
				}
			}
		})
	}
}

func BenchmarkEventEncode(b *testing.B) {
	prev := &kv.KeyValue{Key: []byte("c/001/02"), Value: []byte("value-0123456789"), CreateRevision: 2, ModRevision: 1000, Version: 10}
	ev := kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("c/001/02"), Value: []byte("value-0123456789"), CreateRevision: 2, ModRevision: 123456, Version: 11}, PrevKV: prev}
	b.Run("ws", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := &Event{Event: &ev}
			e.JSON(false)
		}
	})
	b.Run("sse-prev", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := &Event{Event: &ev}
			e.Data(true)
		}
	})
}

// TestEventEncodedArena checks encodings carved from a shared arena, as
// for events read from history, encoded concurrently: each is its event's
// kvjson encoding, unchanged by the encodings carved after it, and one
// carved from the arena has its capacity cut to its length.
func TestEventEncodedArena(t *testing.T) {
	arena := new(encArena)
	var evs []*Event
	for i := range 2000 {
		v := strings.Repeat("v", i%300)
		if i%97 == 0 {
			v = strings.Repeat("\x01", 3000) // escapes outgrow the estimate
		}
		if i == 1000 {
			v = strings.Repeat("w", 3*encChunk)
		}
		ev := &kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: fmt.Appendf(nil, "k/%d", i), Value: []byte(v), CreateRevision: 2, ModRevision: int64(i + 2), Version: 1}}
		evs = append(evs, &Event{Event: ev, arena: arena})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(evs); i += 4 {
				b := evs[i].JSON(false)
				if cap(b) != len(b) && len(b) <= encChunk/4 {
					// Carved from the arena: appending to it must not
					// reach the next encoding.
					t.Errorf("event %d: encoding of length %d has capacity %d", i, len(b), cap(b))
				}
				evs[i].Data(false)
			}
		})
	}
	wg.Wait()
	for i, e := range evs {
		if diff := cmp.Diff(string(kvjson.AppendEvent(nil, e.Event, false)), string(e.JSON(false))); diff != "" {
			t.Fatalf("event %d: JSON (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(string(kvjson.AppendEventKV(nil, e.Event, false)), string(e.Data(false))); diff != "" {
			t.Fatalf("event %d: Data (-want +got):\n%s", i, diff)
		}
	}
}

func BenchmarkEventEncodeArena(b *testing.B) {
	prev := &kv.KeyValue{Key: []byte("c/001/02"), Value: []byte("value-0123456789"), CreateRevision: 2, ModRevision: 1000, Version: 10}
	ev := kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("c/001/02"), Value: []byte("value-0123456789"), CreateRevision: 2, ModRevision: 123456, Version: 11}, PrevKV: prev}
	b.ReportAllocs()
	arena := new(encArena)
	for b.Loop() {
		e := &Event{Event: &ev, arena: arena}
		e.JSON(false)
	}
}
