package watchhub

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

// queueCapacity is the capacity of s's queue array (0: it holds none).
func queueCapacity(s *Stream) int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return cap(s.q)
}

// hotStream opens a stream with watches watches of the key "hot", drained
// of their KindCreated responses.
func hotStream(tb testing.TB, h *Hub, watches int) *Stream {
	tb.Helper()
	s := newStream(tb, h, StreamOptions{MaxQueueResponses: 4 * watches})
	for i := range watches {
		watch(tb, s, WatchRequest{ID: fmt.Sprint(i), Key: []byte("hot")})
	}
	s.Release(s.Drain(nil))
	return s
}

// putHot writes the key "hot" and waits until s has queued n responses.
func putHot(tb testing.TB, st *kv.Store, s *Stream, n int) {
	tb.Helper()
	put(tb, st, "hot", "v")
	waitFor(tb, fmt.Sprintf("%d responses", n), func() bool { return s.queued() == n })
}

// TestQueueGrowth checks the capacities the queue's array goes through:
// the shared classes, then one response per watch for a burst.
func TestQueueGrowth(t *testing.T) {
	tests := []struct {
		watches int
		want    int
	}{
		{1, 2}, {2, 2}, {3, 8}, {8, 8}, {9, 32}, {33, 128}, {64, 128},
		{128, 128},
		// Past 64, room for one response per watch: the class that holds
		// that, or that and 16 more beyond the classes.
		{129, 512}, {512, 512},
		{513, 513 + 16},
		{1000, 1000 + 16},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("watches=%d", tt.watches), func(t *testing.T) {
			st := openStore(t, kv.Options{})
			h := newHub(t, st, Options{})
			s := hotStream(t, h, tt.watches)
			if c := queueCapacity(s); c != 0 {
				t.Fatalf("drained queue holds an array of %d", c)
			}
			putHot(t, st, s, tt.watches)
			if c := queueCapacity(s); c != tt.want {
				t.Fatalf("queue array of %d, want %d", c, tt.want)
			}
		})
	}
}

// TestDrainKeepsNoArray checks what the queue holds after a drain, for
// each way of draining: no array, except a caller's array of a capacity
// the streams do not share, which the queue keeps for the next responses.
func TestDrainKeepsNoArray(t *testing.T) {
	tests := []struct {
		name      string
		watches   int
		buf       func() []Response // given to Drain
		wantQueue int               // queue's capacity after the drain
		wantLen   int               // responses returned
		wantCap   int               // capacity returned, 0: any
	}{
		{name: "nil", watches: 1, buf: func() []Response { return nil }, wantLen: 1, wantCap: 2},
		{name: "shared array given back", watches: 3, buf: func() []Response { return takeQueue(queueClass0) }, wantLen: 3, wantCap: 8},
		{name: "own array kept by the queue", watches: 3, buf: func() []Response { return make([]Response, 0, 5) }, wantQueue: 5, wantLen: 3, wantCap: 8},
		{name: "appended", watches: 3, buf: func() []Response { return make([]Response, 1, 10) }, wantLen: 4, wantCap: 10},
		{name: "burst array", watches: 600, buf: func() []Response { return nil }, wantLen: 600, wantCap: 616},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, kv.Options{})
			h := newHub(t, st, Options{})
			s := hotStream(t, h, tt.watches)
			putHot(t, st, s, tt.watches)
			got := s.Drain(tt.buf())
			if len(got) != tt.wantLen || (tt.wantCap > 0 && cap(got) != tt.wantCap) {
				t.Fatalf("drained len %d cap %d, want len %d cap %d", len(got), cap(got), tt.wantLen, tt.wantCap)
			}
			if c := queueCapacity(s); c != tt.wantQueue {
				t.Fatalf("queue holds an array of %d after the drain, want %d", c, tt.wantQueue)
			}
			// A burst's array given back through Drain stays with the
			// queue, as before: a busy stream of many watches does not
			// allocate it again.
			if tt.name == "burst array" {
				clear(got)
				putHot(t, st, s, tt.watches)
				got = s.Drain(got[:0])
				if c := queueCapacity(s); c != 616 {
					t.Fatalf("queue holds %d after a burst array was given back, want 616", c)
				}
			}
			s.Release(got)
		})
	}
}

// TestStreamCloseReturnsArray checks that a stream closed with responses
// queued holds no array.
func TestStreamCloseReturnsArray(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	s := hotStream(t, h, 5)
	putHot(t, st, s, 5)
	s.Close()
	if c := queueCapacity(s); c != 0 {
		t.Fatalf("closed stream holds an array of %d", c)
	}
}

