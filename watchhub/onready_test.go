package watchhub

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watchgate/watchgate/kv"
)

// waitFor polls cond for up to 10 s.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestOnReadyTransitions checks that OnReady is called once for each
// transition of the queue from empty to non-empty, and not for responses
// queued behind others.
func TestOnReadyTransitions(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	var calls atomic.Int64
	s := newStream(t, h, StreamOptions{OnReady: func() { calls.Add(1) }})
	watch(t, s, WatchRequest{ID: "a", Key: []byte("k")})
	steps := []struct {
		name  string
		puts  int
		drain bool
		want  int64
	}{
		{name: "created", want: 1},
		{name: "behind created", puts: 3, want: 1},
		{name: "drained, nothing new", drain: true, want: 1},
		{name: "one after a drain", puts: 1, want: 2},
		{name: "more behind it", puts: 2, want: 2},
		{name: "drained again", drain: true, want: 2},
		{name: "one more", puts: 1, want: 3},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			for i := range step.puts {
				put(t, st, "k", fmt.Sprint(i))
			}
			if step.puts > 0 {
				waitFor(t, "events", func() bool { return s.queued() > 0 })
			}
			if step.drain {
				s.Drain(nil)
			}
			if got := calls.Load(); got != step.want {
				t.Fatalf("OnReady called %d times, want %d", got, step.want)
			}
		})
	}
	// Ready still works alongside it.
	select {
	case <-s.Ready():
	default:
		t.Fatal("Ready not signalled")
	}
}

// TestOnReadyDrainer drains from OnReady's wake-ups only, as a transport
// without a goroutine per stream does, while writes race with the drains:
// every event arrives, in order, and OnReady is never called more often
// than the queue became non-empty.
func TestOnReadyDrainer(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	wake := make(chan struct{}, 1)
	var calls atomic.Int64
	s := newStream(t, h, StreamOptions{OnReady: func() {
		calls.Add(1)
		select {
		case wake <- struct{}{}:
		default:
		}
	}})
	watch(t, s, WatchRequest{ID: "a", Key: []byte("k/"), End: []byte("k0")})
	const n = 300
	var wg sync.WaitGroup
	wg.Add(1)
	var last int64
	go func() {
		defer wg.Done()
		for i := range n {
			last = put(t, st, fmt.Sprintf("k/%d", i%7), fmt.Sprint(i))
		}
	}()
	var got []int64
	var drains int64
	var buf []Response
	timeout := time.After(20 * time.Second)
	for len(got) < n {
		select {
		case <-wake:
		case <-timeout:
			t.Fatalf("got %d of %d events", len(got), n)
		}
		for {
			buf = s.Drain(buf[:0])
			if len(buf) == 0 {
				break
			}
			drains++
			for _, r := range buf {
				for _, ev := range r.Events {
					got = append(got, ev.KV.ModRevision)
				}
			}
			clear(buf)
		}
	}
	wg.Wait()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("event %d at %d after %d", i, got[i], got[i-1])
		}
	}
	if got[len(got)-1] != last {
		t.Fatalf("last event at %d, want %d", got[len(got)-1], last)
	}
	if c := calls.Load(); c > drains {
		t.Fatalf("OnReady called %d times for %d non-empty drains", c, drains)
	}
}

// TestOnReadyClose checks that OnReady is not called after the stream's
// Close, and is called once when the hub closes the stream.
func TestOnReadyClose(t *testing.T) {
	t.Run("stream close", func(t *testing.T) {
		st := openStore(t, kv.Options{})
		h := newHub(t, st, Options{})
		var calls atomic.Int64
		s := newStream(t, h, StreamOptions{OnReady: func() { calls.Add(1) }})
		watch(t, s, WatchRequest{ID: "a", Key: []byte("k")})
		s.Drain(nil)
		before := calls.Load()
		s.Close()
		for i := range 5 {
			put(t, st, "k", fmt.Sprint(i))
		}
		if err := s.RequestProgress(); err == nil {
			t.Error("RequestProgress on a closed stream succeeded")
		}
		if got := calls.Load(); got != before {
			t.Fatalf("OnReady called %d times after Close", got-before)
		}
	})
	t.Run("hub close", func(t *testing.T) {
		st := openStore(t, kv.Options{})
		h := newHub(t, st, Options{})
		var calls atomic.Int64
		s := newStream(t, h, StreamOptions{OnReady: func() { calls.Add(1) }})
		watch(t, s, WatchRequest{ID: "a", Key: []byte("k")})
		s.Drain(nil)
		before := calls.Load()
		h.Close()
		if got := calls.Load() - before; got != 1 {
			t.Fatalf("OnReady called %d times on the hub's close, want 1", got)
		}
	})
}
