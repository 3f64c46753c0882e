// Package faultproxy is a TCP proxy that breaks connections on purpose, for
// reliability tests: it forwards every accepted connection to a target
// address and, on request or at random, cuts connections (with a FIN or a
// reset), stalls one direction of a connection for a while, cuts a
// connection after a random number of bytes, and slices what it forwards
// into small pieces written one at a time.
//
// Every random decision comes from one generator seeded by Options.Seed, so
// a test that drives the proxy from one goroutine makes the same decisions
// for the same seed (the network's timing still varies).
package faultproxy

import (
	"cmp"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by calls on a closed Proxy.
var ErrClosed = errors.New("faultproxy: proxy is closed")

// Options configures a Proxy. The zero value forwards faithfully: no slicing,
// no automatic cuts.
type Options struct {
	// Seed seeds the proxy's random decisions.
	Seed uint64
	// Slice, when set, writes what each direction reads in pieces of 1 to
	// MaxSlice bytes (default 64), pausing up to SlicePause (default 0)
	// between pieces.
	Slice      bool
	MaxSlice   int
	SlicePause time.Duration
	// CutAfter, when positive, cuts each new connection after a random
	// number of bytes between 1 and CutAfter has gone from the target to
	// the client (a mid-message cut of a response or a stream).
	CutAfter int64
	// DialTimeout bounds the connection to the target (default 2s).
	DialTimeout time.Duration
}

// Stats counts what a Proxy did.
type Stats struct {
	Accepted   int64 // client connections accepted
	DialFailed int64 // connections whose target could not be reached
	Cuts       int64 // connections cut on purpose (Cut*, CutAfter)
	Stalls     int64 // stalls started
	BytesUp    int64 // client to target
	BytesDown  int64 // target to client
}

// Proxy forwards the connections it accepts to its target. Create it with
// New; Close stops it and closes every connection.
type Proxy struct {
	ln   net.Listener
	opts Options

	target atomic.Pointer[string]

	mu     sync.Mutex // guards the fields below
	rnd    *rand.Rand
	links  map[*link]struct{}
	closed bool

	wg sync.WaitGroup // the accept loop and every link's goroutines

	accepted, dialFailed, cuts, stalls, up, down atomic.Int64
}

// link is one proxied connection: the client's and the target's sides.
type link struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{} // closed by close
	// stallUntil holds, per direction (0 up, 1 down), the UnixNano time
	// before which the direction writes nothing.
	stallUntil [2]atomic.Int64
	// budget is the bytes left before a CutAfter cut; <0 disables.
	budget atomic.Int64
}

// New listens on a loopback port and forwards to target.
func New(target string, opts Options) (*Proxy, error) {
	if opts.MaxSlice <= 0 {
		opts.MaxSlice = 64
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 2 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, opts: opts, rnd: rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		links: map[*link]struct{}{}}
	p.target.Store(&target)
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections go; open ones are left alone.
func (p *Proxy) SetTarget(addr string) { p.target.Store(&addr) }

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), DialFailed: p.dialFailed.Load(), Cuts: p.cuts.Load(),
		Stalls: p.stalls.Load(), BytesUp: p.up.Load(), BytesDown: p.down.Load()}
}

// Conns is the number of open proxied connections.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		budget := int64(-1)
		if p.opts.CutAfter > 0 {
			budget = 1 + p.rnd.Int64N(p.opts.CutAfter)
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c, budget)
	}
}

// serve connects c to the target and copies both ways until either side
// ends or the link is cut.
func (p *Proxy) serve(c net.Conn, budget int64) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", *p.target.Load(), p.opts.DialTimeout)
	if err != nil {
		p.dialFailed.Add(1)
		reset(c)
		return
	}
	l := &link{client: c, server: s, done: make(chan struct{})}
	l.budget.Store(budget)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.links[l] = struct{}{}
	seed := p.rnd.Uint64()
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.pipe(l, 0, s, c, &p.up, rand.New(rand.NewPCG(seed, 1)))
	}()
	go func() {
		defer wg.Done()
		p.pipe(l, 1, c, s, &p.down, rand.New(rand.NewPCG(seed, 2)))
	}()
	wg.Wait()
	l.close(false)
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// pipe copies src to dst for direction dir. When src ends cleanly the
// write side of dst is closed (a half close); any error closes the link.
func (p *Proxy) pipe(l *link, dir int, dst, src net.Conn, count *atomic.Int64, rnd *rand.Rand) {
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if !p.forward(l, dir, dst, buf[:n], count, rnd) {
				l.close(false)
				return
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
					return
				}
			}
			l.close(false)
			return
		}
	}
}

