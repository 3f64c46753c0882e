package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/watchgate/watchgate/test/reliability/faultproxy"
)

// config sizes a run.
type config struct {
	Seed uint64
	// Kills is the number of SIGKILL cycles; the run also goes on until
	// the watchers reconnected MinReconnects times and for MinDuration.
	Kills         int
	MinReconnects int
	MinDuration   time.Duration
	// MaxDuration ends the run even if the targets were not reached
	// (which fails it).
	MaxDuration time.Duration
	// KillEvery bounds the time from a restart to the next kill.
	KillEvery [2]time.Duration
	// CutEvery bounds the time between proxy cuts of one connection;
	// ClientCutEvery between client-side cuts of one watcher.
	CutEvery, ClientCutEvery [2]time.Duration
	// StallEvery bounds the time between stalls (a proxy direction, or a
	// watcher that stops reading, or goes away for a while).
	StallEvery [2]time.Duration
	// LongStall is how long one WebSocket client stops reading once per
	// run: over the server's write timeout, so the server must cut it.
	LongStall time.Duration
	// CompactEvery bounds the time between compactions.
	CompactEvery [2]time.Duration
	// Writers (half of them through the proxy) and Readers.
	Writers, Readers int
	// LinearizabilityTimeout bounds porcupine per epoch.
	LinearizabilityTimeout time.Duration

	// Of a deployment of several gateways: GatewayDown bounds how long a
	// killed gateway stays down (its watchers and clients move to the
	// others meanwhile); zero restarts it at once.
	GatewayDown [2]time.Duration
	// Of a deployment with an etcd cluster: MemberKills is the number of
	// SIGKILLs of an etcd member (every other one the leader), one every
	// MemberKillEvery, each down for MemberDown.
	MemberKills     int
	MemberKillEvery [2]time.Duration
	MemberDown      [2]time.Duration
}

func boundedConfig(seed uint64) config {
	return config{
		Seed: seed, Kills: 6, MinReconnects: 300, MinDuration: 30 * time.Second, MaxDuration: 150 * time.Second,
		KillEvery: [2]time.Duration{2 * time.Second, 7 * time.Second},
		CutEvery:  [2]time.Duration{50 * time.Millisecond, 250 * time.Millisecond}, ClientCutEvery: [2]time.Duration{200 * time.Millisecond, 800 * time.Millisecond},
		StallEvery: [2]time.Duration{500 * time.Millisecond, 2 * time.Second}, LongStall: 12 * time.Second,
		CompactEvery: [2]time.Duration{1500 * time.Millisecond, 4 * time.Second},
		Writers:      4, Readers: 2, LinearizabilityTimeout: 2 * time.Minute,
	}
}

func soakConfig(seed uint64) config {
	c := boundedConfig(seed)
	c.Kills, c.MinReconnects, c.MinDuration, c.MaxDuration = 100, 10000, 5*time.Minute, 3*time.Hour
	c.KillEvery = [2]time.Duration{2 * time.Second, 10 * time.Second}
	c.CutEvery = [2]time.Duration{20 * time.Millisecond, 120 * time.Millisecond}
	c.ClientCutEvery = [2]time.Duration{50 * time.Millisecond, 300 * time.Millisecond}
	c.LinearizabilityTimeout = 10 * time.Minute
	return c
}

// runStats counts what a run did.
type runStats struct {
	Kills, Restarts, Compactions, CompactConflicts, Snapshots int
	ProxyCuts, ClientCuts, Stalls, Aways                      int
	Ops, Acked, Unknown, Failed412, RangeAt, RangeAtGone      int
	MemberKills, LeaderKills                                  int
}

