package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// pacedWrites writes keys prefix+<seq> at rate per second for d with
// writers goroutines sharing the schedule, recording the start of each
// write in starts[seq] (unix nanoseconds). It returns the number written,
// and whether the writes fell more than a second behind the schedule (then
// they stopped there). Writers that fall behind catch up (the schedule is
// open-loop), but no write starts after d.
func pacedWrites(ctx context.Context, w writer, writers, rate int, d time.Duration, prefix string, value []byte, starts []atomic.Int64) (int, bool, error) {
	total := min(int(float64(rate)*d.Seconds()), len(starts))
	interval := time.Second / time.Duration(rate)
	begin := time.Now()
	var next, written atomic.Int64
	var behind atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seq := int(next.Add(1) - 1)
				if seq >= total || ctx.Err() != nil || behind.Load() {
					return
				}
				due := begin.Add(time.Duration(seq) * interval)
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				now := time.Now()
				if now.Sub(due) > time.Second {
					behind.Store(true)
					return
				}
				starts[seq].Store(now.UnixNano())
				if _, err := w.put(ctx, prefix+strconv.Itoa(seq), value); err != nil {
					errc <- err
					return
				}
				written.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return 0, false, err
	}
	return int(written.Load()), behind.Load(), ctx.Err()
}

// runSustained is scenario 3: watchers of one prefix under a steady write
// rate; deliveries per second while writing (after a second of warm-up)
// and write-to-receive p50/p99.
func runSustained(ctx context.Context, e *env) error {
	cfg := e.cfg
	srv, err := startServers(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.stop()
	const group = 100 // watchers per socket, HTTP/2 connection or etcd stream
	ts, closeAll, err := watchTargets(cfg, srv, cfg.susTransports, group, cfg.susWriters)
	if err != nil {
		return err
	}
	defer closeAll()
	cas := fmt.Sprintf("%s watchers, %s writes/s", formatCount(cfg.susWatchers), formatCount(cfg.susRate))
	for _, t := range ts {
		specs := make([]watchSpec, cfg.susWatchers)
		for i := range specs {
			specs[i] = watchSpec{key: targetKey("sus", t, ""), prefix: true}
		}
		if err := t.fleet.add(ctx, specs); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	value := benchValue(cfg.valueSize)
	for rep := range cfg.repeats {
		for _, t := range rotate(ts, rep) {
			if err := sustainedRun(ctx, e, t, cas, rep, value); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := srv.alive(); err != nil {
			return err
		}
	}
	return nil
}

// readerStats is what one reading goroutine of a fleet counts; padded so
// that readers do not share cache lines.
type readerStats struct {
	mu        sync.Mutex // taken by the handler and by the final read
	h         histogram
	delivered int64
	inWindow  int64
	_         [64]byte
}

func sustainedRun(ctx context.Context, e *env, t *watchTarget, cas string, rep int, value []byte) error {
	cfg := e.cfg
	total := int(float64(cfg.susRate) * cfg.susDuration.Seconds())
	starts := make([]atomic.Int64, total)
	// Each run writes under its own prefix so no stale event is counted.
	prefix := targetKey("sus", t, "r"+strconv.Itoa(rep)+"/")
	stats := make([]readerStats, t.fleet.readers())
	begin := time.Now()
	winStart := begin.Add(time.Second).UnixNano()
	winEnd := begin.Add(cfg.susDuration).UnixNano()
	var received atomic.Int64
	var bad atomic.Int64
	t.fleet.setHandler(func(reader, _ int, _ int64, key []byte) {
		now := time.Now().UnixNano()
		if len(key) <= len(prefix) || string(key[:len(prefix)]) != prefix {
			return // an earlier run's straggler
		}
		seq, _, ok := parseInt(key[len(prefix):])
		if !ok || int(seq) >= len(starts) {
			bad.Add(1)
			return
		}
		s := &stats[reader]
		s.mu.Lock()
		defer s.mu.Unlock()
		s.delivered++
		if now >= winStart && now < winEnd {
			s.inWindow++
		}
		if st := starts[seq].Load(); st > 0 {
			s.h.add(time.Duration(now - st))
		}
		received.Add(1)
	})
	defer t.fleet.setHandler(nil)
	stop := e.profile(t.p, cas)
	n, behind, err := pacedWrites(ctx, t.w, cfg.susWriters, cfg.susRate, cfg.susDuration, prefix, value, starts)
	if err != nil {
		stop()
		return err
	}
	want := int64(n) * int64(cfg.susWatchers)
	deadline := time.Now().Add(30 * time.Second)
	for received.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil && t.fleet.err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if err := t.fleet.err(); err != nil {
		return err
	}
	if bad.Load() > 0 {
		return errors.New("events with keys the benchmark did not write")
	}
	var h histogram
	var delivered, inWindow int64
	for i := range stats {
		s := &stats[i]
		s.mu.Lock()
		h.merge(&s.h)
		delivered += s.delivered
		inWindow += s.inWindow
		s.mu.Unlock()
	}
	rate := float64(inWindow) / time.Duration(winEnd-winStart).Seconds()
	e.logf("sustained %s: %.0f deliveries/s, p50 %.2f ms, p99 %.2f ms, %d of %d delivered",
		t.name, rate, ms(h.quantile(0.5)), ms(h.quantile(0.99)), delivered, want)
	e.res.add("sustained", cas, "deliveries/s", "/s", true, t.name, rate)
	e.res.add("sustained", cas, "p50", "ms", false, t.name, ms(h.quantile(0.5)))
	e.res.add("sustained", cas, "p99", "ms", false, t.name, ms(h.quantile(0.99)))
	if behind {
		e.logf("sustained %s: could not keep up: writes stopped more than 1 s behind schedule after %d of %d", t.name, n, total)
		e.res.note("sustained", cas, "deliveries/s", "/s", true, t.name, "could not keep up with the write rate")
	}
	if delivered < want {
		e.res.note("sustained", cas, "deliveries/s", "/s", true, t.name, "not all delivered within 30 s")
	}
	return nil
}
