package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// scenarioNames lists the scenarios in the order a full run takes them.
var scenarioNames = []string{"writes", "fanout", "sustained", "matching", "capacity", "catchup", "storm", "gateways"}

// config is the command line.
type config struct {
	scenarios     []string
	quick         bool
	etcd          bool
	etcdBin       string
	wgBin         string // prebuilt watchgate binary; empty: build from src
	src           string
	rev           string // build this commit of src instead of its working tree
	built         bool   // wgBin was built by this run
	toolchain     string
	out           string // directory for results.md, results.json, results.svg
	update        string // a Markdown file whose generated section is replaced
	tmp           string
	repeats       int
	timeout       time.Duration // per scenario
	perfDir       string        // record perf profiles of watchgate here
	pprofDir      string        // record pprof CPU profiles of watchgate here
	clientProfile string        // write the benchmark's own CPU profile here

	valueSize int

	writeClients  []int
	writeKeys     int
	writeH2       bool
	writeLean     bool
	writeDuration time.Duration

	fanout           []int
	fanoutRepeats    int
	fanoutTransports []string

	susWatchers   int
	susRate       int
	susDuration   time.Duration
	susWriters    int
	susTransports []string

	matching         []int
	matchingClients  int
	matchingDuration time.Duration

	capWS, capSSE, capEtcd int

	catchup        int
	catchupWriters int

	stormWatchers int
	stormBehind   int
	stormModes    []string

	gwCounts     []int
	gwWatchers   []int
	gwRepeats    int
	gwTransports []string

	wsPerSocket   int
	ssePerConn    int
	etcdConns     int
	etcdPerStream int
	wgLogLevel    string
	wgArgs        []string
}

// intList is a flag of comma-separated integers (k and M suffixes allowed).
type intList []int

func (l *intList) String() string {
	var s []string
	for _, v := range *l {
		s = append(s, strconv.Itoa(v))
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	*l = nil
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := parseCount(f)
		if err != nil {
			return err
		}
		*l = append(*l, n)
	}
	return nil
}

// parseCount parses 100, 10k, 1M.
func parseCount(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1000, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1000000, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a count", s)
	}
	return n * mult, nil
}

type countFlag struct{ p *int }

func (c countFlag) String() string {
	if c.p == nil {
		return ""
	}
	return strconv.Itoa(*c.p)
}
func (c countFlag) Set(v string) error {
	n, err := parseCount(v)
	if err == nil {
		*c.p = n
	}
	return err
}

type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}
func (l listFlag) Set(v string) error {
	*l.p = nil
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l.p = append(*l.p, f)
		}
	}
	return nil
}

// defaults for a full run on the 2-core, 24 GiB development machine.
func defaultConfig() config {
	return config{
		scenarios:        slices.Clone(scenarioNames),
		etcd:             true,
		etcdBin:          "/usr/bin/etcd",
		toolchain:        "go1.26.11",
		out:              "bench/results",
		tmp:              os.TempDir(),
		repeats:          3,
		timeout:          15 * time.Minute,
		valueSize:        100,
		writeClients:     []int{1, 16, 256},
		writeDuration:    5 * time.Second,
		writeKeys:        10000,
		writeLean:        true,
		fanout:           []int{1000, 10000, 100000},
		fanoutRepeats:    7,
		fanoutTransports: []string{"ws", "sse"},
		susWatchers:      1000,
		susRate:          1000,
		susDuration:      10 * time.Second,
		susWriters:       128,
		susTransports:    []string{"ws", "sse"},
		matching:         []int{0, 100000, 1000000},
		matchingClients:  256,
		matchingDuration: 5 * time.Second,
		capWS:            1000000,
		capSSE:           100000,
		capEtcd:          1000000,
		catchup:          1000000,
		catchupWriters:   16,
		stormWatchers:    1000,
		stormBehind:      10000,
		stormModes:       []string{"own", "shared"},
		gwCounts:         []int{1, 2, 3},
		gwWatchers:       []int{10000, 30000},
		gwRepeats:        7,
		gwTransports:     []string{"ws", "sse"},
		wsPerSocket:      10000,
		ssePerConn:       1000,
		etcdConns:        4,
		etcdPerStream:    1000,
		wgLogLevel:       "info",
	}
}

