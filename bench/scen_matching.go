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

// runMatching is scenario 4: write throughput with 0 and with many
// watchers registered on keys the writes never touch (half single keys,
// half prefixes, so that both the key map and the interval tree are
// full). The watchgate watchers are WebSocket watches; etcd's are raw
// gRPC watches. The 0 case is measured first and again after the
// watchers are gone, so that drift in the machine's load shows.
func runMatching(ctx context.Context, e *env) error {
	cfg := e.cfg
	srv, err := startServers(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	counts := slices.Clone(cfg.matching)
	slices.Sort(counts)
	counts = slices.Compact(counts)
	value := benchValue(cfg.valueSize)
	clients := cfg.matchingClients
	ws, closeWriters, err := writeTargets(srv, cfg, clients)
	if err != nil {
		return err
	}
	defer closeWriters()
	fleets := map[string]fleet{}
	closeFleets := func() {
		for name, f := range fleets {
			f.close()
			delete(fleets, name)
		}
	}
	defer closeFleets()
	openFleets := func() error {
		f, err := newFleet(cfg, srv, "ws", 0)
		if err != nil {
			return err
		}
		fleets["watchgate/rest"] = f
		if srv.etcd != nil {
			f, err := newFleet(cfg, srv, "etcd", 0)
			if err != nil {
				return err
			}
			fleets[sysEtcd] = f
		}
		return nil
	}
	if err := openFleets(); err != nil {
		return err
	}
	measure := func(cas string) error {
		for rep := range cfg.repeats {
			for _, t := range rotate(ws, rep) {
				stop := e.profile(t.p, cas)
				r, err := measureWrites(ctx, t.w, clients, cfg.writeKeys, 500*time.Millisecond, cfg.matchingDuration, "bench/w", value)
				stop()
				if err != nil {
					return fmt.Errorf("%s, %s: %w", t.name, cas, err)
				}
				if f := fleets[t.name]; f != nil && f.err() != nil {
					return fmt.Errorf("%s watchers: %w", t.name, f.err())
				}
				e.logf("matching %s %s: %.0f writes/s p99 %.2f ms", cas, t.name, r.perSec(), ms(r.p99))
				e.res.add("matching", cas, "writes/s", "/s", true, t.name, r.perSec())
				e.res.add("matching", cas, "p99", "ms", false, t.name, ms(r.p99))
			}
			if err := srv.alive(); err != nil {
				return err
			}
		}
		return nil
	}
	cur := 0
	for _, n := range counts {
		if n > cur {
			specs := make([]watchSpec, 0, n-cur)
			for i := cur; i < n; i++ {
				if i%2 == 0 {
					specs = append(specs, watchSpec{key: "bench/m/k/" + strconv.Itoa(i)})
				} else {
					specs = append(specs, watchSpec{key: "bench/m/p/" + strconv.Itoa(i) + "/", prefix: true})
				}
			}
			for name, f := range fleets {
				start := time.Now()
				if err := f.add(ctx, specs); err != nil {
					return fmt.Errorf("%s: registering watchers: %w", name, err)
				}
				d := time.Since(start)
				e.logf("matching: %s now holds %d watchers (%d added in %v)", name, n, n-cur, d.Round(time.Millisecond))
				t := name
				if t == "watchgate/rest" {
					t = "watchgate/ws"
				}
				e.res.add("matching", matchingCase(n), "registration", "watches/s", true, t, float64(n-cur)/d.Seconds())
			}
			cur = n
		}
		if err := measure(matchingCase(n)); err != nil {
			return err
		}
	}
	if len(counts) > 1 && counts[0] == 0 {
		closeFleets()
		time.Sleep(2 * time.Second)
		e.logf("matching: watchers closed; measuring the 0 case again")
		if err := measure(matchingCase(0)); err != nil {
			return err
		}
	}
	return nil
}
