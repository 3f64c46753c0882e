package etcdstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/kv"
)

// etcdHistory reads revisions from..to straight from etcd with a client of
// its own (a watch with previous key-values), grouped by revision: the
// reference the gateways' feeds are compared with.
func etcdHistory(tb testing.TB, c *etcdtest.Cluster, from, to int64) []kv.Batch {
	tb.Helper()
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []kv.Batch
	for resp := range cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithPrevKV()) {
		if err := resp.Err(); err != nil {
			tb.Fatalf("reference watch: %v", err)
		}
		for _, e := range resp.Events {
			rev := e.Kv.ModRevision
			if rev > to {
				return out
			}
			if len(out) == 0 || out[len(out)-1].Revision != rev {
				out = append(out, kv.Batch{Revision: rev})
			}
			bt := &out[len(out)-1]
			ev := kv.Event{Sub: int32(len(bt.Events))}
			if e.Type == mvccpb.DELETE {
				ev.Type = kv.EventDelete
				ev.KV = kv.KeyValue{Key: e.Kv.Key, ModRevision: rev}
			} else {
				ev.KV = kv.KeyValue{Key: e.Kv.Key, Value: e.Kv.Value, CreateRevision: e.Kv.CreateRevision,
					ModRevision: rev, Version: e.Kv.Version}
			}
			if p := e.PrevKv; p != nil {
				ev.PrevKV = &kv.KeyValue{Key: p.Key, Value: p.Value, CreateRevision: p.CreateRevision,
					ModRevision: p.ModRevision, Version: p.Version}
			}
			bt.Events = append(bt.Events, ev)
			if rev == to && e == resp.Events[len(resp.Events)-1] {
				return out
			}
		}
	}
	tb.Fatalf("reference watch ended before revision %d", to)
	return nil
}

// writer writes through s until stopped: single puts, and transactions of
// several puts and a delete (several events in one revision). A write that
// fails (the cluster is unavailable, or its outcome is unknown) is retried
// as a new write: the feeds are checked against etcd, not against what
// the writer thinks it wrote.
type writer struct {
	once    sync.Once
	stop    chan struct{}
	done    chan struct{}
	ok      atomic.Int64
	failed  atomic.Int64
	lastErr atomic.Pointer[error]
}

