package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// etcdVersionWant is the etcd release the comparison is made against
// (Debian's etcd-server package).
const etcdVersionWant = "3.4."

// moduleRoot finds the watchgate module's directory: dir or the nearest
// parent whose go.mod declares the module.
func moduleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/watchgate/watchgate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no watchgate go.mod in this directory or above; pass -src")
		}
		dir = parent
	}
}

// buildWatchgate builds the server binary from the module at src into
// dir with the pinned toolchain and returns its path.
func buildWatchgate(src, dir, toolchain string) (string, error) {
	out := filepath.Join(dir, "watchgate")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(cleanEnv(), "GOTOOLCHAIN="+toolchain)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building watchgate in %s: %v\n%s", src, err, b)
	}
	return out, nil
}

// exportRevision writes the tree of commit rev of the repository at src
// into dir/src (git archive) and returns that directory.
func exportRevision(src, rev, dir string) (string, error) {
	out := filepath.Join(dir, "src")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("git", "-C", src, "archive", "--format=tar", rev)
	untar := exec.Command("tar", "-x", "-C", out)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := untar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return "", fmt.Errorf("git archive %s: %v: %s", rev, err, stderr.String())
	}
	if err := untar.Wait(); err != nil {
		return "", fmt.Errorf("extracting %s: %w", rev, err)
	}
	return out, nil
}

func revSuffix(rev string) string {
	if rev == "" {
		return " (working tree)"
	}
	return " at " + rev
}

// startWatchgate starts the watchgate binary on a loopback port with a
// temporary data directory and waits for GET /readyz; extra are more
// flags (a backend's).
func startWatchgate(cfg *config, extra ...string) (*process, error) {
	dir, err := os.MkdirTemp(cfg.tmp, "watchgate-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--addr", addr, "--data", filepath.Join(dir, "data"), "--log-level", cfg.wgLogLevel,
		// The benchmark is one client (one address) standing for many: it
		// needs far more than the default 1,000 streams a client.
		"--max-streams", "100000000"}
	if cfg.ssePerConn > 1000 {
		args = append(args, "--http2-max-streams", strconv.Itoa(cfg.ssePerConn))
	}
	if cfg.wsPerSocket > 10000 {
		args = append(args, "--max-watches-per-socket", strconv.Itoa(cfg.wsPerSocket))
	}
	if cfg.pprofDir != "" {
		args = append(args, "--pprof")
	}
	args = append(append(args, extra...), cfg.wgArgs...)
	p, err := startProcess("watchgate", cfg.wgBin, args, cleanEnv(), dir, addr,
		httpReady("http://"+addr+"/readyz"), 30*time.Second)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// checkEtcd checks that the etcd binary is there and of the expected
// release.
func checkEtcd(bin string) (string, error) {
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("etcd is not installed at %s (install Debian's etcd-server package: apt-get install etcd-server): %w", bin, err)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	v := strings.TrimSpace(strings.TrimPrefix(first, "etcd Version:"))
	if !strings.HasPrefix(v, etcdVersionWant) {
		return v, fmt.Errorf("%s is etcd %s; the comparison is made against etcd %sx", bin, v, etcdVersionWant)
	}
	return v, nil
}

// startEtcd starts a single-node etcd on loopback ports with a temporary
// data directory and waits for GET /health.
func startEtcd(cfg *config) (*process, error) {
	dir, err := os.MkdirTemp(cfg.tmp, "etcd-")
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(cport)
	peer := "http://127.0.0.1:" + strconv.Itoa(pport)
	args := []string{
		"--name", "bench",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench=" + peer,
		"--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
		// The catch-up and storm scenarios keep a million revisions.
		"--quota-backend-bytes", strconv.FormatInt(8<<30, 10),
	}
	p, err := startProcess("etcd", cfg.etcdBin, args, cleanEnv(), dir, "127.0.0.1:"+strconv.Itoa(cport),
		httpReady(client+"/health"), 30*time.Second)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// servers is the pair a scenario runs against; etcd is nil when the run
// is watchgate only.
type servers struct {
	wg   *process
	etcd *process
}

func startServers(ctx context.Context, cfg *config) (*servers, error) {
	wg, err := startWatchgate(cfg)
	if err != nil {
		return nil, err
	}
	s := &servers{wg: wg}
	if cfg.etcd {
		e, err := startEtcd(cfg)
		if err != nil {
			wg.stop()
			return nil, err
		}
		s.etcd = e
	}
	return s, ctx.Err()
}

func (s *servers) stop() {
	s.wg.stop()
	s.etcd.stop()
}

// alive reports an error if a server died.
func (s *servers) alive() error {
	if err := s.wg.alive(); err != nil {
		return err
	}
	if s.etcd != nil {
		return s.etcd.alive()
	}
	return nil
}
