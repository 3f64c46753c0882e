package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// matchingCase names the case of n watchers on other keys.
func matchingCase(n int) string {
	return formatCount(n) + " other watchers"
}

// matchSet is one watcher count of the matching scenario: its own
// servers, holding n watchers on keys the writes never touch.
type matchSet struct {
	n       int
	srv     *servers
	writers []writeTarget
	fleets  []fleet
	close   func()
	// registration is the watches registered per second, by target.
	registration map[string]float64
}

// runMatching is scenario 4: write throughput with 0 and with many
// watchers registered on keys the writes never touch (half single keys,
// half prefixes, so that both the key map and the interval tree are
// full). Each count gets its own pair of servers, all running at once, and
// the runs alternate between counts and systems, so that the machine's
// drifting load falls on all of them alike. The watchgate watchers are
// WebSocket watches; etcd's are raw gRPC watches. Besides throughput it
// records the server CPU per write, the steadier measure of the cost.
func runMatching(ctx context.Context, e *env) error {
	cfg := e.cfg
	counts := slices.Clone(cfg.matching)
	slices.Sort(counts)
	counts = slices.Compact(counts)
	var sets []*matchSet
	defer func() {
		for _, s := range sets {
			s.close()
		}
	}()
	for _, n := range counts {
		s, err := newMatchSet(ctx, e, n)
		if err != nil {
			return fmt.Errorf("%s: %w", matchingCase(n), err)
		}
		sets = append(sets, s)
	}
	value := benchValue(cfg.valueSize)
	clients := cfg.matchingClients
	for rep := range cfg.repeats {
		for _, s := range rotate(sets, rep) {
			cas := matchingCase(s.n)
			for _, t := range rotate(s.writers, rep) {
				stop := e.profile(t.p, cas)
				r, err := measureTarget(ctx, t, clients, cfg.writeKeys, cfg.matchingDuration, value)
				stop()
				if err != nil {
					return fmt.Errorf("%s, %s: %w", t.name, cas, err)
				}
				for _, f := range s.fleets {
					if err := f.err(); err != nil {
						return fmt.Errorf("%s watchers: %w", cas, err)
					}
				}
				e.logf("matching %s %s: %s", cas, t.name, r)
				e.res.add("matching", cas, "writes/s", "/s", true, t.name, r.perSec())
				e.res.add("matching", cas, "p99", "ms", false, t.name, ms(r.p99))
				e.res.add("matching", cas, "server CPU per write", "µs", false, t.name, r.serverCPU)
			}
			if err := s.srv.alive(); err != nil {
				return err
			}
		}
	}
	for _, s := range sets {
		for target, rate := range s.registration {
			e.res.add("matching", matchingCase(s.n), "registration", "watches/s", true, target, rate)
		}
	}
	return nil
}

// newMatchSet starts a pair of servers and registers n watchers on each.
func newMatchSet(ctx context.Context, e *env, n int) (*matchSet, error) {
	cfg := e.cfg
	srv, err := startServers(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &matchSet{n: n, srv: srv, registration: map[string]float64{}}
	s.close = func() {
		for _, f := range s.fleets {
			f.close()
		}
		for _, w := range s.writers {
			w.w.close()
		}
		srv.stop()
	}
	ws, _, err := writeTargets(srv, cfg, cfg.matchingClients)
	if err != nil {
		s.close()
		return nil, err
	}
	s.writers = ws
	if n == 0 {
		return s, nil
	}
	specs := make([]watchSpec, n)
	for i := range specs {
		if i%2 == 0 {
			specs[i] = watchSpec{key: "bench/m/k/" + strconv.Itoa(i)}
		} else {
			specs[i] = watchSpec{key: "bench/m/p/" + strconv.Itoa(i) + "/", prefix: true}
		}
	}
	for _, t := range ws {
		transport, target := "ws", "watchgate/ws"
		if t.p == srv.etcd {
			transport, target = "etcd", sysEtcd
		}
		f, err := newFleet(cfg, srv, transport, 0)
		if err != nil {
			s.close()
			return nil, err
		}
		s.fleets = append(s.fleets, f)
		start := time.Now()
		if err := f.add(ctx, specs); err != nil {
			s.close()
			return nil, fmt.Errorf("%s: registering watchers: %w", target, err)
		}
		d := time.Since(start)
		e.logf("matching: %s holds %d watchers (registered in %v)", target, n, d.Round(time.Millisecond))
		s.registration[target] = float64(n) / d.Seconds()
	}
	return s, nil
}