// harness runs the server and everything that drives it.
type harness struct {
	t     testing.TB
	cfg   config
	start time.Time
	tmp   string

	dep   deployment
	ps    *procSet // dep.procs()
	proxy *faultproxy.Proxy
	// moves counts the connections of a client that went to another
	// process than its last one.
	moves atomic.Int64

	// gate: every request holds it for reading; a restart holds it for
	// writing, so that no request spans two server runs (epochs).
	gate  sync.RWMutex
	epoch int // guarded by gate

	mu sync.Mutex // guards the fields below
	// setupOps wrote the static keys before the run.
	setupOps  []*op
	epochOps  [][]*op
	epochInit []*storeState
	rangeAt   []*op
	breaches  []string
	stats     runStats
	// maxSeen is the highest revision any answer showed: it must survive
	// every crash.
	maxSeen int64
	// compactTo is the highest compaction asked; reads below it may be 410.
	compactTo int64

	hist *historyLog

	transports []*http.Transport
	direct     *http.Client // REST, HTTP/1.1, straight to the server
	control    *restClient  // the harness's own requests

	sse     []*sseWatcher
	sockets []*wsSocket
	logs    []*watchLog

	compactNow chan struct{}
}

// newHarness prepares a run against the deployment dep makes (not
// started yet).
func newHarness(t testing.TB, cfg config, dep func(h *harness, bin string) deployment) *harness {
	h := &harness{t: t, cfg: cfg, start: time.Now(),
		tmp: t.TempDir(), hist: newHistoryLog(), compactNow: make(chan struct{}, 1),
		epochOps: [][]*op{nil}}
	h.direct = h.httpClient(false, 10*time.Second)
	h.dep = dep(h, buildBinary(t))
	h.ps = h.dep.procs()
	h.control = h.rest(h.direct, h.serverBase)
	return h
}

// kvDeploymentOf and etcdDeploymentOf make the deployments for
// newHarness.
func kvDeploymentOf(h *harness, bin string) deployment {
	return newKVDeployment(bin, h.tmp, h.direct)
}

func etcdDeploymentOf(members, gateways int) func(h *harness, bin string) deployment {
	return func(h *harness, bin string) deployment {
		return newEtcdDeployment(h.t, bin, members, gateways, func() int64 {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.compactTo
		})
	}
}

func (h *harness) rest(c *http.Client, base func() string) *restClient {
	return &restClient{c: c, base: base, unavailableOK: h.dep.unavailableOK()}
}

func (h *harness) now() int64 { return int64(time.Since(h.start)) }

// serverBase is the base URL of the first process up.
func (h *harness) serverBase() string { return "http://" + h.ps.pick(0) }

// proxyBase points the proxy at the second process up and returns its
// base URL.
func (h *harness) proxyBase() string {
	h.proxy.SetTarget(h.ps.pick(1))
	return "http://" + h.proxy.Addr()
}

// processBase returns the base URL function of a client that prefers
// process pref (the next one up when it is down), through proxy when it
// is not nil; it counts the client's moves.
func (h *harness) processBase(pref int, proxy *faultproxy.Proxy) func() string {
	var mu sync.Mutex
	last := ""
	return func() string {
		addr := h.ps.pick(pref)
		mu.Lock()
		if last != "" && addr != last {
			h.moves.Add(1)
		}
		last = addr
		mu.Unlock()
		if proxy != nil {
			proxy.SetTarget(addr)
			return "http://" + proxy.Addr()
		}
		return "http://" + addr
	}
}

// httpClient returns a client on a transport of its own: HTTP/1.1, or
// cleartext HTTP/2 with prior knowledge.
func (h *harness) httpClient(h2c bool, timeout time.Duration) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, Protocols: new(http.Protocols)}
	if h2c {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	h.transports = append(h.transports, tr)
	return &http.Client{Transport: tr, Timeout: timeout}
}

func (h *harness) breach(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.breaches) < 50 {
		h.breaches = append(h.breaches, fmt.Sprintf("%.3fs ", time.Since(h.start).Seconds())+fmt.Sprintf(format, args...))
	}
}

func (h *harness) seen(rev int64) {
	h.mu.Lock()
	h.maxSeen = max(h.maxSeen, rev)
	h.mu.Unlock()
}