// quickConfig shrinks every size for a smoke run of a minute or two.
func (c *config) applyQuick(set map[string]bool) {
	q := func(name string, apply func()) {
		if !set[name] {
			apply()
		}
	}
	q("repeats", func() { c.repeats = 1 })
	q("write-clients", func() { c.writeClients = []int{1, 16} })
	q("write-duration", func() { c.writeDuration = time.Second })
	q("fanout", func() { c.fanout = []int{100, 1000} })
	q("fanout-repeats", func() { c.fanoutRepeats = 3 })
	q("sustained-watchers", func() { c.susWatchers = 100 })
	q("sustained-rate", func() { c.susRate = 200 })
	q("sustained-duration", func() { c.susDuration = 2 * time.Second })
	q("sustained-writers", func() { c.susWriters = 8 })
	q("matching", func() { c.matching = []int{0, 10000} })
	q("matching-clients", func() { c.matchingClients = 16 })
	q("matching-duration", func() { c.matchingDuration = time.Second })
	q("capacity-ws", func() { c.capWS = 10000 })
	q("capacity-sse", func() { c.capSSE = 1000 })
	q("capacity-etcd", func() { c.capEtcd = 10000 })
	q("catchup", func() { c.catchup = 20000 })
	q("storm-watchers", func() { c.stormWatchers = 50 })
	q("storm-behind", func() { c.stormBehind = 500 })
	q("storm-modes", func() { c.stormModes = []string{"own"} })
	q("gateways-watchers", func() { c.gwWatchers = []int{1000} })
	q("gateways-repeats", func() { c.gwRepeats = 3 })
	q("timeout", func() { c.timeout = 3 * time.Minute })
}

