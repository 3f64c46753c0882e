package reliability

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.uber.org/goleak"

	"github.com/watchgate/watchgate/internal/testbin"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/test/reliability/faultproxy"
)

var (
	seedFlag = flag.Uint64("seed", 0, "seed of the run (0: from $WATCHGATE_RELIABILITY_SEED, else random)")
	soakFlag = flag.Bool("soak", false, "run the soak (also $WATCHGATE_SOAK=1): 100 kill cycles, 10,000 forced reconnects")
	// serverRace builds the server with the race detector: its reports
	// fail the run.
	serverRace = flag.Bool("server-race", false, "build the watchgate binary with -race (also $WATCHGATE_RELIABILITY_SERVER_RACE=1)")
)

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv("WATCHGATE_RELIABILITY_SERVER_RACE") == "1" {
		*serverRace = true
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { testbin.Cleanup() }))
}

// runSeed picks the run's seed: the flag, the environment, or the clock.
func runSeed(tb testing.TB) uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	if s := os.Getenv("WATCHGATE_RELIABILITY_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			tb.Fatalf("WATCHGATE_RELIABILITY_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

func soak() bool { return *soakFlag || os.Getenv("WATCHGATE_SOAK") == "1" }

// TestReliability runs the real server under writers, readers and
// watchers of every transport while it is killed, its connections cut,
// stalled and sliced, and its history compacted; then checks the history,
// every watch stream and linearizability. `go test` runs the bounded
// form; WATCHGATE_SOAK=1 (or -soak) the long one.
func TestReliability(t *testing.T) {
	t.Parallel()
	seed := runSeed(t)
	cfg := boundedConfig(seed)
	mode := "bounded"
	if soak() {
		cfg, mode = soakConfig(seed), "soak"
	}
	if testing.Short() {
		cfg.Kills, cfg.MinReconnects, cfg.MinDuration, cfg.LongStall = 2, 50, 10*time.Second, 0
	}
	env := ""
	if soak() {
		env = "WATCHGATE_SOAK=1 "
	}
	t.Logf("%s run, seed %d (rerun: %sgo test -race -run 'TestReliability$' ./test/reliability/ -seed %d)", mode, seed, env, seed)
	h := newHarness(t, cfg, kvDeploymentOf)
	failed := runHarness(t, h)
	if failed {
		t.Errorf("seed %d failed; rerun with %sgo test -race -run 'TestReliability$' ./test/reliability/ -seed %d", seed, env, seed)
	}
}

// watcherSetup describes the watchers of a run.
type watcherSetup struct {
	name     string
	spec     watchSpec
	h2c      bool
	proxy    bool
	progress string
	start    int64 // rev= of the first generation
	ndjson   bool
}

var sseSetups = []watcherSetup{
	{"sse-a-prefix", watchSpec{Key: "a/", Prefix: true, PrevKV: true}, false, false, "1s", 0, false},
	{"sse-a1", watchSpec{Key: "a/1"}, false, true, "1s", 0, false},
	{"sse-all-h2", watchSpec{Key: "", Prefix: true}, true, false, "1s", 0, false},
	{"sse-range-puts-h2", watchSpec{Key: "a/4", End: "b/3", NoDelete: true}, true, true, "1s", 0, false},
	{"sse-b-deletes-h2", watchSpec{Key: "b/", Prefix: true, NoPut: true, PrevKV: true}, true, true, "1s", 0, false},
	{"sse-all-snapshot", watchSpec{Key: "", Prefix: true, Snapshot: true}, false, true, "1s", 0, false},
	{"sse-a-snapshot-h2", watchSpec{Key: "a/", Prefix: true, Snapshot: true, PrevKV: true}, true, true, "1s", 0, false},
	{"sse-x-binary", watchSpec{Key: "x/", Prefix: true, PrevKV: true}, false, true, "1s", 0, false},
	{"sse-c-from-2", watchSpec{Key: "c/", Prefix: true}, false, false, "0", 2, false},
	{"ndjson-b-h2", watchSpec{Key: "b/", Prefix: true, PrevKV: true}, true, true, "1s", 0, true},
	{"ndjson-all-snapshot", watchSpec{Key: "", Prefix: true, Snapshot: true}, false, true, "1s", 0, true},
}

var wsSetups = [][]watcherSetup{
	{
		{name: "ws1-all", spec: watchSpec{Key: "", Prefix: true}},
		{name: "ws1-b2", spec: watchSpec{Key: "b/2", PrevKV: true}},
		{name: "ws1-a-snapshot", spec: watchSpec{Key: "a/", Prefix: true, Snapshot: true}},
		{name: "ws1-range-deletes", spec: watchSpec{Key: "b/", End: "c/z", NoPut: true}},
	},
	{
		{name: "ws2-c-snapshot", spec: watchSpec{Key: "c/", Prefix: true, Snapshot: true, PrevKV: true}},
		{name: "ws2-x", spec: watchSpec{Key: "x/", Prefix: true, PrevKV: true}},
		{name: "ws2-a-puts-from-2", spec: watchSpec{Key: "a/", Prefix: true, NoDelete: true}, start: 2},
	},
}

// runHarness runs one whole run and its checks; it reports whether
// anything failed (the failures are reported on t).
func runHarness(t *testing.T, h *harness) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Logf("deployment: %s", h.dep.name())
	if err := h.ps.startAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.setup(ctx); err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.New(h.ps.pick(1), faultproxy.Options{Seed: h.cfg.Seed, Slice: true, MaxSlice: 1500})
	if err != nil {
		t.Fatal(err)
	}
	h.proxy = proxy
	defer proxy.Close()
	// A second proxy slices finely and cuts after a random number of bytes:
	// no response or event arrives whole through it.
	choppy, err := faultproxy.New(h.ps.pick(2), faultproxy.Options{Seed: h.cfg.Seed + 1, Slice: true, MaxSlice: 7, CutAfter: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer choppy.Close()

	// Clients.
	viaProxy := h.httpClient(false, 10*time.Second)
	viaChoppy := h.httpClient(false, 10*time.Second)
	proxyRC := h.rest(viaProxy, h.proxyBase)
	choppyBase := func() string {
		choppy.SetTarget(h.ps.pick(2))
		return "http://" + choppy.Addr()
	}
	choppyRC := h.rest(viaChoppy, choppyBase)
	directRC := h.control
	// Streams share one client per kind, so that over HTTP/2 one
	// connection carries many watches. Direct ones spread over the
	// processes (watcher i prefers process i); every proxied one goes
	// where the proxy points.
	streams := map[[2]bool]*http.Client{}
	streamClient := func(i int, h2c, viaProxy bool) (*http.Client, func() string) {
		k := [2]bool{h2c, viaProxy}
		if streams[k] == nil {
			streams[k] = h.httpClient(h2c, 0)
		}
		if viaProxy {
			return streams[k], h.processBase(1, proxy)
		}
		return streams[k], h.processBase(i, nil)
	}

	// Watchers.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var wwg sync.WaitGroup
	for i, s := range sseSetups {
		l := newWatchLog(s.name, s.spec, h.start)
		c, base := streamClient(i, s.h2c, s.proxy)
		w := newSSEWatcher(l, c, base, directRC, h.cfg.Seed+uint64(i), s.progress, s.start)
		w.ndjson = s.ndjson
		h.sse = append(h.sse, w)
		h.logs = append(h.logs, l)
	}
	for i, setup := range wsSetups {
		var logs []*watchLog
		var starts []int64
		for _, s := range setup {
			l := newWatchLog(s.name, s.spec, h.start)
			logs = append(logs, l)
			starts = append(starts, s.start)
			h.logs = append(h.logs, l)
		}
		c, base := streamClient(i, false, i == 0)
		h.sockets = append(h.sockets, newWSSocket(fmt.Sprintf("ws%d", i+1), c, base, directRC, h.cfg.Seed+uint64(100+i), logs, starts))
	}
	for _, w := range h.sse {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			w.run(wctx)
		}()
	}
	for _, s := range h.sockets {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			s.run(wctx)
		}()
	}

	// Writers and readers.
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	var cwg sync.WaitGroup
	for i := range h.cfg.Writers + h.cfg.Readers {
		rc := h.rest(h.direct, h.processBase(i, nil))
		switch i % 4 {
		case 1:
			rc = proxyRC
		case 3:
			rc = choppyRC
		}
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			h.client(cctx, i, rc, i >= h.cfg.Writers)
		}()
	}

	// Faults and compaction.
	fctx, fcancel := context.WithCancel(ctx)
	defer fcancel()
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() {
		defer fwg.Done()
		h.compactor(fctx)
	}()
	faultErr := h.faults(ctx)
	fcancel()
	fwg.Wait()
	ccancel()
	cwg.Wait()
	if faultErr != nil {
		t.Error(faultErr)
	}

	// Drain: every watcher must get everything up to the final revision.
	// Requests canceled at the end may still be committed: the final
	// revision is the one that stays put for a while.
	var final int64
	for quiet, fails := 0, 0; quiet < 3; {
		st, err := h.control.status(ctx)
		if err != nil {
			if fails++; fails < 40 {
				time.Sleep(250 * time.Millisecond)
				continue
			}
			t.Fatalf("status after the run: %v", err)
		}
		if st.Revision == final {
			quiet++
		} else {
			final, quiet = st.Revision, 0
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.seen(final)
	drainStart := time.Now()
	t.Logf("%.1fs: run over, final revision %d; draining the watchers", time.Since(h.start).Seconds(), final)
	for time.Since(drainStart) < 60*time.Second {
		behind := h.behind(final)
		if len(behind) == 0 {
			break
		}
		for _, s := range h.sockets {
			s.requestProgress(ctx)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if behind := h.behind(final); len(behind) > 0 {
		t.Errorf("watchers not complete up to %d after 60s: %s", final, strings.Join(behind, ", "))
	}
	// The watcher without bookmarks gets its last events within the time
	// the others took.
	time.Sleep(time.Second)
	wcancel()
	wwg.Wait()

	t.Logf("%.1fs: watchers drained in %v", time.Since(h.start).Seconds(), time.Since(drainStart).Round(time.Millisecond))
	// Clean shutdown; then the rest of the history.
	if err := h.ps.stopAll(30 * time.Second); err != nil {
		t.Error(err)
	}
	for _, p := range h.ps.problems() {
		h.breach("server log: %s", p)
	}
	for _, tr := range h.transports {
		tr.CloseIdleConnections()
	}
	rev, err := h.dep.final(ctx, h.hist)
	if err != nil {
		t.Errorf("final history: %v", err)
	}
	if rev != final {
		t.Errorf("final history at revision %d, the server said %d", rev, final)
	}

	t.Logf("%.1fs: stopped, history read; checking", time.Since(h.start).Seconds())
	return h.check(t, final, proxy.Stats(), choppy.Stats())
}

// behind lists the watchers not yet known complete up to rev (those
// without bookmarks are not waited for).
func (h *harness) behind(rev int64) []string {
	var out []string
	for i, w := range h.sse {
		if sseSetups[i].progress == "0" {
			continue
		}
		if w.pos.Load() < rev {
			out = append(out, fmt.Sprintf("%s at %d", w.log.Name, w.pos.Load()))
		}
	}
	for _, s := range h.sockets {
		for _, w := range s.watches {
			if w.pos.Load() < rev {
				out = append(out, fmt.Sprintf("%s at %d", w.log.Name, w.pos.Load()))
			}
		}
	}
	return out
}

// check runs every final check and logs the run's figures.
func (h *harness) check(t *testing.T, final int64, ps, cs faultproxy.Stats) bool {
	failed := false
	fail := func(format string, args ...any) {
		failed = true
		t.Errorf("seed %d: "+format, append([]any{h.cfg.Seed}, args...)...)
	}
	for _, b := range h.breaches {
		fail("contract breach: %s", b)
	}
	hist, err := h.hist.History()
	if err != nil {
		fail("history: %v", err)
		return failed
	}

	// Acknowledged writes.
	all := h.setupOps
	for _, ops := range h.epochOps {
		all = append(all, ops...)
	}
	for i, err := range checkAcknowledged(h.hist, all) {
		if i >= 20 {
			fail("... and more acknowledged-write failures")
			break
		}
		fail("%v", err)
	}

	// Reads at a revision, against the history's state at that revision
	// (rebuilt once, in revision order).
	for _, err := range checkReadsAt(hist.Batches(), h.rangeAt) {
		fail("%v", err)
	}

	t.Logf("%.1fs: acknowledged writes and reads at a revision checked", time.Since(h.start).Seconds())
	// Watch streams.
	var ws watchStats
	for _, l := range h.logs {
		st := l.stats()
		t.Logf("watcher %-20s %-36s %7d events, %5d reconnects, %3d generations, %3d compacted, %3d resets",
			l.Name, l.Spec, st.Events, st.Reconnects, st.Generations, st.Compactions, st.Resets)
		ws.add(st)
		if err := l.check(h.hist, hist, final); err != nil {
			fail("%v", err)
		}
	}

	t.Logf("%.1fs: watch streams checked", time.Since(h.start).Seconds())
	// Linearizability, epoch by epoch, once the history settled the
	// requests whose answers were lost. Every revision must come from a
	// request.
	batches := hist.Batches()
	values, _ := valueIndex(batches)
	claimed := map[int64]bool{}
	for _, o := range all {
		if !o.Out.Unknown && writes(o) {
			if claimed[o.Out.Rev] {
				fail("two writes acknowledged with revision %d, one is %s", o.Out.Rev, o)
			}
			claimed[o.Out.Rev] = true
		}
	}
	resolved := make([][]*op, len(h.epochOps))
	ambiguous := 0
	for e, ops := range h.epochOps {
		to := final
		if e+1 < len(h.epochInit) {
			to = h.epochInit[e+1].rev
		}
		resolved[e] = resolveUnknown(ops, batches, values, claimed, h.epochInit[e].rev, to)
		for _, o := range resolved[e] {
			if o.Out.Unknown {
				ambiguous++
			}
		}
	}
	for _, b := range batches {
		if !claimed[b.Revision] && ambiguous == 0 {
			fail("revision %d was made by no request: %s", b.Revision, fmtBatch(b))
			break
		}
	}
	results := make([]linearizability, len(resolved))
	var lwg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for e, ops := range resolved {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[e] = checkLinearizable(h.epochInit[e], ops, h.cfg.LinearizabilityTimeout)
		}()
	}
	lwg.Wait()
	for e, ops := range resolved {
		res := results[e]
		switch res.result {
		case porcupine.Ok:
		case porcupine.Unknown:
			fail("epoch %d: linearizability check of %d operations timed out", e, len(ops))
		default:
			msg := res.String()
			path := filepath.Join(os.TempDir(), fmt.Sprintf("watchgate-linearizability-%d-epoch%d.html", h.cfg.Seed, e))
			if err := porcupine.VisualizePath(storeModel(h.epochInit[e]), res.info, path); err == nil {
				msg += "  visualization: " + path + "\n"
			}
			fail("epoch %d (from revision %d) is not linearizable:\n%s", e, h.epochInit[e].rev, msg)
		}
	}

	t.Logf("%.1fs: linearizability checked", time.Since(h.start).Seconds())
	s := h.stats
	t.Logf("seed %d: %.0fs, final revision %d, %d history revisions (%d pieces, %d revisions compared twice)",
		h.cfg.Seed, time.Since(h.start).Seconds(), final, len(hist.Batches()), h.hist.pieces, h.hist.compared)
	t.Logf("%s: %d kills (SIGKILL), %d restarts, %d epochs, %d client moves to another process; %d compactions (%d conflicts), %d history reads",
		h.dep.name(), s.Kills, s.Restarts, len(h.epochOps), h.moves.Load(), s.Compactions, s.CompactConflicts, s.Snapshots)
	if s.MemberKills > 0 {
		t.Logf("etcd: %d member kills (SIGKILL), %d of them the leader", s.MemberKills, s.LeaderKills)
	}
	t.Logf("requests: %d (%d answered, %d unknown outcome, %d precondition failed); %d reads at a revision (%d gone)",
		s.Ops, s.Acked, s.Unknown, s.Failed412, s.RangeAt, s.RangeAtGone)
	t.Logf("faults: %d proxy cuts, %d client cuts, %d stalls, %d watchers away; proxy %+v; choppy proxy %+v",
		s.ProxyCuts, s.ClientCuts, s.Stalls, s.Aways, ps, cs)
	t.Logf("watchers: %d watches, %d generations, %d reconnects, %d events, %d bookmarks, %d compacted, %d snapshot resets, %d client stalls",
		ws.Watchers, ws.Generations, ws.Reconnects, ws.Events, ws.Bookmarks, ws.Compactions, ws.Resets, ws.Stalls)
	return failed
}

// prefixEnd is the range end of a prefix read ("" reads every key).
func prefixEnd(prefix string) []byte { return kv.PrefixEnd([]byte(prefix)) }

// checkReadsAt checks every answered read at a revision against the
// history's state at that revision.
func checkReadsAt(batches []kv.Batch, reads []*op) []error {
	reads = slices.Clone(reads)
	slices.SortFunc(reads, func(a, b *op) int { return cmp.Compare(a.In.Rev, b.In.Rev) })
	state := map[string]kv.KeyValue{}
	bi := 0
	var errs []error
	for _, o := range reads {
		if o.Out.Status != 200 {
			continue
		}
		for bi < len(batches) && batches[bi].Revision <= o.In.Rev {
			for _, e := range batches[bi].Events {
				if e.Type == kv.EventDelete {
					delete(state, string(e.KV.Key))
				} else {
					state[string(e.KV.Key)] = e.KV
				}
			}
			bi++
		}
		var want []kv.KeyValue
		for k, v := range state {
			if strings.HasPrefix(k, o.In.Key) {
				want = append(want, v)
			}
		}
		slices.SortFunc(want, func(a, b kv.KeyValue) int { return bytes.Compare(a.Key, b.Key) })
		if err := sameState(o.Out.KVs, want); err != nil && len(errs) < 20 {
			errs = append(errs, fmt.Errorf("read at revision %d: %v: %s", o.In.Rev, err, o))
		}
	}
	return errs
}

// etcdBoundedConfig sizes the bounded run against the etcd deployment:
// gateways killed and kept down while their clients move to the others,
// etcd members killed (the leader every other time), and everything else
// as against one server.
func etcdBoundedConfig(seed uint64) config {
	c := boundedConfig(seed)
	c.Kills, c.MinReconnects, c.MinDuration, c.MaxDuration = 4, 200, 25*time.Second, 100*time.Second
	c.KillEvery = [2]time.Duration{2 * time.Second, 5 * time.Second}
	c.GatewayDown = [2]time.Duration{500 * time.Millisecond, 2 * time.Second}
	c.MemberKills = 2
	c.MemberKillEvery = [2]time.Duration{3 * time.Second, 6 * time.Second}
	c.MemberDown = [2]time.Duration{time.Second, 3 * time.Second}
	return c
}

func etcdSoakConfig(seed uint64) config {
	c := soakConfig(seed)
	c.Kills, c.MinReconnects = 60, 6000
	c.GatewayDown = [2]time.Duration{500 * time.Millisecond, 4 * time.Second}
	c.MemberKills = 40
	c.MemberKillEvery = [2]time.Duration{2 * time.Second, 8 * time.Second}
	c.MemberDown = [2]time.Duration{time.Second, 5 * time.Second}
	return c
}

// TestReliabilityEtcd runs the same workload, watchers and checks as
// TestReliability against the scale-out deployment: two watchgate
// gateways (--backend=etcd) in front of a real three-member etcd cluster.
// Its faults are that deployment's: a gateway killed with SIGKILL while
// watchers are attached (they move to the other gateway and resume from
// the revision they last saw; the gateway comes back a moment later),
// etcd members and the etcd leader killed and restarted, and the fault
// proxy's cuts, stalls and slices between clients and gateways. The
// history the checks use is read from etcd through its own client.
// WATCHGATE_SOAK=1 (or -soak) runs the long form.
func TestReliabilityEtcd(t *testing.T) {
	t.Parallel()
	seed := runSeed(t)
	cfg := etcdBoundedConfig(seed)
	mode := "bounded"
	if soak() {
		cfg, mode = etcdSoakConfig(seed), "soak"
	}
	if testing.Short() {
		cfg.Kills, cfg.MemberKills, cfg.MinReconnects, cfg.MinDuration, cfg.LongStall = 2, 1, 50, 10*time.Second, 0
	}
	env := ""
	if soak() {
		env = "WATCHGATE_SOAK=1 "
	}
	t.Logf("%s run, seed %d (rerun: %sgo test -race -run 'TestReliabilityEtcd$' ./test/reliability/ -seed %d)", mode, seed, env, seed)
	h := newHarness(t, cfg, etcdDeploymentOf(3, 2))
	if runHarness(t, h) {
		t.Errorf("seed %d failed; rerun with %sgo test -race -run 'TestReliabilityEtcd$' ./test/reliability/ -seed %d", seed, env, seed)
	}
}