// TestReleasedNotReused holds one drained array while the streams go on
// (writes, drains into new arrays, releases, from several goroutines):
// nothing writes into the held array, which the race detector would also
// report, and no drain returns it, until it is released.
func TestReleasedNotReused(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	const streams = 4
	ss := make([]*Stream, streams)
	for i := range ss {
		ss[i] = hotStream(t, h, 1+i)
	}
	putHot(t, st, ss[0], 1)
	held := ss[0].Drain(nil)
	want := append([]Response(nil), held...)
	heldAt := &held[:1][0]

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seen int // drains that returned the held array
	)
	stop := make(chan struct{})
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				buf := s.Drain(nil)
				if cap(buf) > 0 && &buf[:1][0] == heldAt {
					mu.Lock()
					seen++
					mu.Unlock()
				}
				s.Release(buf)
				select {
				case <-stop:
					return
				default:
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
	}
	for i := range 200 {
		put(t, st, "hot", fmt.Sprint(i))
	}
	close(stop)
	wg.Wait()
	if diff := cmp.Diff(dump(want), dump(held)); diff != "" {
		t.Fatalf("held array changed (-want +got):\n%s", diff)
	}
	if seen > 0 {
		t.Fatalf("%d drains returned the held array", seen)
	}
	ss[0].Release(held)
	if held[0].Kind != 0 || held[0].Events != nil {
		t.Fatal("Release did not clear the responses")
	}
}

// TestReleaseDrainersInOrder drains several streams from their OnReady
// wake-ups, releasing every array after reading it, while writes race
// with the drains: each stream gets every event of its prefix, once, in
// order, though the arrays go from stream to stream.
func TestReleaseDrainersInOrder(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	const (
		streams = 6
		writes  = 400
	)
	type drainer struct {
		s    *Stream
		wake chan struct{}
		mu   sync.Mutex
		got  []int64
	}
	ds := make([]*drainer, streams)
	for i := range ds {
		d := &drainer{wake: make(chan struct{}, 1)}
		d.s = newStream(t, h, StreamOptions{OnReady: func() {
			select {
			case d.wake <- struct{}{}:
			default:
			}
		}})
		// Stream i watches the keys p/0 to p/i, one watch each.
		for j := 0; j <= i; j++ {
			watch(t, d.s, WatchRequest{ID: fmt.Sprint("k", j), Key: []byte(fmt.Sprint("p/", j))})
		}
		ds[i] = d
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for _, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-d.wake:
				case <-done:
					return
				}
				for {
					buf := d.s.Drain(nil)
					if len(buf) == 0 {
						d.s.Release(buf)
						break
					}
					d.mu.Lock()
					for _, r := range buf {
						for _, ev := range r.Events {
							d.got = append(d.got, ev.KV.ModRevision)
						}
					}
					d.mu.Unlock()
					d.s.Release(buf)
				}
			}
		}()
	}
	want := make([][]int64, streams)
	for i := range writes {
		k := i % streams
		rev := put(t, st, fmt.Sprint("p/", k), fmt.Sprint(i))
		for j := k; j < streams; j++ {
			want[j] = append(want[j], rev)
		}
	}
	waitFor(t, "every event", func() bool {
		for i, d := range ds {
			d.mu.Lock()
			n := len(d.got)
			d.mu.Unlock()
			if n < len(want[i]) {
				return false
			}
		}
		return true
	})
	close(done)
	wg.Wait()
	for i, d := range ds {
		if diff := cmp.Diff(want[i], d.got); diff != "" {
			t.Errorf("stream %d (-want +got):\n%s", i, diff)
		}
	}
}