func startWriter(s *etcdstore.Store, prefix string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			var err error
			if i%5 == 4 {
				k := fmt.Sprintf("%s%d", prefix, i%7)
				_, err = s.Txn(ctx, kv.TxnRequest{Success: []kv.Op{
					{Type: kv.OpPut, Key: []byte(k + "/a"), Value: []byte(fmt.Sprint(i))},
					{Type: kv.OpDelete, Key: []byte(fmt.Sprintf("%s%d", prefix, (i+3)%7))},
					{Type: kv.OpPut, Key: []byte(k + "/b"), Value: []byte(fmt.Sprint(i))},
				}})
			} else {
				_, err = s.Put(ctx, []byte(fmt.Sprintf("%s%d", prefix, i%7)), []byte(fmt.Sprint(i)))
			}
			cancel()
			if err != nil {
				w.failed.Add(1)
				w.lastErr.Store(&err)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			w.ok.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

// finish stops the writer and waits for it; it is idempotent.
func (w *writer) finish() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// waitWrites waits until the writer has made n more successful writes.
func (w *writer) waitWrites(tb testing.TB, n int64) {
	tb.Helper()
	target := w.ok.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for w.ok.Load() < target {
		if time.Now().After(deadline) {
			var last error
			if p := w.lastErr.Load(); p != nil {
				last = *p
			}
			tb.Fatalf("writer: %d writes in 30s, want %d more; last error: %v", w.ok.Load(), n, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFeedAcrossKills writes without pause while a member is killed and
// restarted, then the leader, and checks that two gateways' feeds each
// hold every revision once and in order, equal to etcd's own history. The
// second gateway knows only the first member, so it loses etcd entirely
// while that member is down: it must report not ready and resume without
// loss.
func TestFeedAcrossKills(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	g1 := openStore(t, c, testOptions(c))
	opts2 := testOptions(c)
	opts2.Endpoints = c.Endpoints()[:1]
	g2 := openStore(t, c, opts2)
	f1, f2 := subscribe(t, g1), subscribe(t, g2)
	waitReady(t, g1)
	waitReady(t, g2)

	w := startWriter(g1, "k")
	w.waitWrites(t, 30)

	c.Kill(0)
	// g2's only member is gone.
	deadline := time.Now().Add(10 * time.Second)
	for g2.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("gateway without a reachable member still ready after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := g2.Ready(); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Errorf("Ready() = %v, want ErrUnavailable", err)
	}
	w.waitWrites(t, 50)
	if err := g1.Ready(); err != nil {
		t.Errorf("gateway with two members of three: Ready() = %v", err)
	}
	c.Restart(0)
	waitReady(t, g2)
	w.waitWrites(t, 30)

	leader := c.Leader()
	c.Kill(leader)
	w.waitWrites(t, 50)
	c.Restart(leader)
	w.waitWrites(t, 30)
	w.finish()
	t.Logf("writes: %d acknowledged, %d failed", w.ok.Load(), w.failed.Load())

	last, err := currentRevision(ctxT(t), g1)
	if err != nil {
		t.Fatal(err)
	}
	want := etcdHistory(t, c, 2, last)
	if diff := cmp.Diff(want, f1.waitFor(t, last), cmpOpts); diff != "" {
		t.Errorf("gateway 1 feed (-etcd +feed):\n%s", diff)
	}
	if diff := cmp.Diff(want, f2.waitFor(t, last), cmpOpts); diff != "" {
		t.Errorf("gateway 2 feed (-etcd +feed):\n%s", diff)
	}
	if rev1, _ := g1.Revisions(); rev1 != last {
		t.Errorf("gateway 1 at revision %d, etcd at %d", rev1, last)
	}
	got, next, err := g2.History(ctxT(t), 2, 0, 0)
	if err != nil || next != last+1 {
		t.Fatalf("History(2, 0) = next %d, %v; want %d", next, err, last+1)
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("gateway 2 History (-etcd +History):\n%s", diff)
	}
}

// TestOutage stops the whole cluster under two gateways: they report not
// ready, keep their subscribers, a history read waits for the cluster, and
// when it is back their feeds go on without loss. Then a gateway cut off
// while the history it needs next is compacted fails for good.
func TestOutage(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	g1 := openStore(t, c, testOptions(c))
	opts2 := testOptions(c)
	opts2.Endpoints = c.Endpoints()[2:]
	var logs syncBuffer
	log := zerolog.New(&logs)
	opts2.Logger = &log
	g2 := openStore(t, c, opts2)
	f1, f2 := subscribe(t, g1), subscribe(t, g2)
	for i := range 10 {
		put(t, g1, fmt.Sprintf("before/%d", i), "v")
	}
	f2.waitFor(t, 11)

	// g2's member alone has no leader: etcd cancels g2's feed watch, which
	// asks for one, and the feed reopens it, in vain, until the cluster is
	// back, then from the revision after the last one it delivered, while
	// writes go on through g1.
	c.Stop(0)
	c.Stop(1)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "commit feed interrupted") {
		if time.Now().After(deadline) {
			t.Fatalf("feed watch of a member without a leader not interrupted after 15s; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "no leader") {
		t.Errorf("feed interrupted, but not for want of a leader; log:\n%s", logs.String())
	}
	c.Restart(0, 1)
	for i := range 10 {
		putRetry(t, g1, fmt.Sprintf("while-g2-reconnects/%d", i), "v")
	}
	f2.waitFor(t, 21)

	for i := range c.Size() {
		c.Stop(i)
	}
	for _, g := range []*etcdstore.Store{g1, g2} {
		deadline := time.Now().Add(10 * time.Second)
		for g.Ready() == nil {
			if time.Now().After(deadline) {
				t.Fatal("still ready 10s after the whole cluster stopped")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := g1.Put(ctx, []byte("during"), []byte("v"))
	cancel()
	if err == nil {
		t.Fatal("Put acknowledged with the whole cluster down")
	}
	type historyResult struct {
		bs   []kv.Batch
		next int64
		err  error
	}
	hist := make(chan historyResult, 1)
	go func() {
		bs, next, err := g2.History(context.Background(), 3, 0, 0)
		hist <- historyResult{bs, next, err}
	}()
	time.Sleep(500 * time.Millisecond)
	select {
	case r := <-hist:
		t.Fatalf("History returned with the cluster down: %d batches, %v", len(r.bs), r.err)
	default:
	}

	c.Restart(0, 1, 2)
	r := <-hist
	if r.err != nil || r.next != 22 || len(r.bs) != 19 {
		t.Errorf("History(3, 0) once the cluster is back: %d batches, next %d, %v; want 19, 22", len(r.bs), r.next, r.err)
	}
	waitReady(t, g1)
	waitReady(t, g2)
	for i := range 10 {
		put(t, g2, fmt.Sprintf("after/%d", i), "v")
	}
	last, err := currentRevision(ctxT(t), g1)
	if err != nil {
		t.Fatal(err)
	}
	want := etcdHistory(t, c, 2, last)
	if diff := cmp.Diff(want, f1.waitFor(t, last), cmpOpts); diff != "" {
		t.Errorf("gateway 1 feed (-etcd +feed):\n%s", diff)
	}
	if diff := cmp.Diff(want, f2.waitFor(t, last), cmpOpts); diff != "" {
		t.Errorf("gateway 2 feed (-etcd +feed):\n%s", diff)
	}

	// g2 is cut off (its only member down) while the others write and
	// compact past its revision: its feed cannot resume.
	c.Kill(2)
	for i := range 5 {
		putRetry(t, g1, fmt.Sprintf("lost/%d", i), "v")
	}
	cur, _ := g1.Revisions()
	if err := g1.Compact(ctxT(t), cur); err != nil {
		t.Fatal(err)
	}
	c.Restart(2)
	select {
	case <-g2.Failed():
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway whose next revision was compacted has not failed: Ready() = %v", g2.Ready())
	}
	if err := g2.Ready(); !errors.Is(err, etcdstore.ErrFeedLost) {
		t.Errorf("Ready() = %v, want ErrFeedLost", err)
	}
	if _, err := g2.Put(ctxT(t), []byte("x"), []byte("y")); !errors.Is(err, etcdstore.ErrFeedLost) {
		t.Errorf("Put on a failed gateway: %v, want ErrFeedLost", err)
	}
	if diff := cmp.Diff(want, f2.waitFor(t, last), cmpOpts); diff != "" {
		t.Errorf("failed gateway's feed changed (-before +after):\n%s", diff)
	}
	if err := g1.Ready(); err != nil {
		t.Errorf("the other gateway: Ready() = %v", err)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// putRetry puts until the put is acknowledged: while a leader is elected a
// put may fail with its outcome unknown.
func putRetry(tb testing.TB, s *etcdstore.Store, key, value string) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.Put(ctx, []byte(key), []byte(value))
		cancel()
		if err == nil {
			return
		}
		tb.Logf("Put(%q): %v (retrying)", key, err)
		if !errors.Is(err, etcdstore.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) || time.Now().After(deadline) {
			tb.Fatalf("Put(%q): %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTwoGatewaysSameRevisions writes through two gateways at once: both
// see every revision, the same, and each write's revision is in the other
// gateway's feed with the same key-value.
func TestTwoGatewaysSameRevisions(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	g1, g2 := openStore(t, c, testOptions(c)), openStore(t, c, testOptions(c))
	f1, f2 := subscribe(t, g1), subscribe(t, g2)
	var mu sync.Mutex
	acked := map[int64]string{} // revision -> key written
	var wg sync.WaitGroup
	for gi, g := range []*etcdstore.Store{g1, g2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				k := fmt.Sprintf("g%d/%d", gi, i)
				resp, err := g.Put(context.Background(), []byte(k), []byte("v"))
				if err != nil {
					t.Errorf("Put: %v", err)
					return
				}
				mu.Lock()
				acked[resp.Revision] = k
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	b1, b2 := f1.waitFor(t, 81), f2.waitFor(t, 81)
	if diff := cmp.Diff(b1, b2, cmpOpts); diff != "" {
		t.Fatalf("the gateways' feeds differ (-g1 +g2):\n%s", diff)
	}
	if len(acked) != 80 || len(b1) != 80 {
		t.Fatalf("%d acknowledged revisions, %d fed; want 80", len(acked), len(b1))
	}
	for _, bt := range b1 {
		if k := acked[bt.Revision]; string(bt.Events[0].KV.Key) != k {
			t.Errorf("revision %d: feed has %q, the writer was told %q", bt.Revision, bt.Events[0].KV.Key, k)
		}
	}
}

// TestFeedReopensAfterStall holds the feed back (a subscriber that blocks,
// which the contract forbids, stands in for a watch stream that went
// silent) while writes go on: the probe sees the feed behind etcd for
// longer than StallTimeout, reports not ready and reopens the watch, and
// the feed then goes on from the revision after the last one delivered,
// without loss or repetition.
func TestFeedReopensAfterStall(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	opts := testOptions(c)
	opts.StallTimeout = 500 * time.Millisecond
	var logs syncBuffer
	log := zerolog.New(&logs)
	opts.Logger = &log
	s := openStore(t, c, opts)
	f := subscribe(t, s)
	release := make(chan struct{})
	var blocked atomic.Bool
	_, cancel := s.Subscribe(func(bs []kv.Batch) {
		if bs[0].Revision == 5 && blocked.CompareAndSwap(false, true) {
			<-release
		}
	})
	defer cancel()
	cli := c.Client()
	for i := range 30 {
		if _, err := cli.Put(ctxT(t), fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "commit feed stalled") {
		if time.Now().After(deadline) {
			t.Fatalf("no stall seen after 15s; log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Ready(); !errors.Is(err, etcdstore.ErrUnavailable) {
		t.Errorf("Ready() with the feed stalled = %v, want ErrUnavailable", err)
	}
	close(release)
	want := etcdHistory(t, c, 2, 31)
	if diff := cmp.Diff(want, f.waitFor(t, 31), cmpOpts); diff != "" {
		t.Errorf("feed (-etcd +feed):\n%s", diff)
	}
	waitReady(t, s)
}

// TestFeedLostAtCompactRevision cuts a gateway off while its next revision
// is a delete and etcd is compacted exactly there: the compaction drops
// that delete, so the gateway's feed, reopened at it, would get the next
// revision and miss the delete. It must fail for good instead.
func TestFeedLostAtCompactRevision(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	g1 := openStore(t, c, testOptions(c))
	opts2 := testOptions(c)
	opts2.Endpoints = c.Endpoints()[2:]
	g2 := openStore(t, c, opts2)
	f2 := subscribe(t, g2)
	put(t, g1, "k", "v") // 2
	put(t, g1, "j", "v") // 3
	f2.waitFor(t, 3)

	c.Kill(2)
	var resp kv.TxnResponse
	for deadline := time.Now().Add(20 * time.Second); ; {
		var err error
		if resp, err = g1.Delete(ctxT(t), []byte("k"), nil); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if resp.Revision != 4 {
		t.Fatalf("delete at revision %d, want 4", resp.Revision)
	}
	putRetry(t, g1, "j", "w") // 5
	if err := g1.Compact(ctxT(t), 4); err != nil {
		t.Fatal(err)
	}
	c.Restart(2)
	select {
	case <-g2.Failed():
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway whose next revision (a delete) was compacted has not failed: Ready() = %v", g2.Ready())
	}
	if err := g2.Ready(); !errors.Is(err, etcdstore.ErrFeedLost) {
		t.Errorf("Ready() = %v, want ErrFeedLost", err)
	}
}
