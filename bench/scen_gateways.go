package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// gatewaysCase names the case of g gateways and n watchers.
func gatewaysCase(g, n int) string {
	s := "s"
	if g == 1 {
		s = ""
	}
	return fmt.Sprintf("%d gateway%s, %s watchers", g, s, formatCount(n))
}

// runGateways is the scale-out scenario: one single-node etcd with 1, 2
// and 3 watchgate gateways (--backend=etcd) in front of it. N watchers of
// one key, spread evenly over the gateways, and one write (through each
// gateway in turn); the time until the last watcher has it, median of the
// repeats; the CPU the gateways, etcd and the benchmark's own clients
// spent per write; each gateway's RSS; and how many watchers the tier
// held, and would hold with 1 GiB a gateway (extrapolated from the RSS
// each watch added). etcd is the store behind the gateways here, not a
// system compared: this scenario is not run against etcd's own watch.
func runGateways(ctx context.Context, e *env) error {
	cfg := e.cfg
	if !cfg.etcd {
		e.logf("gateways: runs watchgate's etcd backend, so it starts etcd even with -etcd=false")
	}
	if _, err := checkEtcd(cfg.etcdBin); err != nil {
		return err
	}
	etcd, err := startEtcd(cfg)
	if err != nil {
		return err
	}
	defer etcd.stop()
	endpoint := "http://" + etcd.addr
	value := benchValue(cfg.valueSize)
	// The gateway counts of one size and transport run one after the
	// other, so that they meet about the same load on the machine.
	for _, n := range cfg.gwWatchers {
		for _, tr := range cfg.gwTransports {
			for _, g := range cfg.gwCounts {
				// Fresh gateways for every case, so that one case's memory
				// does not count in the next one's.
				gws, err := startGateways(ctx, cfg, g, endpoint)
				if err != nil {
					return err
				}
				err = gatewaysRun(ctx, e, etcd, gws, tr, n, value)
				for _, p := range gws {
					p.stop()
				}
				if err != nil {
					return fmt.Errorf("%s over %s: %w", gatewaysCase(g, n), tr, err)
				}
			}
		}
	}
	return nil
}

// startGateways starts g gateways on etcd at endpoint.
func startGateways(ctx context.Context, cfg *config, g int, endpoint string) ([]*process, error) {
	var gws []*process
	for range g {
		p, err := startWatchgate(cfg, "--backend", "etcd", "--etcd-endpoints", endpoint)
		if err != nil {
			for _, q := range gws {
				q.stop()
			}
			return nil, fmt.Errorf("starting gateway %d of %d: %w", len(gws)+1, g, err)
		}
		gws = append(gws, p)
	}
	return gws, ctx.Err()
}

// fleetAt makes an empty fleet of transport ("ws" or "sse") on the
// watchgate process at addr.
func fleetAt(cfg *config, addr, transport string) (fleet, error) {
	switch transport {
	case "ws":
		return newWSFleet(addr, cfg.wsPerSocket), nil
	case "sse":
		return newSSEFleet(addr, cfg.ssePerConn), nil
	}
	return nil, fmt.Errorf("unknown transport %q", transport)
}

