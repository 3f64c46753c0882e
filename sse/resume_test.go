package sse

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// readUntilProgress reads a stream's events up to the bookmark at rev,
// which the hub sends once the stream is idle and caught up.
func readUntilProgress(tb testing.TB, s *sseclient.Stream, rev int64) []wire {
	tb.Helper()
	var got []wire
	for {
		w := nextWire(tb, s)
		if w.Type == "progress" {
			if w.ID == fmt.Sprint(rev) {
				return got
			}
			continue
		}
		got = append(got, w)
	}
}

// TestResumeExact resumes a stream from every id it sent, as a browser
// does with Last-Event-ID and as a page does with last_event_id=, and
// checks that the rest comes exactly: inside multi-event transactions too.
func TestResumeExactSSE(t *testing.T) {
	e := newEnv(t, Options{MinProgress: time.Millisecond})
	base := e.put(t, "r/x", "0")
	e.txn(t, "r/a", "1", "r/b", "2", "other", "3", "r/c", "4", "r/x", "-")
	e.put(t, "other", "5")
	e.txn(t, "other", "6", "r/a", "7")
	e.txn(t, "r/b", "-", "r/c", "8")
	e.put(t, "r/a", "9")
	last := e.put(t, "zz", "end")

	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			q := fmt.Sprintf("prefix=true&prev_kv=true&progress=20ms&rev=%d", base)
			full := readUntilProgress(t, connect(t, cl.c, e.url("r/", q), sseclient.Options{}), last)
			var ids []string
			for _, w := range full {
				ids = append(ids, w.ID)
			}
			r2 := base + 1
			wantIDs := []string{fmt.Sprint(base), fmt.Sprintf("%d.0", r2), fmt.Sprintf("%d.1", r2), fmt.Sprintf("%d.3", r2), fmt.Sprint(r2),
				fmt.Sprint(base + 3), fmt.Sprintf("%d.0", base+4), fmt.Sprint(base + 4), fmt.Sprint(base + 5)}
			if diff := cmp.Diff(wantIDs, ids); diff != "" {
				t.Fatalf("ids (-want +got):\n%s", diff)
			}
			for i, w := range full {
				// The header wins over rev=; the query id is the same resume.
				got := readUntilProgress(t, connect(t, cl.c, e.url("r/", q), sseclient.Options{LastEventID: w.ID}), last)
				if diff := cmp.Diff(full[i+1:], got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("resume from Last-Event-ID %s (-want +got):\n%s", w.ID, diff)
				}
				got = readUntilProgress(t, connect(t, cl.c, e.url("r/", q+"&last_event_id="+w.ID), sseclient.Options{}), last)
				if diff := cmp.Diff(full[i+1:], got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("resume from last_event_id=%s (-want +got):\n%s", w.ID, diff)
				}
			}
		})
	}
}

// step is one thing a cut stream's reader saw: an item, or a reconnection
// from the resume point (rev, sub).
type step struct {
	item      watchtest.Item
	resume    bool
	rev       int64
	sub       int32
	fromID    string
	reconnect int
}

