package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// profile starts `perf record -g` on the watchgate server p, when -perf
// is set, and returns the function that stops it and writes the report
// (perf report --no-children, top symbols) next to the data. For etcd and
// without -perf it does nothing.
func (e *env) profile(p *process, cas string) (stop func()) {
	if e.cfg.perfDir == "" || p == nil || p.name != "watchgate" {
		return func() {}
	}
	e.profiles++
	name := fmt.Sprintf("%s-%s-%d", e.scenario, strings.ReplaceAll(cas, " ", "_"), e.profiles)
	data := filepath.Join(e.cfg.perfDir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-g", "-F", "499", "-p", strconv.Itoa(p.pid()), "-o", data)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		e.logf("perf record: %v", err)
		return func() {}
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		out, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children",
			"--sort", "symbol", "--percent-limit", "0.5", "-g", "none").Output()
		if err != nil {
			e.logf("perf report %s: %v", data, err)
			return
		}
		txt := filepath.Join(e.cfg.perfDir, name+".txt")
		if err := os.WriteFile(txt, out, 0o644); err != nil {
			e.logf("%v", err)
			return
		}
		e.logf("profile: %s", txt)
	}
}
