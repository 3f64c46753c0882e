package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runCapacity is scenario 5: idle watches held by a fresh server and the
// server's memory per watch: WebSocket watches multiplexed on sockets,
// SSE streams over HTTP/2 (one watch each) and etcd watches on gRPC
// streams. Memory is the server's VmRSS (and VmHWM) from /proc.
func runCapacity(ctx context.Context, e *env) error {
	cfg := e.cfg
	cases := []struct {
		transport string
		n         int
	}{{"ws", cfg.capWS}, {"sse", cfg.capSSE}}
	if cfg.etcd {
		cases = append(cases, struct {
			transport string
			n         int
		}{"etcd", cfg.capEtcd})
	}
	for _, c := range cases {
		if c.n <= 0 {
			continue
		}
		if err := capacityCase(ctx, e, c.transport, c.n); err != nil {
			return fmt.Errorf("%s, %d watches: %w", c.transport, c.n, err)
		}
	}
	return nil
}

func capacityCase(ctx context.Context, e *env, transport string, n int) error {
	cfg := e.cfg
	srv := &servers{}
	var p *process
	var err error
	target := sysWatchgate + "/" + transport
	if transport == "etcd" {
		p, err = startEtcd(cfg)
		srv.etcd = p
		target = sysEtcd
	} else {
		p, err = startWatchgate(cfg)
		srv.wg = p
	}
	if err != nil {
		return err
	}
	defer p.stop()
	base, err := settledMemory(p.pid(), 5*time.Second)
	if err != nil {
		return err
	}
	f, err := newFleet(cfg, srv, transport, 0)
	if err != nil {
		return err
	}
	defer f.close()
	specs := make([]watchSpec, n)
	for i := range specs {
		specs[i] = watchSpec{key: "bench/cap/" + strconv.Itoa(i)}
	}
	stop := e.profile(p, "register")
	start := time.Now()
	err = f.add(ctx, specs)
	d := time.Since(start)
	stop()
	if err != nil {
		if m, merr := readMemory(p.pid()); merr == nil {
			e.logf("capacity %s: failed with RSS %.0f MiB", target, float64(m.RSS)/(1<<20))
		}
		return err
	}
	held, err := settledMemory(p.pid(), 20*time.Second)
	if err != nil {
		return err
	}
	if err := f.err(); err != nil {
		return err
	}
	if err := p.alive(); err != nil {
		return err
	}
	if cfg.pprofDir != "" && p.name == "watchgate" {
		e.memoryProfile(p, "capacity-"+transport+"-"+strconv.Itoa(n))
	}
	cas := formatCount(n) + " idle watches"
	perWatch := float64(held.RSS-base.RSS) / float64(n)
	e.logf("capacity %s: %d watches in %v; RSS %.0f → %.0f MiB (HWM %.0f MiB), %.0f bytes a watch",
		target, n, d.Round(time.Millisecond), mib(base.RSS), mib(held.RSS), mib(held.HWM), perWatch)
	e.res.add("capacity", cas, "server RSS", "MiB", false, target, mib(held.RSS))
	e.res.add("capacity", cas, "server peak RSS (VmHWM)", "MiB", false, target, mib(held.HWM))
	e.res.add("capacity", cas, "RSS per watch", "bytes", false, target, perWatch)
	e.res.add("capacity", cas, "registration", "watches/s", true, target, float64(n)/d.Seconds())
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// memoryProfile saves the server's heap profile (with the runtime's
// memory statistics) and goroutine count, and the `go tool pprof -top`
// of the heap in use, into the -pprof directory.
func (e *env) memoryProfile(p *process, name string) {
	base := "http://" + p.addr + "/debug/pprof/"
	for _, f := range []struct{ url, file string }{
		// gc=1 collects first: the runtime statistics at the end of the
		// text form then give the live heap and the stacks.
		{base + "heap?gc=1&debug=1", name + ".heap.txt"},
		{base + "heap", name + ".heap.pb.gz"},
		{base + "goroutine?debug=1", name + ".goroutine.txt"},
	} {
		if err := fetchProfile(f.url, filepath.Join(e.cfg.pprofDir, f.file)); err != nil {
			e.logf("pprof: %v", err)
			return
		}
	}
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "40", "-sample_index", "inuse_space",
		e.cfg.wgBin, filepath.Join(e.cfg.pprofDir, name+".heap.pb.gz"))
	cmd.Env = append(cleanEnv(), "GOTOOLCHAIN="+e.cfg.toolchain)
	out, err := cmd.Output()
	if err != nil {
		e.logf("go tool pprof: %v", err)
		return
	}
	txt := filepath.Join(e.cfg.pprofDir, name+".heap-top.txt")
	if err := os.WriteFile(txt, out, 0o644); err != nil {
		e.logf("%v", err)
		return
	}
	e.logf("memory profile: %s", txt)
	b, err := os.ReadFile(filepath.Join(e.cfg.pprofDir, name+".heap.txt"))
	if err != nil {
		return
	}
	stats := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = "); ok && strings.HasPrefix(line, "# ") {
			stats[k] = v
		}
	}
	if m, err := readMemory(p.pid()); err == nil {
		e.logf("after a GC: RSS %.0f MiB, live heap %s bytes, stacks %s bytes, heap in use %s bytes",
			mib(m.RSS), stats["HeapAlloc"], stats["Stack"], stats["HeapInuse"])
	}
}