// record keeps a request's outcome for the checks.
func (h *harness) record(o *op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stats.Ops++
	switch {
	case o.Out.Unknown:
		h.stats.Unknown++
	default:
		h.stats.Acked++
		if o.Out.Status == 412 {
			h.stats.Failed412++
		}
	}
	if o.In.Kind == opRangeAt {
		if o.Out.Unknown {
			return
		}
		h.stats.RangeAt++
		if o.Out.Status == 410 {
			h.stats.RangeAtGone++
			if o.In.Rev >= o.Out.Compact && o.Out.Compact > 0 {
				h.breaches = append(h.breaches, fmt.Sprintf("410 for a read at %d, compact revision %d: %s", o.In.Rev, o.Out.Compact, o))
			}
		}
		h.rangeAt = append(h.rangeAt, o)
		return
	}
	if o.Out.Unknown && (o.In.Kind == opGet || o.In.Kind == opRange) {
		return // a read whose answer was lost changed nothing
	}
	h.epochOps[o.Epoch] = append(h.epochOps[o.Epoch], o)
}

// client issues generated requests until ctx ends.
func (h *harness) client(ctx context.Context, id int, rc *restClient, readOnly bool) {
	g := newOpGen(id, h.cfg.Seed, readOnly)
	for ctx.Err() == nil {
		in := g.next()
		h.gate.RLock()
		epoch := h.epoch
		call := h.now()
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := rc.exec(octx, &in)
		cancel()
		ret := h.now()
		h.gate.RUnlock()
		if errors.Is(err, errNotSent) {
			sleepCtx(ctx, time.Duration(5+g.rnd.IntN(20))*time.Millisecond)
			continue
		}
		if err != nil {
			h.breach("client %d: %v", id, err)
			if !out.Unknown {
				continue
			}
		}
		shrinkInput(&in)
		o := &op{Client: id, Epoch: epoch, Call: call, Return: ret, In: in, Out: out}
		if out.Unknown {
			o.Return = -1
		} else if in.Kind != opRangeAt || out.Status == 200 {
			h.seen(out.Rev)
		}
		h.record(o)
		g.observe(o)
		if out.Unknown {
			sleepCtx(ctx, time.Duration(5+g.rnd.IntN(30))*time.Millisecond)
		}
	}
}

// kill kills process i (SIGKILL) and cuts every connection through the
// proxy.
func (h *harness) kill(i int) {
	h.ps.kill(i)
	h.mu.Lock()
	h.stats.Kills++
	h.mu.Unlock()
	h.proxy.CutAll()
}

