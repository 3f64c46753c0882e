package main

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

// watchTarget is a system reached over one watch transport, with a writer
// to make the events.
type watchTarget struct {
	name  string // "watchgate/ws", "watchgate/sse", "etcd"
	fleet fleet
	w     writer
	p     *process
}

// newFleet makes an empty fleet of the transport on srv: "ws", "sse" or
// "etcd"; group bounds the watches per socket, HTTP/2 connection or etcd
// watch stream (0: the configured default).
func newFleet(cfg *config, srv *servers, transport string, group int) (fleet, error) {
	switch transport {
	case "ws":
		if group <= 0 {
			group = cfg.wsPerSocket
		}
		return newWSFleet(srv.wg.addr, group), nil
	case "sse":
		if group <= 0 {
			group = cfg.ssePerConn
		}
		return newSSEFleet(srv.wg.addr, group), nil
	case "etcd":
		if group <= 0 {
			group = cfg.etcdPerStream
		}
		return newEtcdFleet(srv.etcd.addr, cfg.etcdConns, group)
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}

// watchTargets makes an empty fleet and a writer for every watchgate
// transport given and for etcd (when it runs).
func watchTargets(cfg *config, srv *servers, transports []string, group, writers int) ([]*watchTarget, func(), error) {
	var ts []*watchTarget
	closeAll := func() {
		for _, t := range ts {
			t.fleet.close()
			t.w.close()
		}
	}
	for _, tr := range transports {
		f, err := newFleet(cfg, srv, tr, group)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		ts = append(ts, &watchTarget{name: sysWatchgate + "/" + tr, fleet: f, w: newRESTWriter(srv.wg.addr, writers), p: srv.wg})
	}
	if srv.etcd != nil {
		f, err := newFleet(cfg, srv, "etcd", group)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		w, err := newEtcdWriter(srv.etcd.addr, min(cfg.etcdConns, writers))
		if err != nil {
			f.close()
			closeAll()
			return nil, nil, err
		}
		ts = append(ts, &watchTarget{name: sysEtcd, fleet: f, w: w, p: srv.etcd})
	}
	return ts, closeAll, nil
}

// targetKey is a key of the benchmark's own for target t: every target
// writes under its own prefix, so that the watchers of one never see the
// writes to another.
func targetKey(scenario string, t *watchTarget, rest string) string {
	return "bench/" + scenario + "/" + t.name + "/" + rest
}

// runFanout is scenario 2: one write delivered to N watchers of one key;
// the time from the write until the last watcher has it, median of
// repeats.
func runFanout(ctx context.Context, e *env) error {
	cfg := e.cfg
	srv, err := startServers(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	value := benchValue(cfg.valueSize)
	for _, n := range cfg.fanout {
		cas := fmt.Sprintf("%s watchers", formatCount(n))
		ts, closeAll, err := watchTargets(cfg, srv, cfg.fanoutTransports, 0, 1)
		if err != nil {
			return err
		}
		err = fanoutCase(ctx, e, srv, ts, n, cas, value)
		closeAll()
		if err != nil {
			return fmt.Errorf("%s: %w", cas, err)
		}
	}
	return nil
}

func fanoutCase(ctx context.Context, e *env, srv *servers, ts []*watchTarget, n int, cas string, value []byte) error {
	type state struct {
		remaining atomic.Int64
		last      atomic.Int64 // unix nanoseconds of the last arrival
		first     atomic.Int64
		done      chan struct{}
	}
	stop := e.profile(srv.wg, cas)
	defer stop()
	states := make([]*state, len(ts))
	for i, t := range ts {
		st := &state{}
		states[i] = st
		key := targetKey("fanout", t, "k")
		t.fleet.setHandler(func(_, _ int, _ int64, _ []byte) {
			// Only the first and the last delivery need the clock, which
			// costs more than the rest of this handler.
			if st.first.Load() == 0 {
				st.first.CompareAndSwap(0, time.Now().UnixNano())
			}
			switch left := st.remaining.Add(-1); {
			case left == 0:
				st.last.Store(time.Now().UnixNano())
				close(st.done)
			case left < 0:
				// An event beyond the ones awaited: counted as an error below.
				st.last.Store(-1)
			}
		})
		specs := make([]watchSpec, n)
		for j := range specs {
			specs[j] = watchSpec{key: key}
		}
		start := time.Now()
		if err := t.fleet.add(ctx, specs); err != nil {
			return fmt.Errorf("%s: opening %d watchers: %w", t.name, n, err)
		}
		e.logf("fanout %s: %s watchers open in %v", t.name, formatCount(n), time.Since(start).Round(time.Millisecond))
	}
	// Server CPU over the timed writes, by target: /proc counts in 10 ms
	// ticks, so only the mean over the repeats says something.
	serverCPU := make([]time.Duration, len(ts))
	// One unmeasured write each warms the path, then the timed ones.
	for rep := -1; rep < e.cfg.fanoutRepeats; rep++ {
		for _, i := range rotate(indexes(len(ts)), max(rep, 0)) {
			t, st := ts[i], states[i]
			done := make(chan struct{})
			st.done = done
			st.first.Store(0)
			st.remaining.Store(int64(n)) // publishes done to the handler
			key := targetKey("fanout", t, "k")
			// Collect the benchmark's own garbage (the fleets of both
			// systems live in this process) before the clock starts, then
			// let the previous write's traffic settle.
			runtime.GC()
			time.Sleep(50 * time.Millisecond)
			cpu0, _ := cpuTime(t.p.pid())
			self0 := selfCPU()
			t0 := time.Now()
			if _, err := t.w.put(ctx, key, value); err != nil {
				return fmt.Errorf("%s: put: %w", t.name, err)
			}
			timeout := time.NewTimer(60 * time.Second)
			select {
			case <-done:
			case <-timeout.C:
			case <-ctx.Done():
			}
			timeout.Stop()
			cpu1, _ := cpuTime(t.p.pid())
			self1 := selfCPU()
			if err := t.fleet.err(); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			if left := st.remaining.Load(); left != 0 {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				e.res.note("fanout", cas, "last watcher", "ms", false, t.name, fmt.Sprintf("%d of %d not delivered in 60 s", left, n))
				return fmt.Errorf("%s: %d of %d watchers did not get the write within 60 s", t.name, left, n)
			}
			if st.last.Load() < 0 {
				return fmt.Errorf("%s: more deliveries than watchers", t.name)
			}
			last := time.Duration(st.last.Load() - t0.UnixNano())
			first := time.Duration(st.first.Load() - t0.UnixNano())
			if rep < 0 {
				continue
			}
			e.logf("fanout %s %s: first %.2f ms, last %.2f ms; CPU: server %.0f ms, client %.0f ms",
				cas, t.name, ms(first), ms(last), ms(cpu1-cpu0), ms(self1-self0))
			serverCPU[i] += cpu1 - cpu0
			e.res.add("fanout", cas, "last watcher", "ms", false, t.name, ms(last))
			e.res.add("fanout", cas, "first watcher", "ms", false, t.name, ms(first))
		}
		if err := srv.alive(); err != nil {
			return err
		}
	}
	for i, t := range ts {
		e.res.add("fanout", cas, "server CPU per write (mean)", "ms", false, t.name, ms(serverCPU[i])/float64(e.cfg.fanoutRepeats))
	}
	return nil
}

func indexes(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}
