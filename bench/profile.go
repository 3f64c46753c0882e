package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// profile starts profiling the watchgate server p, with perf (-perf)
// and/or its own pprof endpoint (-pprof), and returns the function that
// stops and writes the reports. For etcd, and without either flag, it
// does nothing.
func (e *env) profile(p *process, cas string) (stop func()) {
	if p == nil || p.name != "watchgate" || (e.cfg.perfDir == "" && e.cfg.pprofDir == "") {
		return func() {}
	}
	e.profiles++
	name := fmt.Sprintf("%s-%s-%d", e.scenario, strings.NewReplacer(" ", "_", ",", "", "/", "_").Replace(cas), e.profiles)
	var stops []func()
	if e.cfg.perfDir != "" {
		stops = append(stops, e.perfRecord(p, name))
	}
	if e.cfg.pprofDir != "" {
		stops = append(stops, e.pprofRecord(p, name))
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// perfRecord runs `perf record -g` on p until stopped, then writes the
// report (perf report --no-children, top symbols) next to the data.
func (e *env) perfRecord(p *process, name string) func() {
	data := filepath.Join(e.cfg.perfDir, name+".perf.data")
	cmd := exec.Command("perf", "record", "-g", "-F", "499", "-p", strconv.Itoa(p.pid()), "-o", data)
	if err := cmd.Start(); err != nil {
		e.logf("perf record: %v", err)
		return func() {}
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	return func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		for _, mode := range []string{"self", "children"} {
			args := []string{"report", "-i", data, "--stdio", "--sort", "symbol", "--percent-limit", "0.5", "-g", "none"}
			if mode == "self" {
				args = append(args, "--no-children")
			} else {
				args = append(args, "--children")
			}
			out, err := exec.Command("perf", args...).Output()
			if err != nil {
				e.logf("perf report %s: %v", data, err)
				return
			}
			txt := filepath.Join(e.cfg.perfDir, name+".perf-"+mode+".txt")
			if err := os.WriteFile(txt, out, 0o644); err != nil {
				e.logf("%v", err)
				return
			}
			e.logf("profile: %s", txt)
		}
	}
}

// pprofRecord fetches one-second CPU profiles from p's /debug/pprof/profile
// back to back until stopped, then merges them with `go tool pprof -top`
// (flat and cumulative) into text reports next to them.
func (e *env) pprofRecord(p *process, name string) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var files []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			f := filepath.Join(e.cfg.pprofDir, fmt.Sprintf("%s.%03d.pb.gz", name, i))
			if err := fetchProfile("http://"+p.addr+"/debug/pprof/profile?seconds=1", f); err != nil {
				e.logf("pprof: %v", err)
				return
			}
			files = append(files, f)
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		if len(files) == 0 {
			return
		}
		for _, mode := range []string{"flat", "cum"} {
			args := []string{"tool", "pprof", "-top", "-nodecount", "60"}
			if mode == "cum" {
				args = append(args, "-cum")
			}
			args = append(append(args, e.cfg.wgBin), files...)
			cmd := exec.Command("go", args...)
			cmd.Env = append(cleanEnv(), "GOTOOLCHAIN="+e.cfg.toolchain)
			out, err := cmd.Output()
			if err != nil {
				e.logf("go tool pprof: %v", err)
				return
			}
			txt := filepath.Join(e.cfg.pprofDir, name+".pprof-"+mode+".txt")
			if err := os.WriteFile(txt, out, 0o644); err != nil {
				e.logf("%v", err)
				return
			}
			e.logf("profile: %s", txt)
		}
	}
}

func fetchProfile(url, path string) error {
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