// restart starts process i again once every request in flight ended,
// checks that no revision an answer showed was lost, and reads the whole
// keyspace: the state that ends one epoch and starts the next.
func (h *harness) restart(ctx context.Context, i int) error {
	began := time.Now()
	defer func() {
		h.t.Logf("%.3fs: restart of process %d took %v", time.Since(h.start).Seconds(), i, time.Since(began).Round(time.Millisecond))
	}()
	h.gate.Lock()
	defer h.gate.Unlock()
	if err := h.ps.start(ctx, i); err != nil {
		return err
	}
	h.mu.Lock()
	h.stats.Restarts++
	maxSeen := h.maxSeen
	h.mu.Unlock()
	var (
		call, ret, rev int64
		kvs            []kvRec
		err            error
	)
	for attempt := 0; attempt < 40; attempt++ {
		call = h.now()
		rev, kvs, err = h.control.rangeAll(ctx, "")
		ret = h.now()
		if err == nil || ctx.Err() != nil {
			break
		}
		sleepCtx(ctx, 250*time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("reading the keyspace after the restart: %w", err)
	}
	if rev < maxSeen {
		h.breach("after restart %d the revision is %d, but revision %d was shown before the kill: acknowledged or read state lost",
			h.stats.Kills, rev, maxSeen)
	}
	h.seen(rev)
	kvs = withoutStatic(kvs)
	final := &op{Client: h.cfg.Writers + h.cfg.Readers, Epoch: h.epoch, Call: call, Return: ret,
		In:  opInput{Kind: opRange, Key: ""},
		Out: opOutput{Status: 200, Rev: rev, KVs: kvs}}
	h.mu.Lock()
	h.epochOps[h.epoch] = append(h.epochOps[h.epoch], final)
	h.epochOps = append(h.epochOps, nil)
	h.epochInit = append(h.epochInit, stateFromRange(rev, kvs))
	h.mu.Unlock()
	h.epoch++
	return nil
}

// compactOnce adds the history so far to the record (from a snapshot, or
// from etcd), and compacts at a revision the record covers.
func (h *harness) compactOnce(ctx context.Context, rnd *rand.Rand) {
	rev, compact, err := h.dep.record(ctx, h.hist, 200)
	if err != nil {
		if !errors.Is(err, errDown) {
			h.breach("history before compaction: %v", err)
		}
		return
	}
	h.mu.Lock()
	h.stats.Snapshots++
	h.mu.Unlock()
	if rev <= compact+1 {
		return
	}
	// Mostly close to the head, so that watchers that were away a moment
	// are compacted; sometimes far behind it.
	target := rev - rnd.Int64N(min(rev-compact, 50))
	if rnd.IntN(4) == 0 {
		target = compact + 1 + rnd.Int64N(rev-compact)
	}
	h.mu.Lock()
	h.compactTo = max(h.compactTo, target) // also when the answer is lost
	h.mu.Unlock()
	status, err := h.control.compact(ctx, target)
	if err != nil {
		if errors.Is(err, errContract) {
			h.breach("%v", err)
		}
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.compactTo = max(h.compactTo, target)
	if status == http.StatusOK {
		h.stats.Compactions++
	} else {
		h.stats.CompactConflicts++
	}
}

// compactor compacts every CompactEvery, and at once when asked.
func (h *harness) compactor(ctx context.Context) {
	rnd := rand.New(rand.NewPCG(h.cfg.Seed, 3))
	for ctx.Err() == nil {
		t := time.NewTimer(between(rnd, h.cfg.CompactEvery))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-h.compactNow:
			t.Stop()
		}
		h.compactOnce(ctx, rnd)
	}
}

func between(rnd *rand.Rand, b [2]time.Duration) time.Duration {
	return b[0] + time.Duration(rnd.Int64N(int64(b[1]-b[0])+1))
}

// reconnects is the watchers' reconnect count so far.
func (h *harness) reconnects() int {
	n := 0
	for _, l := range h.logs {
		n += l.stats().Reconnects
	}
	return n
}

// faults injects faults until the run's targets are met (or ctx ends, or
// MaxDuration passes). It returns an error only when the server cannot be
// restarted.
func (h *harness) faults(ctx context.Context) error {
	rnd := rand.New(rand.NewPCG(h.cfg.Seed, 5))
	nextKill := time.Now().Add(between(rnd, h.cfg.KillEvery))
	nextCut := time.Now().Add(between(rnd, h.cfg.CutEvery))
	nextClientCut := time.Now().Add(between(rnd, h.cfg.ClientCutEvery))
	nextStall := time.Now().Add(between(rnd, h.cfg.StallEvery))
	longStallAt := time.Now().Add(between(rnd, [2]time.Duration{5 * time.Second, 20 * time.Second}))
	longStallDone := h.cfg.LongStall == 0 || len(h.sockets) == 0
	var compactAt time.Time
	// A killed process waiting for its restart, and an etcd member down.
	downProc, downMember := -1, -1
	var restartAt, memberUpAt time.Time
	members, _ := h.dep.(*etcdDeployment)
	nextMember := time.Now().Add(between(rnd, h.cfg.MemberKillEvery))
	if members == nil {
		nextMember = time.Now().Add(1000 * time.Hour)
	}
	loops := 0
	defer func() { h.t.Logf("fault loop: %d rounds", loops) }()
	nextReport := time.Now().Add(30 * time.Second)
	for {
		loops++
		if time.Now().After(nextReport) {
			h.mu.Lock()
			st := h.stats
			h.mu.Unlock()
			h.t.Logf("%.0fs: %d kills, %d reconnects, %d requests, %d compactions so far",
				time.Since(h.start).Seconds(), st.Kills, h.reconnects(), st.Ops, st.Compactions)
			nextReport = time.Now().Add(30 * time.Second)
		}
		for _, p := range h.ps.reap() {
			h.breach("%s", p)
		}
		h.mu.Lock()
		kills, memberKills := h.stats.Kills, h.stats.MemberKills
		h.mu.Unlock()
		if members == nil {
			memberKills = h.cfg.MemberKills
		}
		elapsed := time.Since(h.start)
		if kills >= h.cfg.Kills && memberKills >= h.cfg.MemberKills && downProc < 0 && downMember < 0 &&
			h.reconnects() >= h.cfg.MinReconnects && elapsed >= h.cfg.MinDuration && longStallDone {
			return nil
		}
		if elapsed > h.cfg.MaxDuration {
			return fmt.Errorf("run targets not reached in %v: %d kills of %d, %d etcd member kills of %d, %d reconnects of %d",
				h.cfg.MaxDuration, kills, h.cfg.Kills, memberKills, h.cfg.MemberKills, h.reconnects(), h.cfg.MinReconnects)
		}
		wake := earliest(nextCut, nextClientCut, nextStall)
		if downProc >= 0 {
			wake = earliest(wake, restartAt)
		} else {
			wake = earliest(wake, nextKill)
		}
		if downMember >= 0 {
			wake = earliest(wake, memberUpAt)
		} else {
			wake = earliest(wake, nextMember)
		}
		if !longStallDone {
			wake = earliest(wake, longStallAt)
		}
		if !compactAt.IsZero() {
			wake = earliest(wake, compactAt)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(wake)):
		}
		now := time.Now()
		switch {
		case downProc >= 0:
			if now.After(restartAt) {
				if err := h.restart(ctx, downProc); err != nil {
					return err
				}
				downProc = -1
				nextKill = time.Now().Add(between(rnd, h.cfg.KillEvery))
			}
		case now.After(nextKill) && kills < h.cfg.Kills:
			i := rnd.IntN(h.ps.n())
			h.t.Logf("%.3fs: SIGKILL of process %d", time.Since(h.start).Seconds(), i)
			h.kill(i)
			downProc, restartAt = i, time.Now()
			if h.cfg.GatewayDown[1] > 0 {
				restartAt = restartAt.Add(between(rnd, h.cfg.GatewayDown))
				continue
			}
			if err := h.restart(ctx, downProc); err != nil {
				return err
			}
			downProc = -1
			nextKill = time.Now().Add(between(rnd, h.cfg.KillEvery))
		case now.After(nextKill):
			nextKill = now.Add(time.Hour)
		}
		switch {
		case downMember >= 0:
			if now.After(memberUpAt) {
				began := time.Now()
				members.restartMember(downMember)
				h.t.Logf("%.3fs: etcd member %d back, took %v", time.Since(h.start).Seconds(), downMember, time.Since(began).Round(time.Millisecond))
				downMember = -1
				nextMember = time.Now().Add(between(rnd, h.cfg.MemberKillEvery))
			}
		case now.After(nextMember) && memberKills < h.cfg.MemberKills:
			leader := memberKills%2 == 0
			downMember = members.killMember(leader, rnd.IntN(2))
			memberUpAt = time.Now().Add(between(rnd, h.cfg.MemberDown))
			h.mu.Lock()
			h.stats.MemberKills++
			if leader {
				h.stats.LeaderKills++
			}
			h.mu.Unlock()
			h.t.Logf("%.3fs: SIGKILL of etcd member %d (leader %v)", time.Since(h.start).Seconds(), downMember, leader)
		case now.After(nextMember):
			nextMember = now.Add(1000 * time.Hour)
		}
		if now.After(nextCut) {
			n := h.proxy.CutRandom(1)
			h.mu.Lock()
			h.stats.ProxyCuts += n
			h.mu.Unlock()
			nextCut = now.Add(between(rnd, h.cfg.CutEvery))
		}
		if now.After(nextClientCut) {
			h.clientCut(rnd)
			nextClientCut = now.Add(between(rnd, h.cfg.ClientCutEvery))
		}
		if now.After(nextStall) {
			if at := h.stall(rnd); !at.IsZero() && compactAt.IsZero() {
				compactAt = at
			}
			nextStall = now.Add(between(rnd, h.cfg.StallEvery))
		}
		if !compactAt.IsZero() && now.After(compactAt) {
			select {
			case h.compactNow <- struct{}{}:
			default:
			}
			compactAt = time.Time{}
		}
		if !longStallDone && now.After(longStallAt) {
			s := h.sockets[rnd.IntN(len(h.sockets))]
			select {
			case s.pause <- h.cfg.LongStall:
				longStallDone = true
			default:
				longStallAt = now.Add(time.Second)
			}
		}
	}
}