// TestBatchPerStream writes keys watched several times by each of a few
// streams (one write queues the responses of a stream's watches together,
// under one lock), with queues too small for a write's responses: the
// refused watches become victims and catch up. Every watch gets every
// event of its key once, in order.
func TestBatchPerStream(t *testing.T) {
	tests := []struct {
		name     string
		watches  int // per stream and key
		maxQueue int
	}{
		{"room for all", 20, 0},
		{"room for some", 20, 3},
		{"room for one", 5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, kv.Options{})
			h := newHub(t, st, Options{RetryInterval: 5 * time.Millisecond})
			const streams, writes = 3, 30
			ss := make([]*Stream, streams)
			got := make([]map[string][]int64, streams)
			record := func(i int, rs []Response) {
				for _, r := range rs {
					for _, ev := range r.Events {
						got[i][r.WatchID] = append(got[i][r.WatchID], ev.KV.ModRevision)
					}
				}
			}
			for i := range ss {
				got[i] = map[string][]int64{}
				ss[i] = newStream(t, h, StreamOptions{MaxQueueResponses: tt.maxQueue})
			}
			for j := range tt.watches {
				// The watches of "a" are made stream after stream, so
				// a write of "a" finds the watchers of a stream apart
				// (queued one by one); those of the range from "b" one
				// stream at a time (queued together).
				for i, s := range ss {
					watch(t, s, WatchRequest{ID: fmt.Sprint("a", j), Key: []byte("a")})
					s.Release(s.Drain(nil))
					if j == tt.watches-1 {
						for k := range tt.watches {
							watch(t, ss[i], WatchRequest{ID: fmt.Sprint("b", k), Key: []byte("b"), End: []byte("c")})
							s.Release(s.Drain(nil))
						}
					}
				}
			}
			var wantA, wantB []int64
			for i := range writes {
				if i%3 == 2 {
					wantB = append(wantB, put(t, st, "b", fmt.Sprint(i)))
				} else {
					wantA = append(wantA, put(t, st, "a", fmt.Sprint(i)))
				}
				// Drain between writes: what did not fit waits aside.
				for i, s := range ss {
					buf := s.Drain(nil)
					record(i, buf)
					s.Release(buf)
				}
			}
			last := max(wantA[len(wantA)-1], wantB[len(wantB)-1])
			for i, s := range ss {
				record(i, settle(t, s, nil, last))
				for j := range tt.watches {
					if diff := cmp.Diff(wantA, got[i][fmt.Sprint("a", j)]); diff != "" {
						t.Fatalf("stream %d watch a%d (-want +got):\n%s", i, j, diff)
					}
					if diff := cmp.Diff(wantB, got[i][fmt.Sprint("b", j)]); diff != "" {
						t.Fatalf("stream %d watch b%d (-want +got):\n%s", i, j, diff)
					}
				}
			}
		})
	}
}

// TestBatchSignalsOnce checks that one write to many watches of a stream
// signals the stream once.
func TestBatchSignalsOnce(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	var calls atomic.Int64
	s := newStream(t, h, StreamOptions{OnReady: func() { calls.Add(1) }})
	ready := s.Ready()
	for j := range 50 {
		watch(t, s, WatchRequest{ID: fmt.Sprint(j), Key: []byte("a")})
	}
	s.Release(s.Drain(nil))
	<-ready
	before := calls.Load()
	put(t, st, "a", "v")
	if n := s.queued(); n != 50 {
		t.Fatalf("%d responses queued, want 50", n)
	}
	if got := calls.Load() - before; got != 1 {
		t.Fatalf("OnReady called %d times, want 1", got)
	}
	select {
	case <-ready:
	default:
		t.Fatal("Ready not signalled")
	}
}

// TestReadyMadeLate checks Ready's channel, made by the first call to
// Ready: signalled when it is made if responses wait or the stream is
// closed, not otherwise, and by later responses.
func TestReadyMadeLate(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, h *Hub, st *kv.Store, s *Stream)
		want   bool
	}{
		{"empty", func(*testing.T, *Hub, *kv.Store, *Stream) {}, false},
		{"drained", func(t *testing.T, _ *Hub, st *kv.Store, s *Stream) {
			put(t, st, "hot", "v")
			s.Release(s.Drain(nil))
		}, false},
		{"responses queued", func(t *testing.T, _ *Hub, st *kv.Store, s *Stream) { put(t, st, "hot", "v") }, true},
		{"hub closed", func(_ *testing.T, h *Hub, _ *kv.Store, _ *Stream) { h.Close() }, true},
		{"stream closed", func(_ *testing.T, _ *Hub, _ *kv.Store, s *Stream) { s.Close() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, kv.Options{})
			h := newHub(t, st, Options{})
			s := hotStream(t, h, 1)
			tt.before(t, h, st, s)
			ready := s.Ready()
			select {
			case <-ready:
				if !tt.want {
					t.Fatal("Ready signalled")
				}
			default:
				if tt.want {
					t.Fatal("Ready not signalled")
				}
			}
			if s.Ready() != ready {
				t.Fatal("Ready returned another channel")
			}
			if tt.want {
				return
			}
			put(t, st, "hot", "w")
			select {
			case <-ready:
			default:
				t.Fatal("Ready not signalled by a response")
			}
		})
	}
}

// TestReadyRace makes Ready's channel while writes are queued, many times:
// a transport that waits on it and drains until empty gets every event.
func TestReadyRace(t *testing.T) {
	st := openStore(t, kv.Options{})
	h := newHub(t, st, Options{})
	for round := range 20 {
		s := hotStream(t, h, 1)
		const n = 20
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				put(t, st, "hot", fmt.Sprint(i))
			}
		}()
		got := 0
		timeout := time.After(10 * time.Second)
		for got < n {
			select {
			case <-s.Ready():
			case <-timeout:
				t.Fatalf("round %d: %d of %d events", round, got, n)
			}
			for {
				buf := s.Drain(nil)
				if len(buf) == 0 {
					break
				}
				for _, r := range buf {
					got += len(r.Events)
				}
				s.Release(buf)
			}
		}
		wg.Wait()
		s.Close()
	}
}
