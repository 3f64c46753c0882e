package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

func TestParseConfig(t *testing.T) {
	defaults := config{addr: ":8080", data: "./data", logLevel: zerolog.InfoLevel,
		maxKeySize: 4096, maxValueSize: 1 << 20, maxTxnOps: 128, maxStreams: 1000, maxWatches: 10000,
		readHeaderTO: 10 * time.Second, idleTO: 120 * time.Second, http2MaxStreams: 1000}
	with := func(f func(*config)) config {
		c := defaults
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr error
	}{
		{"defaults", nil, nil, defaults, nil},
		{"flags", []string{"--addr", "127.0.0.1:0", "-data=/tmp/x", "--log-level", "debug", "--retain-revisions", "100",
			"--retain-duration", "1h", "--max-key-size", "10", "--max-value-size", "20", "--max-txn-ops", "3"}, nil,
			with(func(c *config) {
				c.addr, c.data, c.logLevel, c.retainRevisions, c.retainDuration = "127.0.0.1:0", "/tmp/x", zerolog.DebugLevel, 100, time.Hour
				c.maxKeySize, c.maxValueSize, c.maxTxnOps = 10, 20, 3
			}), nil},
		{"environment", nil, map[string]string{"WATCHGATE_ADDR": ":9", "WATCHGATE_DATA": "d", "WATCHGATE_MAX_VALUE_SIZE": "7",
			"WATCHGATE_RETAIN_DURATION": "5m", "WATCHGATE_LOG_LEVEL": "warn", "WATCHGATE_TLS_CERT": "c", "WATCHGATE_TLS_KEY": "k"},
			with(func(c *config) {
				c.addr, c.data, c.maxValueSize, c.retainDuration, c.logLevel = ":9", "d", 7, 5*time.Minute, zerolog.WarnLevel
				c.tlsCert, c.tlsKey = "c", "k"
			}), nil},
		{"flag wins over environment", []string{"--addr", ":1"}, map[string]string{"WATCHGATE_ADDR": ":2"},
			with(func(c *config) { c.addr = ":1" }), nil},
		{"access and limits", []string{"--access-file", "a.yaml", "--allow-query-token", "--secure-cookies",
			"--cors-origins", " https://a.example, http://localhost:3000 ,", "--write-rate", "2.5", "--write-burst", "5",
			"--max-streams", "7", "--max-watches-per-socket", "8", "--read-header-timeout", "3s", "--idle-timeout", "1m",
			"--http2-max-streams", "2000", "--pprof"}, nil,
			with(func(c *config) {
				c.accessFile, c.allowQueryToken, c.secureCookies = "a.yaml", true, true
				c.corsOrigins = []string{"https://a.example", "http://localhost:3000"}
				c.writeRate, c.writeBurst, c.maxStreams, c.maxWatches = 2.5, 5, 7, 8
				c.readHeaderTO, c.idleTO, c.http2MaxStreams, c.pprof = 3*time.Second, time.Minute, 2000, true
			}), nil},
		{"access from the environment", nil, map[string]string{"WATCHGATE_ACCESS_FILE": "b.json", "WATCHGATE_CORS_ORIGINS": "*",
			"WATCHGATE_WRITE_RATE": "10", "WATCHGATE_ALLOW_QUERY_TOKEN": "true"},
			with(func(c *config) {
				c.accessFile, c.corsOrigins, c.writeRate, c.allowQueryToken = "b.json", []string{"*"}, 10, true
			}), nil},
		{"bad origin", []string{"--cors-origins", "app.example"}, nil, config{}, errUsage},
		{"origin with a path", []string{"--cors-origins", "https://app.example/x"}, nil, config{}, errUsage},
		{"negative rate", []string{"--write-rate", "-1"}, nil, config{}, errUsage},
		{"zero streams", []string{"--max-streams", "0"}, nil, config{}, errUsage},
		{"zero header timeout", []string{"--read-header-timeout", "0"}, nil, config{}, errUsage},
		{"bad environment value", nil, map[string]string{"WATCHGATE_MAX_TXN_OPS": "many"}, config{}, errUsage},
		{"unknown flag", []string{"--nope"}, nil, config{}, errUsage},
		{"argument", []string{"serve"}, nil, config{}, errUsage},
		{"bad level", []string{"--log-level", "loud"}, nil, config{}, errUsage},
		{"cert without key", []string{"--tls-cert", "c"}, nil, config{}, errUsage},
		{"negative retention", []string{"--retain-revisions", "-1"}, nil, config{}, errUsage},
		{"zero key size", []string{"--max-key-size", "0"}, nil, config{}, errUsage},
		{"help", []string{"-h"}, nil, config{}, flag.ErrHelp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil) != (err != nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(config{})); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestUsageNamesEnvironment(t *testing.T) {
	var out strings.Builder
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	for _, name := range []string{"addr", "data", "tls-cert", "tls-key", "retain-revisions", "retain-duration",
		"access-file", "allow-query-token", "secure-cookies", "cors-origins", "log-level", "max-key-size", "max-value-size",
		"max-txn-ops", "write-rate", "write-burst", "max-streams", "max-watches-per-socket", "read-header-timeout",
		"idle-timeout", "http2-max-streams", "pprof"} {
		if !strings.Contains(out.String(), "-"+name) || !strings.Contains(out.String(), "$"+envName(name)) {
			t.Errorf("usage lacks --%s or $%s:\n%s", name, envName(name), out.String())
		}
	}
}

// TestRunRefusesBadAccessFiles checks that a missing or malformed access
// file fails the start instead of serving without access control.
func TestRunRefusesBadAccessFiles(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "access.yaml")
	os.WriteFile(bad, []byte("tokens:\n  - name: a\n    sha256: not-a-hash\n"), 0o600)
	for _, file := range []string{filepath.Join(t.TempDir(), "missing.yaml"), bad} {
		err := run(context.Background(), []string{"--access-file", file, "--data", t.TempDir(), "--addr", "127.0.0.1:0"},
			func(string) string { return "" }, io.Discard)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--access-file") {
			t.Errorf("run with access file %s: %v, want a usage error", file, err)
		}
	}
}

