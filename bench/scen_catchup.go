package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// fill writes n revisions (one put each) with conc concurrent writers,
// to keys prefix<i mod keys>, and returns the revision range written:
// every revision in [first, last] is one of these puts when nothing else
// writes meanwhile. lastOf, when not nil, gets the last revision written
// to each key index.
func fill(ctx context.Context, w writer, n, conc, keys int, prefix string, value []byte, lastOf []atomic.Int64) (first, last int64, err error) {
	var next atomic.Int64
	var lo, hi atomic.Int64
	lo.Store(1 << 62)
	var once sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				k := i % keys
				rev, err := w.put(ctx, prefix+strconv.Itoa(k), value)
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				for {
					cur := lo.Load()
					if rev >= cur || lo.CompareAndSwap(cur, rev) {
						break
					}
				}
				for {
					cur := hi.Load()
					if rev <= cur || hi.CompareAndSwap(cur, rev) {
						break
					}
				}
				if lastOf != nil {
					for {
						cur := lastOf[k].Load()
						if rev <= cur || lastOf[k].CompareAndSwap(cur, rev) {
							break
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if hi.Load()-lo.Load()+1 != int64(n) {
		return 0, 0, fmt.Errorf("fill: %d writes made revisions %d to %d: something else wrote", n, lo.Load(), hi.Load())
	}
	return lo.Load(), hi.Load(), nil
}

// backgroundWrites starts clients goroutines writing under prefix as fast
// as they can; the returned function stops them and returns what they
// did. Every write is measured.
func backgroundWrites(ctx context.Context, w writer, clients int, prefix string, value []byte) func() (writeRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    histogram
		ops      int64
		firstErr error
	)
	stopped := make(chan struct{})
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h histogram
			key := prefix + strconv.Itoa(c) + "/"
			for i := 0; ; i++ {
				select {
				case <-stopped:
					mu.Lock()
					total.merge(&h)
					ops += int64(h.n)
					mu.Unlock()
					return
				default:
				}
				begin := time.Now()
				_, err := w.put(ctx, key+strconv.Itoa(i%1000), value)
				if err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					total.merge(&h)
					ops += int64(h.n)
					mu.Unlock()
					return
				}
				h.add(time.Since(begin))
			}
		}()
	}
	return func() (writeRun, error) {
		close(stopped)
		d := time.Since(start)
		wg.Wait()
		cancel()
		if firstErr != nil {
			return writeRun{}, firstErr
		}
		return writeRun{ops: ops, elapsed: d, p50: total.quantile(0.5), p99: total.quantile(0.99)}, nil
	}
}

