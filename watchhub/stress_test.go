package watchhub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
)

// stressStream is one stream of the stress test and what its reader got.
type stressStream struct {
	s     *Stream
	stall bool // the reader stops draining now and then

	mu   sync.Mutex
	reqs map[string]WatchRequest
	got  []Response
	next int // watch ids
}

func (ss *stressStream) addWatch(tb testing.TB, req WatchRequest) {
	ss.mu.Lock()
	req.ID = fmt.Sprint("w", ss.next)
	ss.next++
	ss.reqs[req.ID] = req
	ss.mu.Unlock()
	if _, err := ss.s.Watch(req); err != nil {
		tb.Errorf("Watch(%+v): %v", req, err)
	}
}

func (ss *stressStream) progressAt(rev int64) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for i := len(ss.got) - 1; i >= 0; i-- {
		if r := ss.got[i]; r.Kind == KindProgress && r.Revision >= rev {
			return true
		}
	}
	return false
}

// stressKeys is the key space: prefixes with near-prefix neighbours.
var stressKeys = func() []string {
	var keys []string
	for _, p := range []string{"a/", "a/b/", "a0", "a10", "a1/", "b/", "c"} {
		for i := range 6 {
			keys = append(keys, fmt.Sprintf("%s%d", p, i))
		}
	}
	return keys
}()

var stressPrefixes = []string{"a/", "a/b/", "a1/", "a1", "b/", "c", ""}

// randomRequest makes a watch of a random range, start and filters.
func randomRequest(rng *rand.Rand, st *kv.Store) WatchRequest {
	var req WatchRequest
	switch rng.IntN(5) {
	case 0:
		req.Key = []byte(stressKeys[rng.IntN(len(stressKeys))])
	case 1, 2:
		p := stressPrefixes[rng.IntN(len(stressPrefixes))]
		req.Key, req.End = []byte(p), kv.PrefixEnd([]byte(p))
		if p == "" {
			req.End = []byte{0}
		}
	case 3:
		a, b := stressKeys[rng.IntN(len(stressKeys))], stressKeys[rng.IntN(len(stressKeys))]
		if a == b {
			b += "\x00"
		}
		if a > b {
			a, b = b, a
		}
		req.Key, req.End = []byte(a), []byte(b)
	default:
		req.Key, req.End = []byte(stressKeys[rng.IntN(len(stressKeys))]), []byte{0}
	}
	rev, compact := st.Revisions()
	if rng.IntN(3) > 0 && rev > 1 {
		// From the past, sometimes from before the compact revision.
		lo := max(1, compact-10)
		req.StartRev = lo + rng.Int64N(rev-lo+1)
	}
	req.PrevKV = rng.IntN(2) == 0
	switch rng.IntN(8) {
	case 0:
		req.NoPut = true
	case 1:
		req.NoDelete = true
	}
	req.Snapshot = rng.IntN(6) == 0
	return req
}

