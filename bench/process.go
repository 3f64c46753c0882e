package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one server under test: a child process on loopback with its
// own temporary data directory, stopped (and its directory removed) by
// stop.
type process struct {
	name    string
	cmd     *exec.Cmd
	dir     string // temporary directory: data and the log
	logPath string
	addr    string // host:port of the client API
	exited  chan struct{}
	waitErr error
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startProcess runs bin with args, stdout and stderr to dir/log, and
// waits until ready succeeds (or the process exits, or timeout).
func startProcess(name, bin string, args []string, env []string, dir, addr string, ready func(ctx context.Context) error, timeout time.Duration) (*process, error) {
	logPath := filepath.Join(dir, "server.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = dir
	// Its own process group, so that a signal to the benchmark's terminal
	// does not reach it before the benchmark stops it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	logf.Close()
	p := &process{name: name, cmd: cmd, dir: dir, logPath: logPath, addr: addr, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		err := ready(rctx)
		rcancel()
		if err == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited before it was ready (%v); log:\n%s", name, p.waitErr, p.tail(20))
		case <-ctx.Done():
			p.stop()
			return nil, fmt.Errorf("%s not ready after %v: %v; log:\n%s", name, timeout, err, p.tail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pid is the server's process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, waits up to 15 s, then SIGKILL, and removes the
// temporary directory.
func (p *process) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	_ = os.RemoveAll(p.dir)
}

// alive reports an error if the process has exited.
func (p *process) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); log:\n%s", p.name, p.waitErr, p.tail(20))
	default:
		return nil
	}
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// memory is a process's resident memory from /proc/<pid>/status.
type memory struct {
	RSS, HWM int64 // VmRSS, VmHWM in bytes
}

// readMemory reads VmRSS and VmHWM of pid.
func readMemory(pid int) (memory, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &m.RSS
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &m.HWM
		default:
			continue
		}
		fields := strings.Fields(string(line))
		if len(fields) < 3 || fields[2] != "kB" {
			return memory{}, fmt.Errorf("unexpected line in /proc/%d/status: %q", pid, line)
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return memory{}, err
		}
		*dst = kb << 10
	}
	if m.RSS == 0 {
		return memory{}, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
	}
	return m, sc.Err()
}

// settledMemory reads the RSS of pid until it stops moving (two reads
// 500 ms apart within 1%), at most for limit.
func settledMemory(pid int, limit time.Duration) (memory, error) {
	deadline := time.Now().Add(limit)
	prev, err := readMemory(pid)
	if err != nil {
		return memory{}, err
	}
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		m, err := readMemory(pid)
		if err != nil {
			return memory{}, err
		}
		d := m.RSS - prev.RSS
		if d < 0 {
			d = -d
		}
		prev = m
		if d*100 <= m.RSS {
			break
		}
	}
	return prev, nil
}

// httpReady returns a readiness probe: GET url answers 200.
func httpReady(url string) func(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// cleanEnv is the benchmark's environment without variables that would
// configure the servers behind its back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "ETCD_") || strings.HasPrefix(kv, "WATCHGATE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// cpuTime is the user and system CPU time pid has used, from
// /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// selfCPU is the user and system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