// clientCut drops one watcher's connection from the client side.
func (h *harness) clientCut(rnd *rand.Rand) {
	n := len(h.sse) + len(h.sockets)
	if n == 0 {
		return
	}
	i := rnd.IntN(n)
	var c chan struct{}
	if i < len(h.sse) {
		c = h.sse[i].cut
	} else {
		c = h.sockets[i-len(h.sse)].cut
	}
	select {
	case c <- struct{}{}:
		h.mu.Lock()
		h.stats.ClientCuts++
		h.mu.Unlock()
	default:
	}
}

// stall makes a proxy direction stall, a watcher stop reading, or a
// watcher go away for a while. For a watcher that goes away it returns
// when the caller should compact.
func (h *harness) stall(rnd *rand.Rand) (compactAt time.Time) {
	d := time.Duration(200+rnd.IntN(2800)) * time.Millisecond
	n := len(h.sse) + len(h.sockets)
	i := rnd.IntN(max(n, 1))
	var pause, away chan time.Duration
	var cut chan struct{}
	if i < len(h.sse) {
		pause, away, cut = h.sse[i].pause, h.sse[i].away, h.sse[i].cut
	} else if n > 0 {
		s := h.sockets[i-len(h.sse)]
		pause, away, cut = s.pause, s.away, s.cut
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch r := rnd.IntN(3); {
	case r == 0 || n == 0:
		h.stats.Stalls += h.proxy.StallRandom(1, rnd.IntN(3) > 0, d)
	case r == 1:
		select {
		case pause <- d:
			h.stats.Stalls++
		default:
		}
	default:
		select {
		case away <- d:
			h.stats.Aways++
			select {
			case cut <- struct{}{}:
			default:
			}
			// Mostly while it is away, so that it resumes into a
			// compaction; sometimes as it comes back and catches up.
			return time.Now().Add(time.Duration(float64(d) * (0.3 + 0.8*rnd.Float64())))
		default:
		}
	}
	return time.Time{}
}

func earliest(ts ...time.Time) time.Time {
	e := ts[0]
	for _, t := range ts[1:] {
		if t.Before(e) {
			e = t
		}
	}
	return e
}

// setup writes the static keys and reads the state the first epoch starts
// from.
func (h *harness) setup(ctx context.Context) error {
	for _, in := range staticOps() {
		call := h.now()
		out, err := h.control.exec(ctx, &in)
		if err != nil || out.Unknown || !out.Succeeded {
			return fmt.Errorf("writing the static keys: %v (%s)", err, describeOutput(&out))
		}
		shrinkInput(&in)
		h.setupOps = append(h.setupOps, &op{Client: -1, Call: call, Return: h.now(), In: in, Out: out})
	}
	rev, kvs, err := h.control.rangeAll(ctx, "")
	if err != nil {
		return err
	}
	h.epochInit = []*storeState{stateFromRange(rev, withoutStatic(kvs))}
	h.seen(rev)
	return nil
}
