// Package etcdtest runs a real etcd cluster for tests: members are etcd
// processes (Debian's etcd-server package, /usr/bin/etcd) on free loopback
// ports with their data in the test's temporary directory. Members can be
// killed, stopped and restarted; everything is stopped when the test ends.
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultBinary is where Debian's etcd-server package installs etcd. The
// ETCD_BIN environment variable overrides it.
const DefaultBinary = "/usr/bin/etcd"

// Options configures a Cluster. The zero value is the documented default.
type Options struct {
	// Members is the cluster size (default 3).
	Members int
	// ProgressNotifyInterval is etcd's periodic watch progress
	// notification interval (default 500ms, etcd's own is 10m), so that
	// tests meet progress notifications.
	ProgressNotifyInterval time.Duration
	// StartTimeout bounds the wait for a member to report healthy
	// (default 30s).
	StartTimeout time.Duration
	// TLS serves the client URLs over TLS (https) and requires a client
	// certificate signed by the cluster's CA (Cluster.TLS).
	TLS bool
}

func (o *Options) setDefaults() {
	if o.Members <= 0 {
		o.Members = 3
	}
	if o.ProgressNotifyInterval <= 0 {
		o.ProgressNotifyInterval = 500 * time.Millisecond
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
}

// Cluster is a running etcd cluster. Its methods are safe for concurrent
// use; they fail the test (t.Fatal) on error, so they must be called from
// the test's goroutine.
type Cluster struct {
	tb      testing.TB
	bin     string
	dir     string
	opts    Options
	initial string // --initial-cluster
	members []*Member
	// TLS holds the certificates when Options.TLS is set, nil otherwise.
	TLS *TLSFiles
}

// Member is one etcd process of a Cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dataDir   string
	logPath   string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Binary returns the etcd binary the tests use, or an error that says how
// to install it.
func Binary() (string, error) {
	bin := os.Getenv("ETCD_BIN")
	if bin == "" {
		bin = DefaultBinary
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("etcdtest: etcd binary %s not found (%v): install Debian's etcd-server package "+
			"(apt-get install -y --no-install-recommends etcd-server) or set ETCD_BIN", bin, err)
	}
	return bin, nil
}

// Start starts a cluster of opts.Members members and waits until every one
// is healthy. It fails the test, never skips it, when etcd is missing. The
// cluster is killed in tb.Cleanup.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	opts.setDefaults()
	bin, err := Binary()
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{tb: tb, bin: bin, dir: tb.TempDir(), opts: opts}
	scheme := "http"
	if opts.TLS {
		if c.TLS, err = writeCerts(c.dir); err != nil {
			tb.Fatal(err)
		}
		scheme = "https"
	}
	ports := freePorts(tb, 2*opts.Members)
	var initial []string
	for i := range opts.Members {
		name := fmt.Sprintf("m%d", i)
		m := &Member{
			Name:      name,
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			dataDir:   filepath.Join(c.dir, name),
			logPath:   filepath.Join(c.dir, name+".log"),
		}
		c.members = append(c.members, m)
		initial = append(initial, name+"="+m.PeerURL)
	}
	c.initial = strings.Join(initial, ",")
	tb.Cleanup(c.killAll)
	for i := range c.members {
		c.start(i, "new")
	}
	for i := range c.members {
		c.WaitHealthy(i)
	}
	return c
}

// Endpoints returns the client URLs of every member.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.ClientURL
	}
	return eps
}

// Member returns member i.
func (c *Cluster) Member(i int) *Member { return c.members[i] }

// Size returns the number of members.
func (c *Cluster) Size() int { return len(c.members) }

func (c *Cluster) start(i int, state string) {
	c.tb.Helper()
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		c.tb.Fatalf("etcdtest: member %s is already running", m.Name)
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.tb.Fatal(err)
	}
	args := []string{
		"--name", m.Name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.ClientURL,
		"--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL,
		"--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", state,
		"--initial-cluster-token", "watchgate-test",
		// Short but not twitchy on a loaded two-core machine.
		"--heartbeat-interval", "50",
		"--election-timeout", "600",
		"--experimental-watch-progress-notify-interval", c.opts.ProgressNotifyInterval.String(),
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	if c.TLS != nil {
		args = append(args, "--cert-file", c.TLS.ServerCert, "--key-file", c.TLS.ServerKey,
			"--client-cert-auth", "--trusted-ca-file", c.TLS.CA)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.tb.Fatalf("etcdtest: starting %s: %v", m.Name, err)
	}
	done := make(chan struct{})
	m.cmd, m.done = cmd, done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
}