// TestStress runs writers (puts, deletes, transactions), compaction and
// hundreds of watchers at once: watchers start at random past revisions,
// some streams stall, some watches are canceled, more are added while it
// runs. At the end every watch's stream must pass the validator and be
// complete up to the last revision.
func TestStress(t *testing.T) {
	const (
		writers        = 4
		opsPerWriter   = 1000
		streams        = 60
		watchesAtStart = 6
	)
	st := openStore(t, kv.Options{})
	rec := watchtest.Record(st.Subscribe)
	defer rec.Stop()
	h := newHub(t, st, Options{
		RecentRevisions: 32,
		SyncEvents:      64,
		SyncWatchers:    16,
		SnapshotChunk:   5,
		RetryInterval:   5 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Some history before the hub's watchers start.
	for i := range 100 {
		put(t, st, stressKeys[i%len(stressKeys)], fmt.Sprint("pre", i))
	}

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var all []*stressStream
	var readers sync.WaitGroup
	for i := range streams {
		opts := StreamOptions{}
		if i%3 == 0 {
			opts = StreamOptions{MaxQueueResponses: 2 + i%5, MaxQueueBytes: 4 << 10, MaxPendingBytes: 2 << 10}
		}
		if i%7 == 0 {
			opts.ProgressInterval = 10 * time.Millisecond
		}
		ss := &stressStream{s: newStream(t, h, opts), stall: i%4 == 1, reqs: map[string]WatchRequest{}}
		for range watchesAtStart {
			ss.addWatch(t, randomRequest(rng, st))
		}
		all = append(all, ss)
		readers.Add(1)
		go func(seed uint64) {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(seed, 2))
			var buf []Response
			for {
				var err error
				buf, err = ss.s.Recv(ctx, buf[:0])
				if err != nil {
					return
				}
				ss.mu.Lock()
				ss.got = append(ss.got, buf...)
				ss.mu.Unlock()
				clear(buf)
				if ss.stall && rng.IntN(20) == 0 {
					select {
					case <-time.After(time.Duration(20+rng.IntN(80)) * time.Millisecond):
					case <-ctx.Done():
						return
					}
				}
			}
		}(rng.Uint64())
	}

	var writing sync.WaitGroup
	var stop atomic.Bool
	for w := range writers {
		writing.Add(1)
		go func(seed uint64) {
			defer writing.Done()
			rng := rand.New(rand.NewPCG(seed, 3))
			key := func() []byte { return []byte(stressKeys[rng.IntN(len(stressKeys))]) }
			for i := range opsPerWriter {
				var err error
				switch r := rng.IntN(10); {
				case r < 6:
					_, err = st.Put(ctx, key(), fmt.Appendf(nil, "w%d-%d", w, i))
				case r < 7:
					_, err = st.Delete(ctx, key(), nil)
				case r < 8:
					p := []byte(stressPrefixes[rng.IntN(len(stressPrefixes)-1)])
					_, err = st.Delete(ctx, p, kv.PrefixEnd(p))
				default:
					var ops []kv.Op
					for range 1 + rng.IntN(4) {
						if rng.IntN(4) == 0 {
							ops = append(ops, kv.Op{Type: kv.OpDelete, Key: key()})
						} else {
							ops = append(ops, kv.Op{Type: kv.OpPut, Key: key(), Value: fmt.Appendf(nil, "t%d-%d", w, i)})
						}
					}
					_, err = st.Txn(ctx, kv.TxnRequest{Success: ops})
				}
				if err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		}(rng.Uint64())
	}

	// Compaction, cancels and new watches while the writers run; the
	// groups' sizes are sampled to show which paths the run took.
	var maxVictims, maxUnsynced int
	var churn sync.WaitGroup
	churn.Add(1)
	go func(seed uint64) {
		defer churn.Done()
		rng := rand.New(rand.NewPCG(seed, 4))
		for !stop.Load() {
			time.Sleep(3 * time.Millisecond)
			stats := h.Stats()
			maxVictims = max(maxVictims, stats.Victim)
			maxUnsynced = max(maxUnsynced, stats.Unsynced)
			switch rng.IntN(4) {
			case 0:
				if rev, compact := st.Revisions(); rev-40 > compact {
					if err := st.Compact(ctx, rev-40); err != nil {
						t.Errorf("compact: %v", err)
					}
				}
			case 1:
				ss := all[rng.IntN(len(all))]
				ss.mu.Lock()
				var ids []string
				for id := range ss.reqs {
					ids = append(ids, id)
				}
				ss.mu.Unlock()
				// The watch may have ended already (compacted): then the id
				// is unknown, which is fine.
				_ = ss.s.Cancel(ids[rng.IntN(len(ids))])
			default:
				all[rng.IntN(len(all))].addWatch(t, randomRequest(rng, st))
			}
		}
	}(rng.Uint64())

	writing.Wait()
	stop.Store(true)
	churn.Wait()
	last := put(t, st, "a/end", "end")

	// Every stream must now catch up and confirm it with a bookmark.
	deadline := time.Now().Add(60 * time.Second)
	for _, ss := range all {
		if err := ss.s.RequestProgress(); err != nil {
			t.Fatal(err)
		}
	}
	for _, ss := range all {
		for !ss.progressAt(last) {
			if time.Now().After(deadline) {
				t.Fatalf("stream not caught up; hub stats %+v", h.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	readers.Wait()

	hist := history(t, rec)
	var watches, events, compacted int
	for _, ss := range all {
		its := items(t, ss.got)
		for id, req := range ss.reqs {
			c := watchtest.NewChecker(hist, checkReq(req))
			for _, it := range its[id] {
				if err := c.Add(it); err != nil {
					t.Fatalf("%v\nresponses:%s", err, dump(filterID(ss.got, id)))
				}
			}
			if err := c.Complete(last); err != nil {
				t.Fatalf("%v\nresponses:%s", err, dump(filterID(ss.got, id)))
			}
			watches++
			events += c.Events()
			if ended, k := c.Ended(); ended && k == watchtest.Compacted {
				compacted++
			}
		}
	}
	t.Logf("%d watches checked, %d events delivered, %d compacted; at most %d victims and %d unsynced at once; final %+v",
		watches, events, compacted, maxVictims, maxUnsynced, h.Stats())
}

func filterID(rs []Response, id string) []Response {
	var out []Response
	for _, r := range rs {
		if r.WatchID == id || r.WatchID == "" {
			out = append(out, r)
		}
	}
	return out
}
