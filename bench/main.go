// Command bench compares watchgate with etcd on this machine: it builds
// the watchgate binary from the repository, starts it and a single-node
// etcd (Debian's etcd-server, 3.4) on loopback ports with temporary data
// directories, runs each scenario against both, alternating the systems
// run by run, and prints a table of medians with the watchgate/etcd
// ratio and the performance targets met or not. With -out it writes the
// table as Markdown, the samples as JSON and a chart as SVG.
//
// Usage:
//
//	go run ./bench                      # every scenario, full sizes (tens of minutes)
//	go run ./bench -quick               # smoke run, a minute or two
//	go run ./bench -scenarios writes,fanout -fanout 1k,10k -repeats 5
//	go run ./bench -etcd=false          # watchgate only
//
// Scenarios:
//
//	writes     durable writes/s and p50/p99 with 1, 16 and 256 clients
//	fanout     one write to N watchers of one key: time until the last has it
//	sustained  watchers of one prefix under a steady write rate: deliveries/s, p50/p99
//	matching   write throughput with 0, 100k and 1M watchers on other keys
//	capacity   idle watches held and server memory per watch
//	catchup    one watcher resuming 1M revisions behind: events/s, others' write latency
//	storm      1,000 watchers each 10,000 revisions behind reconnect at once
//	gateways   scale-out: 1, 2 and 3 gateways (--backend=etcd) in front of one
//	           etcd, 10,000 and 30,000 watchers of one key spread over them,
//	           one write
//
// watchgate is reached over REST on HTTP/1.1 keep-alive (writes), its
// multiplexed WebSocket (coder/websocket) and SSE streams over cleartext
// HTTP/2 (net/http with Protocols UnencryptedHTTP2); etcd through
// go.etcd.io/etcd/client/v3 (Put) and raw gRPC Watch streams on its
// connections. Every loop is bounded in count and time; everything runs on
// loopback.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// env is what every scenario gets.
type env struct {
	cfg *config
	res *results
	log io.Writer
	// scenario is the scenario being run, for profiles' names.
	scenario string
	profiles int
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

var scenarioFuncs = map[string]func(ctx context.Context, e *env) error{
	"writes":    runWrites,
	"fanout":    runFanout,
	"sustained": runSustained,
	"matching":  runMatching,
	"capacity":  runCapacity,
	"catchup":   runCatchup,
	"storm":     runStorm,
	"gateways":  runGateways,
}

// run is the whole command; stdout gets the table, stderr the progress.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	return runConfig(ctx, cfg, stdout, stderr)
}

func runConfig(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	e := &env{cfg: cfg, res: &results{}, log: stderr}
	if cfg.src == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if cfg.src, err = moduleRoot(wd); err != nil && cfg.wgBin == "" {
			return err
		}
	}
	if cfg.etcd {
		if _, err := checkEtcd(cfg.etcdBin); err != nil {
			return err
		}
	}
	buildDir, err := os.MkdirTemp(cfg.tmp, "bench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(buildDir)
	if cfg.wgBin == "" {
		src := cfg.src
		if cfg.rev != "" {
			// A clean tree of the commit, so the figures belong to it and
			// not to whatever the working tree holds.
			if src, err = exportRevision(cfg.src, cfg.rev, buildDir); err != nil {
				return err
			}
		}
		e.logf("building watchgate from %s%s with %s", cfg.src, revSuffix(cfg.rev), cfg.toolchain)
		if cfg.wgBin, err = buildWatchgate(src, buildDir, cfg.toolchain); err != nil {
			return err
		}
		cfg.built = true
	}
	for _, dir := range []string{cfg.perfDir, cfg.pprofDir} {
		if dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
	}
	if cfg.clientProfile != "" {
		f, err := os.Create(cfg.clientProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	m := describeMachine(cfg)
	e.logf("machine: %s", m.summary())

	var failed []error
	for _, name := range cfg.scenarios {
		if ctx.Err() != nil {
			break
		}
		e.scenario = name
		e.logf("== %s", name)
		sctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		start := time.Now()
		ld := scenarioLoad{Scenario: name, Start: load1()}
		err := scenarioFuncs[name](sctx, e)
		cancel()
		ld.End = load1()
		m.Loads = append(m.Loads, ld)
		if err != nil {
			e.logf("%s failed after %v: %v", name, time.Since(start).Round(time.Second), err)
			failed = append(failed, fmt.Errorf("%s: %w", name, err))
			continue
		}
		e.logf("%s done in %v", name, time.Since(start).Round(time.Second))
	}
	m.finish()

	rows := e.res.rows()
	checks := evaluateTargets(cfg, e.res)
	fmt.Fprintf(stdout, "\n%s\n\n%s\n%s", m.summary(), textTable(rows), textTargets(checks))
	if cfg.out != "" {
		if err := writeOutputs(cfg, m, e.res, rows, checks); err != nil {
			failed = append(failed, err)
		} else {
			e.logf("results in %s", filepath.Join(cfg.out, "results.{md,json,svg}"))
		}
	}
	if cfg.update != "" {
		if err := updateDoc(cfg, m, rows, checks); err != nil {
			failed = append(failed, err)
		}
	}
	if ctx.Err() != nil {
		failed = append(failed, ctx.Err())
	}
	return errors.Join(failed...)
}

// rotate returns xs rotated left by i, so that repeated runs alternate
// which system goes first.
func rotate[T any](xs []T, i int) []T {
	if len(xs) == 0 {
		return xs
	}
	i %= len(xs)
	return append(append([]T(nil), xs[i:]...), xs[:i]...)
}