var errUsage = errors.New("usage")

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: go run ./bench [flags]\n\n"+
			"Runs watchgate (built from this repository) and a single-node etcd on\n"+
			"loopback and compares them scenario by scenario. Scenarios: %s.\n\nFlags:\n",
			strings.Join(scenarioNames, ", "))
		fs.PrintDefaults()
	}
	var scen string
	fs.StringVar(&scen, "scenarios", strings.Join(scenarioNames, ","), "comma-separated scenarios to run")
	fs.BoolVar(&c.quick, "quick", false, "smoke run: small sizes and short durations (explicit size flags still win)")
	fs.BoolVar(&c.etcd, "etcd", c.etcd, "also run every scenario against etcd (false: watchgate only)")
	fs.StringVar(&c.etcdBin, "etcd-bin", c.etcdBin, "etcd binary (Debian's etcd-server, 3.4)")
	fs.StringVar(&c.wgBin, "watchgate-bin", "", "prebuilt watchgate binary (default: build the repository with -toolchain)")
	fs.StringVar(&c.src, "src", "", "the watchgate repository (default: found from the working directory)")
	fs.StringVar(&c.rev, "rev", "", "build watchgate from this commit (git archive) instead of the working tree, e.g. HEAD")
	fs.StringVar(&c.toolchain, "toolchain", c.toolchain, "GOTOOLCHAIN for building watchgate")
	fs.StringVar(&c.out, "out", c.out, "directory for results.md, results.json and results.svg (empty: none)")
	fs.StringVar(&c.update, "update", "", "Markdown file whose section between the bench:begin and bench:end markers is replaced by the results")
	fs.StringVar(&c.tmp, "tmp", c.tmp, "directory for the servers' temporary data directories")
	fs.IntVar(&c.repeats, "repeats", c.repeats, "runs of each measurement per system, alternating systems")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "time limit of each scenario")
	fs.StringVar(&c.perfDir, "perf", "", "record a perf profile (perf record -g) of the watchgate server during each scenario into this directory")
	fs.StringVar(&c.pprofDir, "pprof", "", "serve watchgate with --pprof and record its CPU profile during each measured run into this directory, with `go tool pprof -top` reports")
	fs.StringVar(&c.clientProfile, "client-cpuprofile", "", "write the CPU profile of the benchmark's own clients to this file")
	fs.IntVar(&c.valueSize, "value-size", c.valueSize, "bytes per value")
	fs.Var((*intList)(&c.writeClients), "write-clients", "writes: concurrent clients per case")
	fs.BoolVar(&c.writeLean, "write-lean", c.writeLean, "writes: also write to watchgate with a minimal HTTP/1.1 client (target watchgate/rest-lean), whose CPU a request is a fraction of net/http's")
	fs.BoolVar(&c.writeH2, "write-h2", true, "writes: also write to watchgate over cleartext HTTP/2 (target watchgate/rest-h2), every client's requests on one connection")
	fs.Var(countFlag{&c.writeKeys}, "write-keys", "writes and matching: distinct keys written, in turn")
	fs.DurationVar(&c.writeDuration, "write-duration", c.writeDuration, "writes: measured time per run")
	fs.Var((*intList)(&c.fanout), "fanout", "fanout: watcher counts (one key)")
	fs.IntVar(&c.fanoutRepeats, "fanout-repeats", c.fanoutRepeats, "fanout: writes timed per system and size")
	fs.Var(listFlag{&c.fanoutTransports}, "fanout-transports", "fanout: watchgate transports (ws, sse)")
	fs.Var(countFlag{&c.susWatchers}, "sustained-watchers", "sustained: watchers of one prefix")
	fs.Var(countFlag{&c.susRate}, "sustained-rate", "sustained: writes per second")
	fs.DurationVar(&c.susDuration, "sustained-duration", c.susDuration, "sustained: time writing per run")
	fs.IntVar(&c.susWriters, "sustained-writers", c.susWriters, "sustained: concurrent writers sharing the rate (enough that the write path keeps the rate even when a write takes 100 ms)")
	fs.Var(listFlag{&c.susTransports}, "sustained-transports", "sustained: watchgate transports (ws, sse)")
	fs.Var((*intList)(&c.matching), "matching", "matching: counts of watchers on other keys")
	fs.IntVar(&c.matchingClients, "matching-clients", c.matchingClients, "matching: concurrent writers")
	fs.DurationVar(&c.matchingDuration, "matching-duration", c.matchingDuration, "matching: measured time per run")
	fs.Var(countFlag{&c.capWS}, "capacity-ws", "capacity: idle WebSocket watches (0 skips)")
	fs.Var(countFlag{&c.capSSE}, "capacity-sse", "capacity: idle SSE streams over HTTP/2 (0 skips)")
	fs.Var(countFlag{&c.capEtcd}, "capacity-etcd", "capacity: idle etcd watches (0 skips)")
	fs.Var(countFlag{&c.catchup}, "catchup", "catchup: revisions the watcher is behind")
	fs.IntVar(&c.catchupWriters, "catchup-writers", c.catchupWriters, "catchup: other clients writing meanwhile")
	fs.Var(countFlag{&c.stormWatchers}, "storm-watchers", "storm: watchers reconnecting at once")
	fs.Var(countFlag{&c.stormBehind}, "storm-behind", "storm: revisions each is behind")
	fs.Var(listFlag{&c.stormModes}, "storm-modes", "storm: own (each watcher watches its own key) and/or shared (every watcher watches the whole written prefix and replays every missed revision)")
	fs.Var((*intList)(&c.gwCounts), "gateways", "gateways: numbers of watchgate gateways (--backend=etcd) in front of one etcd")
	fs.Var((*intList)(&c.gwWatchers), "gateways-watchers", "gateways: watcher counts (one key), each spread evenly over the gateways")
	fs.IntVar(&c.gwRepeats, "gateways-repeats", c.gwRepeats, "gateways: writes timed per gateway count and transport")
	fs.Var(listFlag{&c.gwTransports}, "gateways-transports", "gateways: watchgate transports (ws, sse)")
	fs.IntVar(&c.wsPerSocket, "ws-per-socket", c.wsPerSocket, "watches per WebSocket (watchgate allows 10,000 by default; more raise its --max-watches-per-socket)")
	fs.IntVar(&c.ssePerConn, "sse-per-conn", c.ssePerConn, "SSE streams per HTTP/2 connection (watchgate allows 1,000 by default; more raise its --http2-max-streams)")
	fs.IntVar(&c.etcdConns, "etcd-conns", c.etcdConns, "etcd client connections per writer or watcher set")
	fs.IntVar(&c.etcdPerStream, "etcd-per-stream", c.etcdPerStream, "etcd watches per gRPC watch stream")
	fs.StringVar(&c.wgLogLevel, "watchgate-log-level", c.wgLogLevel, "watchgate's --log-level (info, its default, logs every request)")
	fs.Var(listFlag{&c.wgArgs}, "watchgate-args", "extra comma-separated watchgate flags")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if c.quick {
		c.applyQuick(set)
	}
	c.scenarios = nil
	for _, s := range strings.Split(scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(scenarioNames, s) {
			return nil, fmt.Errorf("%w: unknown scenario %q (have %s)", errUsage, s, strings.Join(scenarioNames, ", "))
		}
		c.scenarios = append(c.scenarios, s)
	}
	for _, m := range c.stormModes {
		if m != "own" && m != "shared" {
			return nil, fmt.Errorf("%w: storm mode %q: want own or shared", errUsage, m)
		}
	}
	for _, t := range append(append(slices.Clone(c.fanoutTransports), c.susTransports...), c.gwTransports...) {
		if t != "ws" && t != "sse" {
			return nil, fmt.Errorf("%w: transport %q: want ws or sse", errUsage, t)
		}
	}
	switch {
	case len(c.scenarios) == 0:
		return nil, fmt.Errorf("%w: no scenario", errUsage)
	case c.repeats < 1 || c.fanoutRepeats < 1 || c.gwRepeats < 1:
		return nil, fmt.Errorf("%w: -repeats, -fanout-repeats and -gateways-repeats must be at least 1", errUsage)
	case len(c.gwCounts) == 0 || slices.Min(c.gwCounts) < 1 || slices.Max(c.gwCounts) > 16:
		return nil, fmt.Errorf("%w: -gateways counts must be 1 to 16", errUsage)
	case len(c.gwWatchers) == 0 || slices.Min(c.gwWatchers) < 1:
		return nil, fmt.Errorf("%w: -gateways-watchers counts must be at least 1", errUsage)
	case c.wsPerSocket < 1 || c.ssePerConn < 1 || c.etcdConns < 1 || c.etcdPerStream < 1:
		return nil, fmt.Errorf("%w: -ws-per-socket, -sse-per-conn, -etcd-conns and -etcd-per-stream must be at least 1", errUsage)
	case c.valueSize < 1 || c.writeKeys < 1 || c.susRate < 1 || c.susWriters < 1 || c.matchingClients < 1 || c.catchupWriters < 0:
		return nil, fmt.Errorf("%w: sizes and rates must be positive", errUsage)
	case c.writeDuration <= 0 || c.susDuration <= 0 || c.matchingDuration <= 0 || c.timeout <= 0:
		return nil, fmt.Errorf("%w: durations must be positive", errUsage)
	}
	for _, n := range append(append(slices.Clone(c.writeClients), c.fanout...), c.matching...) {
		if n < 0 || n > 10000000 {
			return nil, fmt.Errorf("%w: count %d out of range", errUsage, n)
		}
	}
	return &c, nil
}
