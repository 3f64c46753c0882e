package reliability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/watchgate/watchgate/internal/testbin"
)

// buildBinary builds the watchgate binary once per test process (with
// -race under -server-race); $WATCHGATE_RELIABILITY_BIN names a binary to
// use instead.
func buildBinary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("WATCHGATE_RELIABILITY_BIN"); p != "" {
		return p // a binary built beforehand
	}
	if *serverRace {
		return testbin.Build(tb, "-race")
	}
	return testbin.Build(tb)
}

// server is one run of the watchgate binary.
type server struct {
	cmd    *exec.Cmd
	addr   string
	logs   *logSink
	exited chan struct{}
	err    error // the process's exit, after exited is closed
}

// logSink keeps the tail of a server's log (JSON lines on stderr) and
// notes the lines that show a crash or a data race.
type logSink struct {
	mu      sync.Mutex
	partial []byte
	tail    []string
	alarms  []string
}

const logTail = 200

func newLogSink() *logSink { return &logSink{} }

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.line(line)
	}
	return len(p), nil
}

func (l *logSink) line(line string) {
	l.tail = append(l.tail, line)
	if len(l.tail) > logTail {
		l.tail = l.tail[len(l.tail)-logTail:]
	}
	switch {
	case strings.Contains(line, "WARNING: DATA RACE"), strings.HasPrefix(line, "panic:"),
		strings.HasPrefix(line, "fatal error:"):
		l.alarms = append(l.alarms, line)
	}
	var m struct {
		Level string `json:"level"`
	}
	if json.Unmarshal([]byte(line), &m) != nil {
		return
	}
	if m.Level == "panic" || m.Level == "fatal" {
		l.alarms = append(l.alarms, line)
	}
}

// Tail returns the last lines of the log.
func (l *logSink) Tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tail...)
}

// Alarms returns the lines that show a crash or a data race.
func (l *logSink) Alarms() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.alarms...)
}

// startServer runs the binary on dataDir, listening on addr, and waits
// until GET /readyz answers 200. The log level is warn: the access log
// would cost more than the requests.
func startServer(ctx context.Context, bin, dataDir, addr string) (*server, error) {
	return startProcess(ctx, bin, addr, "--data", dataDir)
}

// startProcess runs the binary listening on addr with the flags args
// (the store's), and waits until GET /readyz answers 200.
func startProcess(ctx context.Context, bin, addr string, args ...string) (*server, error) {
	logs := newLogSink()
	cmd := exec.Command(bin, append([]string{"--addr", addr, "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=halt_on_error=0")
	cmd.Stdout = io.Discard
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr, logs: logs, exited: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	if err := waitReady(ctx, s); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// waitReady polls GET /readyz until it answers 200.
func waitReady(ctx context.Context, s *server) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get("http://" + s.addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("watchgate exited before it was ready: %v\n%s", s.err, strings.Join(s.logs.Tail(), "\n"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("watchgate not ready within 30s (last error %v)", err)
		}
	}
}

// kill sends SIGKILL and waits for the process to end.
func (s *server) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop asks for a graceful shutdown (SIGTERM) and waits for it; the
// process must exit with status 0 within timeout.
func (s *server) stop(timeout time.Duration) error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.kill()
		return fmt.Errorf("watchgate did not stop within %v of SIGTERM\n%s", timeout, strings.Join(s.logs.Tail(), "\n"))
	}
	if s.err != nil {
		return fmt.Errorf("watchgate exited with %v after SIGTERM\n%s", s.err, strings.Join(s.logs.Tail(), "\n"))
	}
	return nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
