package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// watchgateBinary builds the server once for all the tests of the
// package.
func watchgateBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		src, err := moduleRoot(".")
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "bench-test-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin, buildErr = buildWatchgate(src, dir, defaultConfig().toolchain)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// quickConfig is the smallest useful run: a few hundred milliseconds of
// writes and a fan-out to a few dozen watchers over each transport.
func quickConfig(t testing.TB, etcd bool) *config {
	t.Helper()
	cfg := defaultConfig()
	cfg.quick = true
	cfg.applyQuick(map[string]bool{})
	cfg.scenarios = []string{"writes", "fanout"}
	cfg.etcd = etcd
	cfg.wgBin = watchgateBinary(t)
	cfg.src, _ = moduleRoot(".")
	cfg.out = t.TempDir()
	cfg.tmp = t.TempDir()
	cfg.writeClients = []int{1, 4}
	cfg.writeDuration = 300 * time.Millisecond
	cfg.fanout = []int{20}
	cfg.fanoutRepeats = 2
	cfg.timeout = 40 * time.Second
	return &cfg
}

// runQuick runs cfg and checks that every scenario produced its figures
// for each system, and that the outputs are well formed.
func runQuick(t *testing.T, cfg *config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := runConfig(ctx, cfg, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	var got struct {
		Metrics []*metric `json:"metrics"`
		Targets []check   `json:"targets"`
	}
	b, err := os.ReadFile(filepath.Join(cfg.out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	find := func(scenario, cas, name string) *metric {
		for _, m := range got.Metrics {
			if m.Scenario == scenario && m.Case == cas && m.Name == name {
				return m
			}
		}
		return nil
	}
	targets := map[string][]string{
		"writes": {"watchgate/rest", "watchgate/rest-lean"},
		"fanout": {"watchgate/ws", "watchgate/sse"},
	}
	if cfg.etcd {
		for k := range targets {
			targets[k] = append(targets[k], sysEtcd)
		}
	}
	for _, tc := range []struct{ scenario, cas, metric string }{
		{"writes", "1 clients", "writes/s"},
		{"writes", "4 clients", "writes/s"},
		{"writes", "4 clients", "p99"},
		{"fanout", "20 watchers", "last watcher"},
	} {
		t.Run(tc.scenario+"/"+tc.cas+"/"+tc.metric, func(t *testing.T) {
			m := find(tc.scenario, tc.cas, tc.metric)
			if m == nil {
				t.Fatalf("no %s %s %s in the results:\n%s", tc.scenario, tc.cas, tc.metric, stdout.String())
			}
			for _, target := range targets[tc.scenario] {
				s := m.Samples[target]
				want := cfg.repeats
				if tc.scenario == "fanout" {
					want = cfg.fanoutRepeats
				}
				if len(s) != want {
					t.Errorf("%s: %d samples, want %d", target, len(s), want)
				}
				for _, v := range s {
					if !(v > 0) {
						t.Errorf("%s: sample %v, want > 0", target, v)
					}
				}
			}
		})
	}
	if !strings.Contains(stdout.String(), "watchgate/etcd") && !strings.Contains(stdout.String(), "wg/etcd") {
		t.Errorf("no ratio column in the table:\n%s", stdout.String())
	}
	md, err := os.ReadFile(filepath.Join(cfg.out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "| writes | 4 clients | writes/s") {
		t.Errorf("results.md lacks the writes row:\n%s", md)
	}
	checkSVG(t, filepath.Join(cfg.out, "results.svg"))
}

// checkSVG checks that path is well-formed XML with an svg root and bars.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	root, rects := "", 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "rect" {
				rects++
			}
		}
	}
	if root != "svg" || rects < 4 {
		t.Errorf("%s: root %q with %d rects, want svg with bars", path, root, rects)
	}
}

// TestQuickWatchgate runs the quick writes and fan-out scenarios end to
// end against the real watchgate binary only.
func TestQuickWatchgate(t *testing.T) {
	runQuick(t, quickConfig(t, false))
}

// TestQuickEtcd runs the same against watchgate and etcd. It needs
// Debian's etcd-server package (make test installs it) and fails without
// it: the comparison is the tool's purpose.
func TestQuickEtcd(t *testing.T) {
	if _, err := checkEtcd(defaultConfig().etcdBin); err != nil {
		t.Fatalf("the etcd side of the benchmark cannot run: %v", err)
	}
	runQuick(t, quickConfig(t, true))
}