// runCatchup is scenario 6: one watcher resuming from far behind (a
// million revisions by default) over each transport: events per second
// until it has them all, and the write latency of other clients
// meanwhile, against the same clients' latency just before.
func runCatchup(ctx context.Context, e *env) error {
	cfg := e.cfg
	srv, err := startServers(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	value := benchValue(cfg.valueSize)
	transports := []string{"ws", "sse"}
	ts, closeAll, err := watchTargets(cfg, srv, transports, 0, max(cfg.catchupWriters, 1))
	if err != nil {
		return err
	}
	defer closeAll()
	cas := formatCount(cfg.catchup) + " revisions behind"
	// Fill each system once; the watchgate transports share watchgate's
	// history.
	type span struct{ first, last int64 }
	spans := map[*process]span{}
	fillers := []*watchTarget{ts[0]}
	if srv.etcd != nil {
		fillers = append(fillers, ts[len(ts)-1])
	}
	for _, t := range fillers {
		start := time.Now()
		w := t.w
		if t.p == srv.wg {
			w = newRESTWriter(srv.wg.addr, 256)
			defer w.close()
		}
		first, last, err := fill(ctx, w, cfg.catchup, 256, 1000, "bench/cu/", value, nil)
		if err != nil {
			return fmt.Errorf("%s: filling history: %w", t.name, err)
		}
		spans[t.p] = span{first, last}
		e.logf("catchup: %s holds revisions %d to %d (written in %v)", t.p.name, first, last, time.Since(start).Round(time.Second))
	}
	limit := 60 * time.Second
	if cfg.quick {
		limit = 30 * time.Second
	}
	for rep := range cfg.repeats {
		for _, t := range rotate(ts, rep) {
			sp := spans[t.p]
			if err := catchupRun(ctx, e, t, cas, sp.first, sp.last, limit, value); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
		if err := srv.alive(); err != nil {
			return err
		}
	}
	return nil
}

func catchupRun(ctx context.Context, e *env, t *watchTarget, cas string, first, last int64, limit time.Duration, value []byte) error {
	cfg := e.cfg
	want := last - first + 1
	var before writeRun
	if cfg.catchupWriters > 0 {
		stopW := backgroundWrites(ctx, t.w, cfg.catchupWriters, "bench/cuo/", value)
		time.Sleep(2 * time.Second)
		var err error
		if before, err = stopW(); err != nil {
			return err
		}
	}
	// A fresh fleet of one watch, opened a revision before the history.
	f, err := newFleet(cfg, &servers{wg: t.p, etcd: t.p}, transportOf(t), 0)
	if err != nil {
		return err
	}
	defer f.close()
	var got atomic.Int64
	done := make(chan struct{})
	var doneAt atomic.Int64
	f.setHandler(func(_, _ int, rev int64, _ []byte) {
		if rev < first || rev > last {
			return
		}
		if got.Add(1) == want {
			doneAt.Store(time.Now().UnixNano())
			close(done)
		}
	})
	var stopW func() (writeRun, error)
	if cfg.catchupWriters > 0 {
		stopW = backgroundWrites(ctx, t.w, cfg.catchupWriters, "bench/cuo/", value)
	}
	stop := e.profile(t.p, cas)
	start := time.Now()
	err = f.add(ctx, []watchSpec{{key: "bench/cu/", prefix: true, rev: first}})
	timer := time.NewTimer(limit)
	if err == nil {
		select {
		case <-done:
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	timer.Stop()
	elapsed := time.Since(start)
	stop()
	var during writeRun
	if stopW != nil {
		var werr error
		during, werr = stopW()
		if err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	if err := f.err(); err != nil {
		return err
	}
	n := got.Load()
	if n == want {
		elapsed = time.Duration(doneAt.Load() - start.UnixNano())
	} else {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.logf("catchup %s: %d of %d events in the %v limit", t.name, n, want, limit)
		e.res.note("catchup", cas, "events/s", "/s", true, t.name, fmt.Sprintf("rate over the %v limit, unfinished", limit))
	}
	rate := float64(n) / elapsed.Seconds()
	e.logf("catchup %s: %d events in %v: %.0f events/s; other writes p50 %.2f/%.2f ms, p99 %.2f/%.2f ms (before/during)",
		t.name, n, elapsed.Round(time.Millisecond), rate, ms(before.p50), ms(during.p50), ms(before.p99), ms(during.p99))
	e.res.add("catchup", cas, "events/s", "/s", true, t.name, rate)
	if cfg.catchupWriters > 0 {
		wc := fmt.Sprintf("%s, %d other writers", cas, cfg.catchupWriters)
		e.res.add("catchup", wc, "write p50 before", "ms", false, t.name, ms(before.p50))
		e.res.add("catchup", wc, "write p50 during", "ms", false, t.name, ms(during.p50))
		e.res.add("catchup", wc, "write p99 before", "ms", false, t.name, ms(before.p99))
		e.res.add("catchup", wc, "write p99 during", "ms", false, t.name, ms(during.p99))
	}
	return nil
}

// transportOf is the transport of a watch target: "ws", "sse" or "etcd".
func transportOf(t *watchTarget) string {
	if t.name == sysEtcd {
		return "etcd"
	}
	return t.name[len(sysWatchgate)+1:]
}