func TestTokenCommands(t *testing.T) {
	var out strings.Builder
	if err := newToken(nil, nil, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var tok, sum string
	if _, err := fmt.Sscanf(out.String(), "token:  %s\nsha256: %s\n", &tok, &sum); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	out.Reset()
	if err := hashToken(nil, nil, strings.NewReader(tok+"\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != sum || len(sum) != 64 {
		t.Errorf("hash-token %q, token printed %q", out.String(), sum)
	}
	for _, in := range []string{"", "\n", "a\nb\n"} {
		if err := hashToken(nil, nil, strings.NewReader(in), io.Discard, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("hash-token of %q: %v", in, err)
		}
	}
}

func TestHealthcheckCommand(t *testing.T) {
	addr, _, stop := startRun(t, nil, nil)
	_, port, _ := net.SplitHostPort(addr)
	var out strings.Builder
	for _, a := range []string{addr, ":" + port, "0.0.0.0:" + port} {
		out.Reset()
		if err := healthcheck([]string{"--addr", a}, func(string) string { return "" }, nil, &out, io.Discard); err != nil || out.String() != "ok\n" {
			t.Errorf("healthcheck --addr %s: %v %q", a, err, out.String())
		}
	}
	// From the environment, as in the container.
	if err := healthcheck(nil, func(k string) string { return map[string]string{"WATCHGATE_ADDR": addr}[k] }, nil, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck from the environment: %v", err)
	}
	stop()
	if err := healthcheck([]string{"--addr", addr}, func(string) string { return "" }, nil, io.Discard, io.Discard); err == nil {
		t.Errorf("healthcheck of a stopped server passed")
	}
}

// logWatcher is an io.Writer for run's stderr that decodes its JSON log
// lines and reports the listening address.
type logWatcher struct {
	mu    sync.Mutex
	lines []map[string]any
	buf   []byte
	addr  chan string
}

func newLogWatcher() *logWatcher { return &logWatcher{addr: make(chan string, 1)} }

func (l *logWatcher) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		var m map[string]any
		if json.Unmarshal(l.buf[:i], &m) == nil {
			l.lines = append(l.lines, m)
			if m["message"] == "listening" {
				l.addr <- m["addr"].(string)
			}
		}
		l.buf = l.buf[i+1:]
	}
}

func (l *logWatcher) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, m := range l.lines {
		if m["component"] != "http" {
			out = append(out, m["message"].(string))
		}
	}
	return out
}

