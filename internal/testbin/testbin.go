// Package testbin builds the watchgate command for tests that run it as a
// separate process (end-to-end, browser and reliability tests), once per
// test process and with the toolchain that runs the tests.
package testbin

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// builds caches one build per set of build flags.
var builds struct {
	mu   sync.Mutex
	dir  string
	done map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Build returns the path of the watchgate command built from this module
// with the given extra `go build` flags (for example "-race"), building it
// on the first call for those flags. A failed build fails tb. The binary
// lives in a temporary directory that Cleanup removes.
func Build(tb testing.TB, flags ...string) string {
	tb.Helper()
	key := strings.Join(flags, " ")
	builds.mu.Lock()
	if builds.done == nil {
		builds.done = map[string]*build{}
	}
	b := builds.done[key]
	if b == nil {
		b = &build{}
		builds.done[key] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.path, b.err = compile(len(builds.done), flags) })
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// compile builds the command into the shared temporary directory as
// watchgate-n.
func compile(n int, flags []string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	builds.mu.Lock()
	if builds.dir == "" {
		builds.dir, err = os.MkdirTemp("", "watchgate-testbin-")
	}
	dir := builds.dir
	builds.mu.Unlock()
	if err != nil {
		return "", err
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("testbin: no go command to build the binary: %w", err)
	}
	path := filepath.Join(dir, fmt.Sprintf("watchgate-%d", n))
	args := append([]string{"build", "-o", path}, flags...)
	cmd := exec.Command(goCmd, append(args, ".")...)
	cmd.Dir = root
	cmd.Env = os.Environ()
	if v := runtime.Version(); strings.HasPrefix(v, "go1.") {
		// The binary under test is built by the toolchain running the
		// tests, whatever the machine's default go is.
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbin: go build: %v\n%s", err, out)
	}
	return path, nil
}

// Cleanup removes the binaries Build made; call it from TestMain after
// m.Run.
func Cleanup() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir = ""
	}
	builds.done = nil
}

// moduleRoot is the directory of the go.mod above this package.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("testbin: cannot locate the source")
	}
	for dir := filepath.Dir(file); ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testbin: no go.mod above " + filepath.Dir(file))
		}
		dir = parent
	}
}

// LogBuffer collects a process's output; it is safe for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