// TestCutResume cuts a stream 20 times at random points while 500 writes
// (some transactions, some outside the range) go on, lets it reconnect with
// its last id each time, and checks the concatenation against the store's
// history: nothing lost, nothing repeated, every id right.
func TestCutResume(t *testing.T) {
	for _, proto := range protoNames {
		t.Run(proto, func(t *testing.T) {
			e := newEnv(t, Options{MinProgress: time.Millisecond})
			rec := watchtest.Record(e.store.Subscribe)
			defer rec.Stop()
			c := e.client(proto)
			cur, _ := e.store.Revisions()
			start := cur + 1
			s := connect(t, c, e.url("w/", fmt.Sprintf("prefix=true&prev_kv=true&progress=50ms&rev=%d", start)),
				sseclient.Options{Reconnect: true, ReconnectDelay: time.Millisecond})

			const writes, cuts = 500, 20
			rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
			cutAt := map[int]bool{}
			for len(cutAt) < cuts {
				cutAt[1+rnd.IntN(writes-2)] = true
			}
			var (
				mu       sync.Mutex
				steps    []step
				lastRev  int64 // set when the writer is done
				resumed  int   // reconnections the reader has seen
				cutInTxn = make(chan struct{}, cuts)
				done     = make(chan struct{})
			)
			// The reader. It cuts the stream itself right after an "R.S"
			// event when the writer asks for a cut inside a transaction.
			go func() {
				defer close(done)
				wantCut := false
				for {
					before, n := s.LastEventID(), s.Reconnects()
					ev, err := s.Next()
					if err != nil {
						t.Errorf("Next: %v", err)
						return
					}
					mu.Lock()
					if s.Reconnects() > n {
						p, err := ParsePosition(before)
						rev, sub := p.Start()
						if before == "" {
							rev, sub, err = start, 0, nil
						}
						if err != nil {
							t.Errorf("resumed from id %q: %v", before, err)
						}
						steps = append(steps, step{resume: true, rev: rev, sub: sub, fromID: before, reconnect: s.Reconnects()})
						resumed++
					}
					it, err := toItem(ev)
					if err != nil {
						t.Error(err)
					}
					steps = append(steps, step{item: it})
					end := lastRev != 0 && ev.Type == "progress" && it.Revision >= lastRev
					mu.Unlock()
					if end {
						return
					}
					select {
					case <-cutInTxn:
						wantCut = true
					default:
					}
					if wantCut && strings.Contains(ev.ID, ".") {
						wantCut = false
						s.Cut()
					}
				}
			}()

			keys := func(n int) []string {
				perm := rnd.Perm(12)[:n]
				var ks []string
				for _, i := range perm {
					if i >= 9 {
						ks = append(ks, fmt.Sprintf("x/%d", i)) // outside the range
					} else {
						ks = append(ks, fmt.Sprintf("w/%d", i))
					}
				}
				return ks
			}
			ctx := context.Background()
			for i := range writes {
				var err error
				switch r := rnd.IntN(20); {
				case r < 12:
					_, err = e.store.Put(ctx, []byte(keys(1)[0]), []byte(fmt.Sprint(i)))
				case r < 14:
					_, err = e.store.Delete(ctx, []byte(keys(1)[0]), nil)
				default:
					var ops []kv.Op
					for j, k := range keys(2 + rnd.IntN(4)) {
						op := kv.Op{Type: kv.OpPut, Key: []byte(k), Value: []byte(fmt.Sprint(i, j))}
						if rnd.IntN(4) == 0 {
							op = kv.Op{Type: kv.OpDelete, Key: []byte(k)}
						}
						ops = append(ops, op)
					}
					_, err = e.store.Txn(ctx, kv.TxnRequest{Success: ops})
				}
				if err != nil {
					t.Fatal(err)
				}
				if cutAt[i] {
					mu.Lock()
					n := resumed
					mu.Unlock()
					if rnd.IntN(2) == 0 {
						s.Cut() // wherever the reader is
					} else {
						cutInTxn <- struct{}{}
					}
					// One cut at a time: wait until the reader has had an
					// event over the new connection, writing transactions on
					// (a cut inside one needs one). Waiting for the
					// reconnection alone is not enough: a cut before the
					// reader's Next has returned anything from the new
					// connection would make a second reconnection inside
					// that same Next, which the reader counts as one.
					deadline := time.Now().Add(20 * time.Second)
					for {
						mu.Lock()
						seen := resumed > n
						mu.Unlock()
						if seen {
							break
						}
						if time.Now().After(deadline) {
							t.Fatal("no reconnection after a cut")
						}
						time.Sleep(time.Millisecond)
						if _, err := e.store.Txn(ctx, kv.TxnRequest{Success: []kv.Op{
							{Type: kv.OpPut, Key: []byte("w/7"), Value: []byte("during")},
							{Type: kv.OpPut, Key: []byte("w/8"), Value: []byte("during")},
						}}); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			mu.Lock()
			lastRev, _ = e.store.Revisions()
			mu.Unlock()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				s.Close()
				<-done
				t.Fatal("the stream did not catch up")
			}

			h, err := rec.History()
			if err != nil {
				t.Fatal(err)
			}
			chk := watchtest.NewChecker(h, watchtest.Request{Key: []byte("w/"), End: kv.PrefixEnd([]byte("w/")), StartRev: start, PrevKV: true})
			resumes := 0
			for _, st := range steps {
				if st.resume {
					resumes++
					err = chk.Resume(st.rev, st.sub)
				} else {
					err = chk.Add(st.item)
				}
				if err != nil {
					t.Fatalf("after %d resumes: %v", resumes, err)
				}
			}
			if err := chk.Complete(lastRev); err != nil {
				t.Fatal(err)
			}
			if resumes != cuts || s.Reconnects() != cuts {
				t.Errorf("%d resumes, %d reconnects; want %d", resumes, s.Reconnects(), cuts)
			}
			inside := 0
			for i, st := range steps {
				if st.resume && strings.Contains(st.fromID, ".") && i > 0 {
					inside++
				}
			}
			t.Logf("%d events, %d cuts (%d inside a transaction), revisions %d..%d", chk.Events(), resumes, inside, start, lastRev)
			if inside == 0 {
				t.Error("no cut fell inside a transaction")
			}
		})
	}
}

// toItem converts an SSE event of a watch into a validator item.
func toItem(ev sseclient.Event) (watchtest.Item, error) {
	switch ev.Type {
	case "progress":
		var d struct{ Revision int64 }
		if err := jsonUnmarshal(ev.Data, &d); err != nil {
			return watchtest.Item{}, err
		}
		if ev.ID != fmt.Sprint(d.Revision) {
			return watchtest.Item{}, fmt.Errorf("progress id %q for revision %d", ev.ID, d.Revision)
		}
		return watchtest.Item{Kind: watchtest.Progress, Revision: d.Revision}, nil
	case "put", "delete":
		var d kvjson.KeyValue
		if err := jsonUnmarshal(ev.Data, &d); err != nil {
			return watchtest.Item{}, err
		}
		kvv, err := fromJSON(&d)
		if err != nil {
			return watchtest.Item{}, err
		}
		we := watchtest.Event{ID: ev.ID, Type: kv.EventPut, KV: *kvv}
		if ev.Type == "delete" {
			we.Type = kv.EventDelete
		}
		if d.PrevKV != nil {
			if we.PrevKV, err = fromJSON(d.PrevKV); err != nil {
				return watchtest.Item{}, err
			}
		}
		it := watchtest.Item{Kind: watchtest.Events, Events: []watchtest.Event{we}}
		if !strings.Contains(ev.ID, ".") {
			it.Revision = kvv.ModRevision // "R" claims R complete
		}
		return it, nil
	}
	return watchtest.Item{}, fmt.Errorf("unexpected event %+v", ev)
}

func fromJSON(d *kvjson.KeyValue) (*kv.KeyValue, error) {
	k, err := d.KeyBytes()
	if err != nil {
		return nil, err
	}
	v, err := d.ValueBytes()
	if err != nil {
		return nil, err
	}
	return &kv.KeyValue{Key: k, Value: v, CreateRevision: d.CreateRevision, ModRevision: d.ModRevision, Version: d.Version}, nil
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