// gatewaysRun measures one case: n watchers over the gateways gws through
// transport.
func gatewaysRun(ctx context.Context, e *env, etcd *process, gws []*process, transport string, n int, value []byte) error {
	cfg := e.cfg
	g := len(gws)
	cas := gatewaysCase(g, n)
	target := sysWatchgate + "/" + transport
	key := fmt.Sprintf("bench/gateways/%d/%s/k", g, transport)

	var (
		remaining   atomic.Int64
		first, last atomic.Int64 // unix nanoseconds
		extra       atomic.Bool
		done        atomic.Pointer[chan struct{}]
	)
	handler := func(_, _ int, _ int64, _ []byte) {
		now := time.Now().UnixNano()
		first.CompareAndSwap(0, now)
		switch left := remaining.Add(-1); {
		case left == 0:
			last.Store(now)
			close(*done.Load())
		case left < 0:
			extra.Store(true)
		}
	}
	base := make([]memory, g)
	fleets := make([]fleet, 0, g)
	defer func() {
		for _, f := range fleets {
			f.close()
		}
	}()
	writers := make([]writer, g)
	defer func() {
		for _, w := range writers {
			if w != nil {
				w.close()
			}
		}
	}()
	start := time.Now()
	for i, p := range gws {
		m, err := settledMemory(p.pid(), 3*time.Second)
		if err != nil {
			return err
		}
		base[i] = m
		f, err := fleetAt(cfg, p.addr, transport)
		if err != nil {
			return err
		}
		fleets = append(fleets, f)
		f.setHandler(handler)
		// Evenly: the first n%g gateways take one more.
		share := n / g
		if i < n%g {
			share++
		}
		specs := make([]watchSpec, share)
		for j := range specs {
			specs[j] = watchSpec{key: key}
		}
		if err := f.add(ctx, specs); err != nil {
			return fmt.Errorf("gateway %d: opening %d watchers: %w", i+1, share, err)
		}
		writers[i] = newRESTWriter(p.addr, 1)
	}
	e.logf("gateways %s [%s]: watchers open in %v", cas, transport, time.Since(start).Round(time.Millisecond))

	stop := e.profile(gws[0], cas+" "+transport)
	defer stop()
	pids := make([]int, 0, g+1)
	for _, p := range gws {
		pids = append(pids, p.pid())
	}
	cpuOf := func() (gateways, store time.Duration) {
		for _, pid := range pids {
			c, _ := cpuTime(pid)
			gateways += c
		}
		store, _ = cpuTime(etcd.pid())
		return gateways, store
	}
	var gwCPU, etcdCPU, selfTotal time.Duration
	// One unmeasured write warms the path, then the timed ones, each
	// through the next gateway.
	for rep := -1; rep < cfg.gwRepeats; rep++ {
		ch := make(chan struct{})
		done.Store(&ch)
		first.Store(0)
		remaining.Store(int64(n))
		time.Sleep(50 * time.Millisecond) // let the previous write's traffic settle
		w := writers[max(rep, 0)%g]
		g0, s0 := cpuOf()
		self0 := selfCPU()
		t0 := time.Now()
		if _, err := w.put(ctx, key, value); err != nil {
			return fmt.Errorf("put: %w", err)
		}
		timeout := time.NewTimer(60 * time.Second)
		select {
		case <-ch:
		case <-timeout.C:
		case <-ctx.Done():
		}
		timeout.Stop()
		g1, s1 := cpuOf()
		self1 := selfCPU()
		for i, f := range fleets {
			if err := f.err(); err != nil {
				return fmt.Errorf("gateway %d: %w", i+1, err)
			}
		}
		if left := remaining.Load(); left != 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e.res.note("gateways", cas, "last watcher", "ms", false, target, fmt.Sprintf("%d of %d not delivered in 60 s", left, n))
			return fmt.Errorf("%d of %d watchers did not get the write within 60 s", left, n)
		}
		if extra.Load() {
			return errors.New("more deliveries than watchers")
		}
		for _, p := range append([]*process{etcd}, gws...) {
			if err := p.alive(); err != nil {
				return err
			}
		}
		if rep < 0 {
			continue
		}
		lastD := time.Duration(last.Load() - t0.UnixNano())
		firstD := time.Duration(first.Load() - t0.UnixNano())
		e.logf("gateways %s [%s]: first %.2f ms, last %.2f ms; CPU: gateways %.0f ms, etcd %.0f ms, client %.0f ms",
			cas, transport, ms(firstD), ms(lastD), ms(g1-g0), ms(s1-s0), ms(self1-self0))
		gwCPU += g1 - g0
		etcdCPU += s1 - s0
		selfTotal += self1 - self0
		e.res.add("gateways", cas, "last watcher", "ms", false, target, ms(lastD))
		e.res.add("gateways", cas, "first watcher", "ms", false, target, ms(firstD))
	}
	reps := float64(cfg.gwRepeats)
	e.res.add("gateways", cas, "CPU of all gateways per write (mean)", "ms", false, target, ms(gwCPU)/reps)
	e.res.add("gateways", cas, "etcd CPU per write (mean)", "ms", false, target, ms(etcdCPU)/reps)
	e.res.add("gateways", cas, "benchmark client CPU per write (mean)", "ms", false, target, ms(selfTotal)/reps)

	// Memory: each gateway's RSS with its watchers, and what a watch costs.
	var maxRSS, sumRSS, perWatch float64
	capacity := 0.0
	for i, p := range gws {
		m, err := settledMemory(p.pid(), 5*time.Second)
		if err != nil {
			return err
		}
		share := n / g
		if i < n%g {
			share++
		}
		rss := mib(m.RSS)
		maxRSS, sumRSS = max(maxRSS, rss), sumRSS+rss
		pw := float64(m.RSS-base[i].RSS) / float64(max(share, 1))
		perWatch += pw / float64(g)
		if pw > 0 {
			capacity += float64((1<<30)-base[i].RSS) / pw
		}
	}
	e.res.add("gateways", cas, "watchers held (all got every write)", "watchers", true, target, float64(n))
	e.res.add("gateways", cas, "RSS of the largest gateway", "MiB", false, target, maxRSS)
	e.res.add("gateways", cas, "RSS of all gateways", "MiB", false, target, sumRSS)
	e.res.add("gateways", cas, "RSS per watch (mean over gateways)", "bytes", false, target, perWatch)
	if capacity > 0 {
		e.res.add("gateways", cas, "tier capacity at 1 GiB a gateway (extrapolated)", "watchers", true, target, capacity)
	}
	return nil
}