// startRun runs the server in process with args and env, on a loopback
// port with its store in a new directory unless args or env say otherwise,
// and waits until it listens. stop cancels it and returns run's error.
func startRun(t *testing.T, args []string, env map[string]string) (addr string, logs *logWatcher, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = newLogWatcher()
	done := make(chan error, 1)
	args = append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir()}, args...)
	go func() { done <- run(ctx, args, func(k string) string { return env[k] }, logs) }()
	select {
	case addr = <-logs.addr:
	case err := <-done:
		cancel()
		t.Fatalf("run ended: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("the server did not start")
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("the server did not shut down")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return addr, logs, stop
}

// TestRunServesAndShutsDown runs the server in process, talks to it over
// HTTP/1.1 and cleartext HTTP/2, and checks the order of the shutdown.
func TestRunServesAndShutsDown(t *testing.T) {
	// --max-value-size comes from the environment.
	addr, logs, stop := startRun(t, nil, map[string]string{"WATCHGATE_MAX_VALUE_SIZE": "16"})
	base := "http://" + addr

	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	defer h2.CloseIdleConnections()
	for _, c := range []struct {
		client *http.Client
		proto  string
	}{{http.DefaultClient, "HTTP/1.1"}, {&http.Client{Transport: h2}, "HTTP/2.0"}} {
		resp, err := c.client.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Proto != c.proto {
			t.Errorf("readyz: %d over %s, want 200 over %s", resp.StatusCode, resp.Proto, c.proto)
		}
		req, _ := http.NewRequest(http.MethodPut, base+"/v1/kv/run", strings.NewReader(c.proto))
		resp, err = c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Errorf("PUT over %s: %d", c.proto, resp.StatusCode)
		}
	}
	// --max-value-size (from the environment here) reaches the API.
	req, _ := http.NewRequest(http.MethodPut, base+"/v1/kv/big", strings.NewReader(strings.Repeat("x", 17)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("17-byte value with a 16-byte limit: %d, want 413", resp.StatusCode)
	}
	resp, err = http.Get(base + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "openapi: 3.") {
		t.Errorf("/openapi.yaml serves %.40q", b)
	}

	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if diff := cmp.Diff([]string{"store opened", "listening", "shutting down", "watch hub closed", "store closed", "stopped"}, logs.messages()); diff != "" {
		t.Errorf("log messages (-want +got)\n%s", diff)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("the server still answers after run returned")
	}
}

// TestRunRetention checks that --retain-revisions reaches the store: old
// revisions get compacted without a request.
func TestRunRetention(t *testing.T) {
	addr, _, _ := startRun(t, []string{"--retain-revisions", "2"}, nil)
	base := "http://" + addr
	for i := 0; i < 6; i++ {
		req, _ := http.NewRequest(http.MethodPut, base+"/v1/kv/k", strings.NewReader("v"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if c := resp.Header.Get("X-Compact-Revision"); c != "1" {
			if c != "5" && c != "6" {
				t.Errorf("compacted to %s at revision %s, want the last 2 revisions kept", c, resp.Header.Get("X-Revision"))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no automatic compaction within 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunTLS serves TLS from --tls-cert and --tls-key and checks that
// clients get HTTP/2 and HTTP/1.1 over it.
func TestRunTLS(t *testing.T) {
	certFile, keyFile, pool := writeTestCert(t)
	addr, _, _ := startRun(t, []string{"--tls-cert", certFile, "--tls-key", keyFile}, nil)
	if err := healthcheck([]string{"--addr", addr, "--tls-cert", certFile, "--tls-key", keyFile},
		func(string) string { return "" }, nil, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck over TLS: %v", err)
	}
	for _, tc := range []struct {
		h2    bool
		proto string
	}{{true, "HTTP/2.0"}, {false, "HTTP/1.1"}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Protocols: new(http.Protocols)}
		tr.Protocols.SetHTTP1(!tc.h2)
		tr.Protocols.SetHTTP2(tc.h2)
		resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != http.StatusOK || resp.Proto != tc.proto {
			t.Errorf("readyz over TLS: %d %s, want 200 %s", resp.StatusCode, resp.Proto, tc.proto)
		}
	}
	// A key that does not match is refused before listening.
	_, otherKey, _ := writeTestCert(t)
	err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--tls-cert", certFile, "--tls-key", otherKey},
		func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Errorf("run with a mismatched key: %v", err)
	}
	// Cleartext is not served on a TLS listener.
	if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("cleartext request served on the TLS listener")
		}
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// and returns their files and a pool that trusts the certificate.
func writeTestCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "watchgate test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// scanLogs is a helper for the binary tests: it reads JSON log lines from r
// and sends the listening address.
func scanLogs(r io.Reader, addr chan<- string, sink io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sent := false
	for sc.Scan() {
		sink.Write(append(sc.Bytes(), '\n'))
		var m map[string]any
		if !sent && json.Unmarshal(sc.Bytes(), &m) == nil && m["message"] == "listening" {
			addr <- m["addr"].(string)
			sent = true
		}
	}
	close(addr)
}
