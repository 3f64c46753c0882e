package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/httpapi"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// The Store serves both consumers.
var (
	_ watchhub.Store = (*etcdstore.Store)(nil)
	_ httpapi.Store  = (*etcdstore.Store)(nil)
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cmpOpts compares results treating nil and empty slices alike.
var cmpOpts = cmpopts.EquateEmpty()

// testOptions are store options for tests: short probe intervals so that
// tests of outages are quick.
func testOptions(c *etcdtest.Cluster) etcdstore.Options {
	return etcdstore.Options{
		Endpoints:      c.Endpoints(),
		DialTimeout:    2 * time.Second,
		RequestTimeout: 3 * time.Second,
		HealthInterval: 200 * time.Millisecond,
		StallTimeout:   2 * time.Second,
	}
}

// openStore opens a gateway on c. Cleanup checks the cluster's consistency
// (every member's hash) when every member is running, and closes it.
func openStore(tb testing.TB, c *etcdtest.Cluster, opts etcdstore.Options) *etcdstore.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := etcdstore.New(ctx, opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		ready := s.Ready()
		all := !errors.Is(ready, kv.ErrClosed) && !errors.Is(ready, etcdstore.ErrFeedLost)
		for i := range c.Size() {
			all = all && c.Running(i)
		}
		if all {
			if err := s.Check(); err != nil {
				tb.Errorf("Check: %v", err)
			}
		}
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// ctxT is a context bounded for one test step.
func ctxT(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// feedLog records a Subscribe feed and checks as it goes that it holds
// every revision after the one Subscribe returned, once and in order, each
// a whole etcd revision with its events numbered 0, 1, 2...
type feedLog struct {
	mu      sync.Mutex
	start   int64
	last    int64
	batches []kv.Batch
	err     error
	cancel  func()
	grew    chan struct{} // signalled on each call
}

// subscriber is what subscribe needs: the etcd store, or the kv store to
// compare with.
type subscriber interface {
	Subscribe(fn func([]kv.Batch)) (rev int64, cancel func())
}

func subscribe(tb testing.TB, s subscriber) *feedLog {
	tb.Helper()
	f := &feedLog{grew: make(chan struct{}, 1), last: -1}
	rev, cancel := s.Subscribe(f.record)
	f.mu.Lock()
	f.start, f.cancel = rev, cancel
	if f.last == -1 {
		f.last = rev
	} else if f.err == nil && len(f.batches) > 0 && f.batches[0].Revision != rev+1 {
		f.err = fmt.Errorf("first revision fed %d, Subscribe returned %d", f.batches[0].Revision, rev)
	}
	f.mu.Unlock()
	tb.Cleanup(cancel)
	return f
}

func (f *feedLog) record(bs []kv.Batch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(bs) == 0 && f.err == nil {
		f.err = fmt.Errorf("fed an empty slice")
	}
	for _, b := range bs {
		if f.last != -1 && b.Revision != f.last+1 && f.err == nil {
			f.err = fmt.Errorf("revision %d fed after %d", b.Revision, f.last)
		}
		if len(b.Events) == 0 && f.err == nil {
			f.err = fmt.Errorf("revision %d fed without events", b.Revision)
		}
		for i, e := range b.Events {
			if (e.KV.ModRevision != b.Revision || e.Sub != int32(i)) && f.err == nil {
				f.err = fmt.Errorf("revision %d event %d has revision %d sub %d", b.Revision, i, e.KV.ModRevision, e.Sub)
			}
		}
		f.last = b.Revision
		f.batches = append(f.batches, b)
	}
	select {
	case f.grew <- struct{}{}:
	default:
	}
}

// waitFor waits until the feed has reached rev and returns what it holds.
func (f *feedLog) waitFor(tb testing.TB, rev int64) []kv.Batch {
	tb.Helper()
	deadline := time.After(20 * time.Second)
	for {
		f.mu.Lock()
		last, err := f.last, f.err
		bs := append([]kv.Batch(nil), f.batches...)
		f.mu.Unlock()
		if err != nil {
			tb.Fatalf("feed: %v", err)
		}
		if last >= rev {
			return bs
		}
		select {
		case <-f.grew:
		case <-deadline:
			tb.Fatalf("feed at revision %d after 20s, want %d", last, rev)
		}
	}
}

func put(tb testing.TB, s *etcdstore.Store, key, value string) kv.TxnResponse {
	tb.Helper()
	resp, err := s.Put(ctxT(tb), []byte(key), []byte(value))
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return resp
}

// waitReady waits until s.Ready returns nil.
func waitReady(tb testing.TB, s *etcdstore.Store) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not ready after 30s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
