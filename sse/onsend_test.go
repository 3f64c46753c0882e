package sse

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/internal/sseclient"
)

// sendCall is one call of Options.OnSend.
type sendCall struct {
	events int
	oldest time.Time
}

// sendRecorder records the OnSend calls of a handler.
type sendRecorder struct {
	mu    sync.Mutex
	calls []sendCall
}

func (r *sendRecorder) onSend(events int, oldest time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, sendCall{events, oldest})
}

// wait returns the calls once they count n events, failing the test when
// they do not within 10 seconds (the hook runs after the flush, so just
// after the client may have read the events).
func (r *sendRecorder) wait(tb testing.TB, n int) []sendCall {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		calls := append([]sendCall(nil), r.calls...)
		r.mu.Unlock()
		sum := 0
		for _, c := range calls {
			sum += c.events
		}
		if sum >= n || time.Now().After(deadline) {
			return calls
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOnSend checks the send hook: it counts the change events written to
// each stream, never the snapshot's entries, and gives the notify time of
// the oldest of them, taken between the write's start and its arrival.
func TestOnSend(t *testing.T) {
	for _, proto := range protoNames {
		t.Run(proto, func(t *testing.T) {
			var rec sendRecorder
			e := newEnv(t, Options{OnSend: rec.onSend})
			e.put(t, "s/a", "1")
			e.put(t, "s/b", "2")
			c := e.client(proto)
			s := connect(t, c, e.url("s/", "prefix=true&snapshot=true"), sseclient.Options{})
			// The snapshot: reset, two puts, synced.
			for range 4 {
				nextEvent(t, s)
			}
			before := time.Now()
			e.txn(t, "s/c", "3", "s/d", "4", "t/x", "5")
			last := e.put(t, "s/e", "6")
			var got []string
			for range 3 {
				ev := nextEvent(t, s)
				got = append(got, ev.Type)
			}
			after := time.Now()
			if diff := cmp.Diff([]string{"put", "put", "put"}, got); diff != "" {
				t.Fatalf("live events (-want +got):\n%s", diff)
			}
			calls := rec.wait(t, 3)
			for _, c := range calls {
				if c.events <= 0 {
					t.Errorf("call with %d events", c.events)
				}
				if c.oldest.Before(before) || c.oldest.After(after) {
					t.Errorf("oldest notify %v outside the writes [%v, %v]", c.oldest, before, after)
				}
			}
			if sum := sumEvents(calls); sum != 3 {
				t.Errorf("OnSend counted %d events in %v, want 3 (up to revision %d)", sum, calls, last)
			}
			// Nothing more is counted: a write outside the range sends
			// nothing, a bookmark is not an event.
			e.put(t, "t/y", "7")
			time.Sleep(20 * time.Millisecond)
			if calls := rec.wait(t, 0); sumEvents(calls) != 3 {
				t.Errorf("after an unmatched write OnSend counted %d events, want 3", sumEvents(calls))
			}
		})
	}
}

func sumEvents(calls []sendCall) int {
	n := 0
	for _, c := range calls {
		n += c.events
	}
	return n
}
