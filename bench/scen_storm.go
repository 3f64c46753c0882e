package main

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// runStorm is scenario 7: many watchers, each far behind (as after a
// server restart), reconnect at once; the time until every one has
// received everything it missed. Each watcher is its own client: a
// WebSocket of its own, an SSE stream on an HTTP/2 connection of its own,
// an etcd watch stream on a gRPC connection of its own; the time counts
// from the first dial. By default watcher i watches its own
// key and the missed revisions are spread over all the keys (each watcher
// has a few events to receive, but the server reads the whole history for
// it); in the shared mode every watcher watches the whole prefix and
// replays every missed revision.
func runStorm(ctx context.Context, e *env) error {
	cfg := e.cfg
	srv, err := startServers(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	value := benchValue(cfg.valueSize)
	W, S := cfg.stormWatchers, cfg.stormBehind
	ts, closeAll, err := watchTargets(cfg, srv, []string{"ws", "sse"}, 0, 1)
	if err != nil {
		return err
	}
	// The fleets of watchTargets stay empty: each run opens its own.
	closeAll()
	type history struct {
		first, last int64
		lastOf      []atomic.Int64
	}
	hist := map[*process]*history{}
	for _, p := range []*process{srv.wg, srv.etcd} {
		if p == nil {
			continue
		}
		var w writer
		if p == srv.wg {
			w = newRESTWriter(p.addr, 256)
		} else {
			ew, err := newEtcdWriter(p.addr, cfg.etcdConns)
			if err != nil {
				return err
			}
			w = ew
		}
		h := &history{lastOf: make([]atomic.Int64, W)}
		start := time.Now()
		h.first, h.last, err = fill(ctx, w, S, 256, W, "bench/st/", value, h.lastOf)
		w.close()
		if err != nil {
			return fmt.Errorf("%s: filling history: %w", p.name, err)
		}
		hist[p] = h
		e.logf("storm: %s holds revisions %d to %d (written in %v)", p.name, h.first, h.last, time.Since(start).Round(time.Second))
	}
	limit := 120 * time.Second
	for _, mode := range cfg.stormModes {
		shared := mode == "shared"
		name := "own key"
		if shared {
			name = "shared prefix"
		}
		cas := fmt.Sprintf("%s watchers × %s revisions behind, %s", formatCount(W), formatCount(S), name)
		for rep := range cfg.repeats {
			for _, t := range rotate(ts, rep) {
				h := hist[t.p]
				if err := stormRun(ctx, e, srv, t, cas, shared, h.first, h.last, h.lastOf, limit); err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				time.Sleep(time.Second)
			}
			if err := srv.alive(); err != nil {
				return err
			}
		}
	}
	return nil
}

func stormRun(ctx context.Context, e *env, srv *servers, t *watchTarget, cas string, shared bool, first, last int64, lastOf []atomic.Int64, limit time.Duration) error {
	cfg := e.cfg
	W := cfg.stormWatchers
	// One connection a watcher, as many clients reconnecting would have.
	var f fleet
	var err error
	if transportOf(t) == "etcd" {
		f, err = newEtcdFleet(srv.etcd.addr, W, 1)
	} else {
		f, err = newFleet(cfg, srv, transportOf(t), 1)
	}
	if err != nil {
		return err
	}
	defer f.close()
	// want[i] is the last revision watcher i must receive.
	want := make([]int64, W)
	for i := range want {
		if shared {
			want[i] = last
		} else {
			want[i] = lastOf[i].Load()
		}
	}
	var live atomic.Int64
	done := make(chan struct{})
	var doneAt atomic.Int64
	seen := make([]atomic.Bool, W)
	f.setHandler(func(_, w int, rev int64, _ []byte) {
		if rev >= want[w] && seen[w].CompareAndSwap(false, true) {
			if live.Add(1) == int64(W) {
				doneAt.Store(time.Now().UnixNano())
				close(done)
			}
		}
	})
	specs := make([]watchSpec, W)
	for i := range specs {
		if shared {
			specs[i] = watchSpec{key: "bench/st/", prefix: true, rev: first}
		} else {
			specs[i] = watchSpec{key: "bench/st/" + strconv.Itoa(i), rev: first}
		}
	}
	stop := e.profile(t.p, "storm")
	start := time.Now()
	err = f.add(ctx, specs)
	timer := time.NewTimer(limit)
	if err == nil {
		select {
		case <-done:
		case <-timer.C:
		case <-ctx.Done():
		}
	}
	timer.Stop()
	stop()
	if err != nil {
		return err
	}
	if err := f.err(); err != nil {
		return err
	}
	n := live.Load()
	var elapsed time.Duration
	if n == int64(W) {
		elapsed = time.Duration(doneAt.Load() - start.UnixNano())
	} else {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		elapsed = time.Since(start)
		e.res.note("storm", cas, "all live", "s", false, t.name, fmt.Sprintf("not all live in the %v limit", limit))
	}
	e.logf("storm %s: %d of %d watchers live after %v", t.name, n, W, elapsed.Round(time.Millisecond))
	e.res.add("storm", cas, "all live", "s", false, t.name, elapsed.Seconds())
	return nil
}
