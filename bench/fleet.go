package main

import (
	"context"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// watchSpec is one watch to open: a key or, with prefix, every key under
// it; from revision rev (0: the next one).
type watchSpec struct {
	key    string
	prefix bool
	rev    int64
}

// eventHandler receives every event a fleet decodes: reader is the index
// of the goroutine that read it (below fleet.readers(), so handlers can
// keep per-reader state without locks), w the watch's index (in the order
// of add), rev the event's revision and key its key (valid only during
// the call).
type eventHandler func(reader, w int, rev int64, key []byte)

// fleet is a set of watches on one server over one transport. add opens
// watches and returns once the server confirmed each; events go to the
// current handler (none: discarded).
type fleet interface {
	add(ctx context.Context, specs []watchSpec) error
	// readers is the number of reading goroutines after the adds so far.
	readers() int
	setHandler(h eventHandler)
	// err is the first error a reader met (a watch canceled, compacted,
	// a connection lost), or nil.
	err() error
	close()
}

// fleetBase holds what every fleet shares: the handler and the first
// error.
type fleetBase struct {
	handler  atomic.Pointer[eventHandler]
	errOnce  sync.Once
	firstErr atomic.Pointer[error]
	closing  atomic.Bool
}

func (f *fleetBase) setHandler(h eventHandler) {
	if h == nil {
		f.handler.Store(nil)
		return
	}
	f.handler.Store(&h)
}

func (f *fleetBase) emit(reader, w int, rev int64, key []byte) {
	if h := f.handler.Load(); h != nil {
		(*h)(reader, w, rev, key)
	}
}

func (f *fleetBase) fail(err error) {
	if err == nil || f.closing.Load() {
		return
	}
	f.errOnce.Do(func() { f.firstErr.Store(&err) })
}

func (f *fleetBase) err() error {
	if p := f.firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

// quietZap is the etcd client's logger: none.
func quietZap() *zap.Logger { return zap.NewNop() }

// parallel runs fn(ctx, i) for i in [0, n), at most limit at a time, and
// returns the first error; the context passed to fn ends at the first
// error.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	sem := make(chan struct{}, max(limit, 1))
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
