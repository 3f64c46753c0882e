package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// writeRun is the outcome of one measured write run.
type writeRun struct {
	ops      int64
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r writeRun) perSec() float64 { return float64(r.ops) / r.elapsed.Seconds() }

// measureWrites runs clients goroutines putting value as fast as they
// can, each write to the next of keys keys (keyPrefix/<n mod keys>, n
// counting writes across clients): warmup unmeasured,
// then d measured. Writes completed in the window count for throughput;
// writes started in it give the latency percentiles.
func measureWrites(ctx context.Context, w writer, clients, keys int, warmup, d time.Duration, keyPrefix string, value []byte) (writeRun, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	t0, t1 := start.Add(warmup), start.Add(warmup+d)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		total    histogram
		ops      atomic.Int64
		next     atomic.Int64
		firstErr error
	)
	keyPrefix += "/"
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h histogram
			defer func() {
				mu.Lock()
				total.merge(&h)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				begin := time.Now()
				if begin.After(t1) {
					return
				}
				key := keyPrefix + itoa(int(next.Add(1)%int64(keys)))
				if _, err := w.put(ctx, key, value); err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						cancel()
					}
					return
				}
				end := time.Now()
				if !begin.Before(t0) {
					h.add(end.Sub(begin))
				}
				if !end.Before(t0) && end.Before(t1) {
					ops.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return writeRun{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return writeRun{}, err
	}
	return writeRun{ops: ops.Load(), elapsed: d, p50: total.quantile(0.5), p99: total.quantile(0.99)}, nil
}

// measuredWrites is a write run with the CPU time it cost.
type measuredWrites struct {
	writeRun
	serverCPU, clientCPU float64 // µs per write
}

func (r measuredWrites) String() string {
	return fmt.Sprintf("%.0f/s p50 %.2f ms p99 %.2f ms; CPU a write: server %.0f µs, client %.0f µs",
		r.perSec(), ms(r.p50), ms(r.p99), r.serverCPU, r.clientCPU)
}

// measureTarget runs measureWrites (half a second of warm-up, then d) on
// t and measures the CPU time the server and this process spent per
// write.
func measureTarget(ctx context.Context, t writeTarget, clients, keys int, d time.Duration, value []byte) (measuredWrites, error) {
	const warmup = 500 * time.Millisecond
	cpu0, _ := cpuTime(t.p.pid())
	self0 := selfCPU()
	r, err := measureWrites(ctx, t.w, clients, keys, warmup, d, "bench/w", value)
	if err != nil {
		return measuredWrites{}, err
	}
	cpu1, _ := cpuTime(t.p.pid())
	self1 := selfCPU()
	// The CPU of the whole run, warm-up included, over the writes of the
	// run at the measured rate.
	writes := r.perSec() * (d + warmup).Seconds()
	return measuredWrites{
		writeRun:  r,
		serverCPU: float64(cpu1-cpu0) / float64(time.Microsecond) / writes,
		clientCPU: float64(self1-self0) / float64(time.Microsecond) / writes,
	}, nil
}

// writeTarget is a system as a writer.
type writeTarget struct {
	name string
	w    writer
	p    *process
}

// writeTargets makes a writer for each running server, sized for
// clients concurrent callers.
func writeTargets(srv *servers, cfg *config, clients int) ([]writeTarget, func(), error) {
	return writeTargetsH2(srv, cfg, clients, false, false)
}

// writeTargetsH2 is writeTargets with, when lean is set, watchgate's REST
// also through the minimal HTTP/1.1 client (target watchgate/rest-lean)
// and, when h2 is set, over cleartext HTTP/2 (target watchgate/rest-h2).
func writeTargetsH2(srv *servers, cfg *config, clients int, lean, h2 bool) ([]writeTarget, func(), error) {
	ts := []writeTarget{{name: "watchgate/rest", w: newRESTWriter(srv.wg.addr, clients), p: srv.wg}}
	if lean {
		ts = append(ts, writeTarget{name: "watchgate/rest-lean", w: newLeanWriter(srv.wg.addr), p: srv.wg})
	}
	if h2 {
		ts = append(ts, writeTarget{name: "watchgate/rest-h2", w: newRESTWriterProto(srv.wg.addr, clients, true), p: srv.wg})
	}
	if srv.etcd != nil {
		ew, err := newEtcdWriter(srv.etcd.addr, cfg.etcdConns)
		if err != nil {
			ts[0].w.close()
			return nil, nil, err
		}
		ts = append(ts, writeTarget{name: sysEtcd, w: ew, p: srv.etcd})
	}
	return ts, func() {
		for _, t := range ts {
			t.w.close()
		}
	}, nil
}

// runWrites is scenario 1: durable writes/s with 1, 16 and 256 concurrent
// clients, p50 and p99.
func runWrites(ctx context.Context, e *env) error {
	cfg := e.cfg
	srv, err := startServers(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	value := benchValue(cfg.valueSize)
	for _, clients := range cfg.writeClients {
		cas := fmt.Sprintf("%d clients", clients)
		ts, closeAll, err := writeTargetsH2(srv, cfg, clients, cfg.writeLean, cfg.writeH2)
		if err != nil {
			return err
		}
		for rep := range cfg.repeats {
			for _, t := range rotate(ts, rep) {
				stop := e.profile(t.p, cas)
				r, err := measureTarget(ctx, t, clients, cfg.writeKeys, cfg.writeDuration, value)
				stop()
				if err != nil {
					closeAll()
					return fmt.Errorf("%s, %s: %w", t.name, cas, err)
				}
				e.logf("writes %s %s: %s", cas, t.name, r)
				e.res.add("writes", cas, "writes/s", "/s", true, t.name, r.perSec())
				e.res.add("writes", cas, "p50", "ms", false, t.name, ms(r.p50))
				e.res.add("writes", cas, "p99", "ms", false, t.name, ms(r.p99))
				e.res.add("writes", cas, "server CPU per write", "µs", false, t.name, r.serverCPU)
			}
			if err := srv.alive(); err != nil {
				closeAll()
				return err
			}
		}
		closeAll()
	}
	return nil
}
