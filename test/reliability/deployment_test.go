package reliability

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// deployment is what a run drives: the watchgate processes the clients
// talk to (one server on its own data file, or a tier of gateways) and the
// store behind them, whose history the checks read.
type deployment interface {
	// name says what it is, for the log.
	name() string
	// procs is its watchgate processes.
	procs() *procSet
	// record adds the history up to now to hl (it is called before every
	// compaction, which only ever goes up to what was recorded) and
	// returns the revision recorded up to and the compact revision.
	record(ctx context.Context, hl *historyLog, overlap int64) (rev, compact int64, err error)
	// final adds the whole history to hl after the processes stopped and
	// returns the last revision.
	final(ctx context.Context, hl *historyLog) (rev int64, err error)
	// unavailableOK reports whether a 503 is a legal answer to a request
	// (the store behind the gateways may be without a leader for a
	// moment); the outcome is then unknown.
	unavailableOK() bool
}

// procSet is the watchgate processes of a deployment, each on its own
// address. A process that is down keeps its slot until it is started
// again. Its methods are safe for concurrent use.
type procSet struct {
	bin  string
	args func(i int) []string // the store flags of process i

	mu     sync.Mutex // guards the fields below
	slots  []procSlot
	alarms []string // of processes killed so far
}

type procSlot struct {
	addr string
	srv  *server // nil when down
}

func newProcSet(bin string, n int, args func(i int) []string) *procSet {
	return &procSet{bin: bin, args: args, slots: make([]procSlot, n)}
}

// n is the number of processes.
func (p *procSet) n() int { return len(p.slots) }

// addr returns process i's address and whether it is up.
func (p *procSet) addr(i int) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.slots[i]
	return s.addr, s.srv != nil
}

// pick returns the address of process pref if it is up, else of the next
// one up (else pref's).
func (p *procSet) pick(pref int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.slots)
	for k := range n {
		if s := p.slots[(pref+k)%n]; s.srv != nil {
			return s.addr
		}
	}
	return p.slots[pref%n].addr
}

// up is the number of processes up.
func (p *procSet) up() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.slots {
		if s.srv != nil {
			n++
		}
	}
	return n
}

// start starts process i, on its last address when it had one and that
// is still free.
func (p *procSet) start(ctx context.Context, i int) error {
	p.mu.Lock()
	last := p.slots[i].addr
	running := p.slots[i].srv != nil
	p.mu.Unlock()
	if running {
		return fmt.Errorf("process %d is already running", i)
	}
	var lastErr error
	for attempt := range 5 {
		addr := last
		if addr == "" || attempt > 0 {
			var err error
			if addr, err = freeAddr(); err != nil {
				return err
			}
		}
		srv, err := startProcess(ctx, p.bin, addr, p.args(i)...)
		if err == nil {
			p.mu.Lock()
			p.slots[i] = procSlot{addr: addr, srv: srv}
			p.mu.Unlock()
			return nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return err
		}
	}
	return lastErr
}

// startAll starts every process.
func (p *procSet) startAll(ctx context.Context) error {
	for i := range p.slots {
		if err := p.start(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// kill kills process i with SIGKILL and waits for it to exit.
func (p *procSet) kill(i int) {
	p.mu.Lock()
	srv := p.slots[i].srv
	p.slots[i].srv = nil
	p.mu.Unlock()
	if srv == nil {
		return
	}
	srv.kill()
	if a := srv.logs.Alarms(); len(a) > 0 {
		p.mu.Lock()
		p.alarms = append(p.alarms, fmt.Sprintf("process %d: %s", i, strings.Join(a, "\n")))
		p.mu.Unlock()
	}
}

// problems returns the log lines that show a crash or a data race, of
// every process so far, and names the processes that exited although
// nobody stopped them.
func (p *procSet) problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]string(nil), p.alarms...)
	for i, s := range p.slots {
		if s.srv == nil {
			continue
		}
		if a := s.srv.logs.Alarms(); len(a) > 0 {
			out = append(out, fmt.Sprintf("process %d: %s", i, strings.Join(a, "\n")))
		}
		select {
		case <-s.srv.exited:
			out = append(out, fmt.Sprintf("process %d exited on its own (%v):\n%s", i, s.srv.err, strings.Join(s.srv.logs.Tail(), "\n")))
		default:
		}
	}
	return out
}

// reap notes the processes that exited although nobody stopped them,
// marks them down (so that they can be started again) and describes each.
func (p *procSet) reap() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for i := range p.slots {
		s := &p.slots[i]
		if s.srv == nil {
			continue
		}
		select {
		case <-s.srv.exited:
			out = append(out, fmt.Sprintf("process %d exited on its own (%v):\n%s", i, s.srv.err, strings.Join(s.srv.logs.Tail(), "\n")))
			s.srv = nil
		default:
		}
	}
	return out
}

// stopAll stops every process that is up with SIGTERM; each must exit
// with status 0 within timeout.
func (p *procSet) stopAll(timeout time.Duration) error {
	p.mu.Lock()
	var srvs []*server
	for i := range p.slots {
		if s := p.slots[i].srv; s != nil {
			srvs = append(srvs, s)
			p.slots[i].srv = nil
		}
	}
	p.mu.Unlock()
	var errs []error
	for i, s := range srvs {
		errs = append(errs, s.stop(timeout))
		if a := s.logs.Alarms(); len(a) > 0 {
			p.mu.Lock()
			p.alarms = append(p.alarms, fmt.Sprintf("process %d: %s", i, strings.Join(a, "\n")))
			p.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// kvDeployment is one watchgate server on its own data directory: killing
// it stops the service until it is back.
type kvDeployment struct {
	ps     *procSet
	data   string
	direct *http.Client
	tmp    string
	n      int // snapshots so far
}

func newKVDeployment(bin, tmp string, direct *http.Client) *kvDeployment {
	d := &kvDeployment{data: filepath.Join(tmp, "data"), tmp: tmp, direct: direct}
	d.ps = newProcSet(bin, 1, func(int) []string { return []string{"--data", d.data} })
	return d
}

func (d *kvDeployment) name() string        { return "one server (kv store)" }
func (d *kvDeployment) procs() *procSet     { return d.ps }
func (d *kvDeployment) unavailableOK() bool { return false }

// record downloads a snapshot (GET /v1/snapshot) and reads its history.
func (d *kvDeployment) record(ctx context.Context, hl *historyLog, overlap int64) (rev, compact int64, err error) {
	d.n++
	dir := filepath.Join(d.tmp, fmt.Sprintf("snapshot-%d", d.n))
	defer os.RemoveAll(dir)
	addr, _ := d.ps.addr(0)
	snapRev, err := downloadSnapshot(ctx, d.direct, "http://"+addr, dir)
	if err != nil {
		return 0, 0, errDown // the server was killed, most likely
	}
	rev, compact, err = hl.readFile(ctx, dir, overlap)
	if err == nil && rev != snapRev {
		err = fmt.Errorf("snapshot announced revision %d but holds %d", snapRev, rev)
	}
	return rev, compact, err
}

// final reads the data file the server left.
func (d *kvDeployment) final(ctx context.Context, hl *historyLog) (int64, error) {
	rev, _, err := hl.readFile(ctx, d.data, 1000)
	return rev, err
}

// errDown is a history read that failed because the deployment was down
// for a moment: not a finding.
var errDown = errors.New("deployment down")