// Kill kills member i with SIGKILL (a crash) and waits for it to exit.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL) }

// Stop stops member i with SIGTERM (a clean shutdown) and waits for it.
func (c *Cluster) Stop(i int) { c.signal(i, syscall.SIGTERM) }

func (c *Cluster) signal(i int, sig syscall.Signal) {
	c.tb.Helper()
	m := c.members[i]
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.cmd, m.done = nil, nil
	m.mu.Unlock()
	if cmd == nil {
		c.tb.Fatalf("etcdtest: member %s is not running", m.Name)
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts the given members again on their data directories, then
// waits until each is healthy (so members that together make a quorum
// must be restarted in one call).
func (c *Cluster) Restart(members ...int) {
	c.tb.Helper()
	for _, i := range members {
		c.start(i, "existing")
	}
	for _, i := range members {
		c.WaitHealthy(i)
	}
}

// Running reports whether member i's process is running.
func (c *Cluster) Running(i int) bool {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

// WaitHealthy waits until member i answers its /health endpoint with
// health true (it has a leader and serves a linearizable read).
func (c *Cluster) WaitHealthy(i int) {
	c.tb.Helper()
	m := c.members[i]
	deadline := time.Now().Add(c.opts.StartTimeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	if c.TLS != nil {
		cfg, err := c.TLS.ClientConfig()
		if err != nil {
			c.tb.Fatal(err)
		}
		hc.Transport = &http.Transport{TLSClientConfig: cfg}
	}
	var last error
	for time.Now().Before(deadline) {
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		if done == nil {
			c.tb.Fatalf("etcdtest: member %s is not running", m.Name)
		}
		select {
		case <-done:
			c.tb.Fatalf("etcdtest: member %s exited; its log ends with:\n%s", m.Name, c.LogTail(i, 30))
		default:
		}
		resp, err := hc.Get(m.ClientURL + "/health")
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(body.String(), `"health":"true"`) {
				hc.CloseIdleConnections()
				return
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(body.String()))
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	hc.CloseIdleConnections()
	c.tb.Fatalf("etcdtest: member %s not healthy after %v: %v; its log ends with:\n%s",
		m.Name, c.opts.StartTimeout, last, c.LogTail(i, 30))
}

// Leader returns the index of the member that is the leader, as the
// running members report it, waiting up to the start timeout for one.
func (c *Cluster) Leader() int {
	c.tb.Helper()
	deadline := time.Now().Add(c.opts.StartTimeout)
	for time.Now().Before(deadline) {
		if i, err := c.leader(); err == nil {
			return i
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.tb.Fatalf("etcdtest: no leader after %v", c.opts.StartTimeout)
	return -1
}

func (c *Cluster) leader() (int, error) {
	for i, m := range c.members {
		if !c.Running(i) {
			continue
		}
		cli, err := c.client(m.ClientURL)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		cli.Close()
		if err != nil || st.Leader == 0 {
			continue
		}
		for j, mm := range c.members {
			if !c.Running(j) {
				continue
			}
			cli, err := c.client(mm.ClientURL)
			if err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st2, err := cli.Status(ctx, mm.ClientURL)
			cancel()
			cli.Close()
			if err == nil && st2.Header.MemberId == st.Leader {
				return j, nil
			}
		}
	}
	return -1, errors.New("etcdtest: no leader")
}

// Client returns a client of the whole cluster, closed in tb.Cleanup.
func (c *Cluster) Client() *clientv3.Client {
	c.tb.Helper()
	cli, err := c.client(c.Endpoints()...)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() { cli.Close() })
	return cli
}

func (c *Cluster) client(eps ...string) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	}
	if c.TLS != nil {
		var err error
		if cfg.TLS, err = c.TLS.ClientConfig(); err != nil {
			return nil, err
		}
	}
	return clientv3.New(cfg)
}

// LogTail returns the last n lines of member i's log.
func (c *Cluster) LogTail(i, n int) string {
	b, err := os.ReadFile(c.members[i].logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Cluster) killAll() {
	for _, m := range c.members {
		m.mu.Lock()
		cmd, done := m.cmd, m.done
		m.cmd, m.done = nil, nil
		m.mu.Unlock()
		if cmd != nil {
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var lns []net.Listener
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
