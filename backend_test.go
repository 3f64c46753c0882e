package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/httpapi"
)

func TestBackendFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    *etcdConfig
		wantErr string // part of the usage error; "" for none
	}{
		{"kv by default", nil, nil, nil, ""},
		{"kv named", []string{"--backend", "kv", "--retain-revisions", "5"}, nil, nil, ""},
		{"etcd", []string{"--backend=etcd", "--etcd-endpoints", " http://a:2379, https://b:2379 ,"}, nil,
			&etcdConfig{endpoints: []string{"http://a:2379", "https://b:2379"}, startTimeout: defaultEtcdStartTimeout}, ""},
		{"etcd from the environment", nil, map[string]string{"WATCHGATE_BACKEND": "etcd",
			"WATCHGATE_ETCD_ENDPOINTS": "https://e:2379", "WATCHGATE_ETCD_CERT": "c.pem", "WATCHGATE_ETCD_KEY": "k.pem",
			"WATCHGATE_ETCD_CA": "ca.pem", "WATCHGATE_ETCD_USERNAME": "gw", "WATCHGATE_ETCD_PASSWORD": "s3cret",
			"WATCHGATE_ETCD_START_TIMEOUT": "5s"}, &etcdConfig{endpoints: []string{"https://e:2379"},
			certFile: "c.pem", keyFile: "k.pem", caFile: "ca.pem", username: "gw", password: "s3cret", startTimeout: 5 * time.Second}, ""},
		{"flag wins over environment", []string{"--etcd-endpoints", "http://flag:2379"},
			map[string]string{"WATCHGATE_BACKEND": "etcd", "WATCHGATE_ETCD_ENDPOINTS": "http://env:2379"},
			&etcdConfig{endpoints: []string{"http://flag:2379"}, startTimeout: defaultEtcdStartTimeout}, ""},
		{"host:port endpoint", []string{"--backend=etcd", "--etcd-endpoints", "10.0.0.1:2379"}, nil,
			&etcdConfig{endpoints: []string{"10.0.0.1:2379"}, startTimeout: defaultEtcdStartTimeout}, ""},
		{"unknown backend", []string{"--backend", "bolt"}, nil, nil, "want kv or etcd"},
		{"etcd without endpoints", []string{"--backend=etcd"}, nil, nil, "needs --etcd-endpoints"},
		{"etcd with empty endpoints", []string{"--backend=etcd", "--etcd-endpoints", " , "}, nil, nil, "needs --etcd-endpoints"},
		{"cert without key", []string{"--backend=etcd", "--etcd-endpoints", "http://a:1", "--etcd-cert", "c"}, nil, nil, "--etcd-cert and --etcd-key"},
		{"key without cert", []string{"--backend=etcd", "--etcd-endpoints", "http://a:1", "--etcd-key", "k"}, nil, nil, "--etcd-cert and --etcd-key"},
		{"password without user", []string{"--backend=etcd", "--etcd-endpoints", "http://a:1", "--etcd-password", "p"}, nil, nil, "needs --etcd-username"},
		{"retained revisions with etcd", []string{"--backend=etcd", "--etcd-endpoints", "http://a:1", "--retain-revisions", "10"}, nil, nil, "--auto-compaction"},
		{"retained duration with etcd", nil, map[string]string{"WATCHGATE_BACKEND": "etcd",
			"WATCHGATE_ETCD_ENDPOINTS": "http://a:1", "WATCHGATE_RETAIN_DURATION": "1h"}, nil, "--auto-compaction"},
		{"etcd flag with kv", []string{"--etcd-endpoints", "http://a:1"}, nil, nil, "need --backend=etcd"},
		{"zero start timeout", []string{"--backend=etcd", "--etcd-endpoints", "http://a:1", "--etcd-start-timeout", "0"}, nil, nil, "must be positive"},
		{"bad scheme", []string{"--backend=etcd", "--etcd-endpoints", "unix://a"}, nil, nil, "want http://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want a usage error about %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got.etcd, cmp.AllowUnexported(etcdConfig{})); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestBackendUsageNamesEnvironment(t *testing.T) {
	var out strings.Builder
	parseConfig([]string{"-h"}, func(string) string { return "" }, &out)
	for _, name := range []string{"backend", "etcd-endpoints", "etcd-cert", "etcd-key", "etcd-ca",
		"etcd-username", "etcd-password", "etcd-start-timeout"} {
		if !strings.Contains(out.String(), "-"+name) || !strings.Contains(out.String(), "$"+envName(name)) {
			t.Errorf("usage lacks --%s or $%s:\n%s", name, envName(name), out.String())
		}
	}
}

// TestBackendErrorStatuses checks the error table's rows for the etcd
// store's errors, wrapped as the store returns them.
func TestBackendErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w (etcd: txn: duplicate key given in txn request)", etcdstore.ErrDuplicateKey), http.StatusBadRequest},
		{fmt.Errorf("%w (etcd: range: no leader)", etcdstore.ErrUnavailable), http.StatusServiceUnavailable},
		{fmt.Errorf("etcdstore: txn: %w: %w", etcdstore.ErrUnavailable, errors.New("context deadline exceeded")), http.StatusServiceUnavailable},
		{fmt.Errorf("feed: %w", etcdstore.ErrFeedLost), http.StatusServiceUnavailable},
	} {
		if got := httpapi.StatusOf(tc.err); got != tc.want {
			t.Errorf("StatusOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// problemOf GETs or sends a request and decodes the answer's status and
// problem document (empty for a success).
func problemOf(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p map[string]any
	if resp.Header.Get("Content-Type") == "application/problem+json" {
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("problem %q: %v", b, err)
		}
	}
	return resp.StatusCode, p
}

// TestRunEtcdReadiness serves from a one-member etcd cluster in process:
// writes and reads go through, a transaction writing one key twice gets
// 400 duplicate-key, /readyz turns 503 with the reason while the member is
// down and 200 again once it is back, and the password given to the
// gateway never reaches the log.
func TestRunEtcdReadiness(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	addr, logs, stop := startRun(t, []string{"--backend", "etcd", "--etcd-start-timeout", "20s"},
		map[string]string{"WATCHGATE_ETCD_ENDPOINTS": strings.Join(c.Endpoints(), ",")})
	base := "http://" + addr
	get := func(path string) *http.Request { r, _ := http.NewRequest(http.MethodGet, base+path, nil); return r }

	if st, p := problemOf(t, get("/readyz")); st != http.StatusOK {
		t.Fatalf("readyz: %d %v, want 200", st, p)
	}
	put, _ := http.NewRequest(http.MethodPut, base+"/v1/kv/a", strings.NewReader("1"))
	if st, p := problemOf(t, put); st != http.StatusOK && st != http.StatusCreated {
		t.Fatalf("PUT: %d %v", st, p)
	}
	txn, _ := http.NewRequest(http.MethodPost, base+"/v1/txn", strings.NewReader(
		`{"success":[{"put":{"key":"d","value":"1"}},{"put":{"key":"d","value":"2"}}]}`))
	txn.Header.Set("Content-Type", "application/json")
	st, p := problemOf(t, txn)
	if st != http.StatusBadRequest || p["type"] != httpapi.ProblemTypePrefix+"duplicate-key" {
		t.Errorf("transaction writing a key twice: %d %v, want 400 duplicate-key", st, p)
	}

	c.Kill(0)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, p := problemOf(t, get("/readyz"))
		if st == http.StatusServiceUnavailable {
			if d, _ := p["detail"].(string); p["type"] != httpapi.ProblemTypePrefix+"not-ready" || !strings.Contains(d, "etcd") {
				t.Errorf("readyz with etcd down: %v, want not-ready with the reason", p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d 20s after etcd went down", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, p := problemOf(t, get("/v1/kv/a")); st != http.StatusServiceUnavailable {
		t.Errorf("GET with etcd down: %d %v, want 503", st, p)
	}

	c.Restart(0)
	deadline = time.Now().Add(30 * time.Second)
	for {
		st, _ := problemOf(t, get("/readyz"))
		if st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d 30s after etcd came back", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	msgs := logs.messages()
	if len(msgs) == 0 || msgs[len(msgs)-1] != "stopped" {
		t.Errorf("log messages %v, want the last to be stopped", msgs)
	}
}

// TestRunEtcdNeverReachable checks that a cluster that never answers fails
// the start after --etcd-start-timeout, naming the endpoints, and that
// the password is not in the error or the log.
func TestRunEtcdNeverReachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	logs := newLogWatcher()
	start := time.Now()
	err = run(t.Context(), []string{"--addr", "127.0.0.1:0", "--data", t.TempDir(), "--backend", "etcd",
		"--etcd-endpoints", ep, "--etcd-start-timeout", "1500ms", "--etcd-username", "gw"},
		func(k string) string {
			if k == "WATCHGATE_ETCD_PASSWORD" {
				return "s3cret-pw"
			}
			return ""
		}, logs)
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), ep) {
		t.Fatalf("run: %v, want a start failure naming %s", err, ep)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("run gave up after %v, want about the 1.5s start timeout", d)
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, m := range logs.lines {
		if b, _ := json.Marshal(m); strings.Contains(string(b), "s3cret-pw") {
			t.Errorf("the log shows the password: %s", b)
		}
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("the error shows the password: %v", err)
	}
}
