package ws

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
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

// wait returns the calls once they count n events, or after 10 seconds
// (the hook runs after the batch is written, so just after the client may
// have read it).
func (r *sendRecorder) wait(n int) []sendCall {
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		calls := append([]sendCall(nil), r.calls...)
		r.mu.Unlock()
		if sumEvents(calls) >= n || time.Now().After(deadline) {
			return calls
		}
		time.Sleep(time.Millisecond)
	}
}

func sumEvents(calls []sendCall) int {
	n := 0
	for _, c := range calls {
		n += c.events
	}
	return n
}

// TestOnSend checks the send hook: it counts the change events written to
// a socket, for every watch they reach, never a snapshot's entries, and
// gives the notify time of the oldest, taken between the write's start and
// the events' arrival.
func TestOnSend(t *testing.T) {
	var rec sendRecorder
	ts := newTestServer(t, Options{OnSend: rec.onSend})
	ts.put(t, "s/a", "1")
	ts.put(t, "s/b", "2")
	c := ts.dial(t)
	c.send(`{"op":"watch","id":"snap","key":"s/","prefix":true,"snapshot":true}`)
	var kinds []string
	for _, m := range recvN(t, c, 4) {
		kinds = append(kinds, m.Type)
	}
	if diff := cmp.Diff([]string{TypeCreated, TypeReset, TypeEvents, TypeSynced}, kinds); diff != "" {
		t.Fatalf("snapshot (-want +got):\n%s", diff)
	}
	c.send(`{"op":"watch","id":"live","key":"s/","prefix":true}`)
	if m := c.recv(); m.Type != TypeCreated {
		t.Fatalf("got %+v, want created", m)
	}
	if calls := rec.wait(0); len(calls) != 0 {
		t.Errorf("OnSend called for a snapshot and acknowledgements: %v", calls)
	}

	before := time.Now()
	_, err := ts.store.Txn(context.Background(), kv.TxnRequest{Success: []kv.Op{
		{Type: kv.OpPut, Key: []byte("s/c"), Value: []byte("3")},
		{Type: kv.OpPut, Key: []byte("s/d"), Value: []byte("4")},
		{Type: kv.OpPut, Key: []byte("t/x"), Value: []byte("5")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	received := 0
	for received < 4 {
		m := c.recv()
		if m.Type != TypeEvents {
			t.Fatalf("got %+v, want events", m)
		}
		received += len(m.Events)
	}
	after := time.Now()
	calls := rec.wait(4)
	if sum := sumEvents(calls); sum != 4 {
		t.Errorf("OnSend counted %d events in %v, want 4 (2 for each watch)", sum, calls)
	}
	for _, call := range calls {
		if call.events <= 0 {
			t.Errorf("call with %d events", call.events)
		}
		if call.oldest.Before(before) || call.oldest.After(after) {
			t.Errorf("oldest notify %v outside the write [%v, %v]", call.oldest, before, after)
		}
	}
	// A progress message is no event.
	c.send(`{"op":"progress"}`)
	if m := c.recv(); m.Type != TypeProgress {
		t.Fatalf("got %+v, want progress", m)
	}
	time.Sleep(20 * time.Millisecond)
	if sum := sumEvents(rec.wait(0)); sum != 4 {
		t.Errorf("after a progress message OnSend counted %d events, want 4", sum)
	}
}