// forward writes b to dst, honouring stalls, slicing and the cut budget.
// It reports false when the link must end.
func (p *Proxy) forward(l *link, dir int, dst net.Conn, b []byte, count *atomic.Int64, rnd *rand.Rand) bool {
	for len(b) > 0 {
		if until := l.stallUntil[dir].Load(); until > 0 {
			if d := time.Until(time.Unix(0, until)); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-l.done:
					t.Stop()
					return false
				}
			}
		}
		n := len(b)
		if p.opts.Slice {
			n = min(n, 1+rnd.IntN(p.opts.MaxSlice))
		}
		cut := false
		if dir == 1 {
			if left := l.budget.Load(); left >= 0 {
				if int64(n) >= left {
					n, cut = int(left), true
				}
				l.budget.Add(-int64(n))
			}
		}
		if n > 0 {
			w, err := dst.Write(b[:n])
			count.Add(int64(w))
			if err != nil {
				return false
			}
		}
		if cut {
			p.cuts.Add(1)
			l.close(rnd.IntN(2) == 0)
			return false
		}
		b = b[n:]
		if p.opts.Slice && p.opts.SlicePause > 0 && len(b) > 0 {
			time.Sleep(time.Duration(rnd.Int64N(int64(p.opts.SlicePause) + 1)))
		}
	}
	return true
}

// close ends both sides once; hard sends a TCP reset instead of a FIN.
func (l *link) close(hard bool) {
	l.once.Do(func() {
		close(l.done)
		if hard {
			reset(l.client)
			reset(l.server)
			return
		}
		l.client.Close()
		l.server.Close()
	})
}

// reset closes c with a TCP RST (SO_LINGER 0) rather than a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// pick returns up to n open links chosen at random.
func (p *Proxy) pick(n int) []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	all := make([]*link, 0, len(p.links))
	for l := range p.links {
		all = append(all, l)
	}
	// Map order is random but not seeded: sort by a stable property first.
	sortLinks(all)
	p.rnd.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	if n >= 0 && n < len(all) {
		all = all[:n]
	}
	return all
}

// CutRandom cuts up to n open connections chosen at random (n < 0: all),
// each with a FIN or a reset at random, and returns how many it cut.
func (p *Proxy) CutRandom(n int) int {
	links := p.pick(n)
	p.mu.Lock()
	hard := make([]bool, len(links))
	for i := range hard {
		hard[i] = p.rnd.IntN(2) == 0
	}
	p.mu.Unlock()
	for i, l := range links {
		l.close(hard[i])
	}
	p.cuts.Add(int64(len(links)))
	return len(links)
}

// CutAll cuts every open connection.
func (p *Proxy) CutAll() int { return p.CutRandom(-1) }

// StallRandom stops forwarding on up to n connections chosen at random,
// in one direction (down: target to client, which looks to the server like
// a client that stopped reading), for d. It returns how many it stalled.
func (p *Proxy) StallRandom(n int, down bool, d time.Duration) int {
	links := p.pick(n)
	dir := 0
	if down {
		dir = 1
	}
	until := time.Now().Add(d).UnixNano()
	for _, l := range links {
		l.stallUntil[dir].Store(until)
	}
	p.stalls.Add(int64(len(links)))
	return len(links)
}

// Close stops accepting, cuts every connection and waits for the proxy's
// goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.stallUntil[0].Store(0)
		l.stallUntil[1].Store(0)
		l.close(false)
	}
	p.wg.Wait()
	return err
}

// sortLinks orders links by their client's address, so that a seeded
// shuffle of the same set picks the same links.
func sortLinks(links []*link) {
	slices.SortFunc(links, func(a, b *link) int {
		return cmp.Compare(a.client.RemoteAddr().String(), b.client.RemoteAddr().String())
	})
}
