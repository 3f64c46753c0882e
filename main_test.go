package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

func TestParseConfig(t *testing.T) {
	defaults := config{addr: ":8080", data: "./data", logLevel: zerolog.InfoLevel,
		maxKeySize: 4096, maxValueSize: 1 << 20, maxTxnOps: 128}
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
		"access-file", "cors-origins", "log-level", "max-key-size", "max-value-size", "max-txn-ops"} {
		if !strings.Contains(out.String(), "-"+name) || !strings.Contains(out.String(), "$"+envName(name)) {
			t.Errorf("usage lacks --%s or $%s:\n%s", name, envName(name), out.String())
		}
	}
}

func TestRunRefusesUnavailableFeatures(t *testing.T) {
	for _, args := range [][]string{{"--access-file", "tokens"}, {"--cors-origins", "https://a.example"}} {
		err := run(context.Background(), append(args, "--data", t.TempDir(), "--addr", "127.0.0.1:0"),
			func(string) string { return "" }, io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("run %v: %v, want a usage error", args, err)
		}
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

// TestRunServesAndShutsDown runs the server in process, talks to it over
// HTTP/1.1 and cleartext HTTP/2, and checks the order of the shutdown.
func TestRunServesAndShutsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := newLogWatcher()
	done := make(chan error, 1)
	env := map[string]string{"WATCHGATE_DATA": t.TempDir(), "WATCHGATE_ADDR": "127.0.0.1:0"}
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	var addr string
	select {
	case addr = <-logs.addr:
	case err := <-done:
		t.Fatalf("run ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not start")
	}
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
	resp, err := http.Get(base + "/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(b), "openapi: 3.") {
		t.Errorf("/openapi.yaml serves %.40q", b)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not shut down")
	}
	if diff := cmp.Diff([]string{"store opened", "listening", "shutting down", "store closed", "stopped"}, logs.messages()); diff != "" {
		t.Errorf("log messages (-want +got)\n%s", diff)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Errorf("the server still answers after run returned")
	}
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
