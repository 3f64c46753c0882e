package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary builds the watchgate binary once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "watchgate-e2e-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "watchgate")
		goCmd, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("no go command to build the binary: %w", err)
			return
		}
		out, err := exec.Command(goCmd, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syncBuffer collects a process's log safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a running watchgate binary.
type process struct {
	cmd    *exec.Cmd
	base   string
	logs   *syncBuffer
	exited chan struct{}
	err    error // of Wait, after exited is closed
}

// startBinary runs the binary on a loopback port with its store in dir,
// configured through the environment, and waits until it listens.
func startBinary(t *testing.T, dir string) *process {
	t.Helper()
	cmd := exec.Command(buildBinary(t))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WATCHGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "WATCHGATE_ADDR=127.0.0.1:0", "WATCHGATE_DATA="+dir, "WATCHGATE_LOG_LEVEL=info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: &syncBuffer{}, exited: make(chan struct{})}
	addr := make(chan string, 1)
	logsDone := make(chan struct{})
	go func() {
		scanLogs(stderr, addr, p.logs)
		close(logsDone)
	}()
	go func() {
		<-logsDone
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	select {
	case a, ok := <-addr:
		if !ok {
			<-p.exited
			t.Fatalf("the binary exited before listening: %v\n%s", p.err, p.logs.String())
		}
		p.base = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("the binary did not start:\n%s", p.logs.String())
	}
	return p
}

// wait waits for the process to exit, at most d.
func (p *process) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		t.Fatalf("the binary did not exit in %v:\n%s", d, p.logs.String())
		return nil
	}
}

// TestBinaryServesAndStops runs the built binary as a user would and stops
// it with SIGTERM.
func TestBinaryServesAndStops(t *testing.T) {
	p := startBinary(t, t.TempDir())
	client := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/hello", strings.NewReader("world"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	resp, err = client.Get(p.base + "/v1/kv/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "world" || resp.Header.Get("X-Revision") != "2" {
		t.Errorf("GET: %q, X-Revision %s", b, resp.Header.Get("X-Revision"))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
	}
	for _, msg := range []string{`"message":"shutting down"`, `"message":"store closed"`, `"message":"stopped"`} {
		if !strings.Contains(p.logs.String(), msg) {
			t.Errorf("log lacks %s:\n%s", msg, p.logs.String())
		}
	}
}

// TestRestartKeepsAcknowledgedWrites writes concurrently over HTTP, kills
// the server with SIGKILL in the middle, restarts it on the same data
// directory and checks that every write that was acknowledged (2xx) is
// there with its value.
func TestRestartKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	p := startBinary(t, dir)

	const writers = 16
	tr := &http.Transport{MaxIdleConnsPerHost: writers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		count atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w/%02d/%06d", g, i)
				val := fmt.Sprintf("value-%d-%d", g, i)
				req, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/"+key, strings.NewReader(val))
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
					count.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for count.Load() < 400 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	close(stop)
	wg.Wait()
	if len(acked) < 100 {
		t.Fatalf("only %d writes were acknowledged before the kill", len(acked))
	}
	tr.CloseIdleConnections()

	q := startBinary(t, dir)
	var missing []string
	for key, val := range acked {
		resp, err := client.Get(q.base + "/v1/kv/" + key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != val {
			missing = append(missing, fmt.Sprintf("%s: %d %q", key, resp.StatusCode, b))
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged writes lost after SIGKILL, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	resp, err := client.Get(q.base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Revision int64 `json:"revision"`
		Keys     int64 `json:"keys"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	// Every key was written once, so keys = revisions used; writes in
	// flight at the kill may have landed without their acknowledgement.
	if st.Keys < int64(len(acked)) || st.Revision != st.Keys+1 {
		t.Errorf("after restart: %d keys at revision %d, want >= %d keys at revision keys+1", st.Keys, st.Revision, len(acked))
	}
	t.Logf("%d acknowledged writes survived SIGKILL; %d keys on disk", len(acked), st.Keys)
	if err := q.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := q.wait(t, 20*time.Second); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
