package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleResults() *results {
	r := &results{}
	for _, v := range []float64{9000, 10000, 11000} {
		r.add("writes", "256 clients", "writes/s", "/s", true, "watchgate/rest", 3*v)
		r.add("writes", "256 clients", "writes/s", "/s", true, sysEtcd, v)
	}
	r.add("writes", "256 clients", "p99", "ms", false, "watchgate/rest", 12)
	r.add("writes", "256 clients", "p99", "ms", false, sysEtcd, 30)
	r.add("fanout", "10,000 watchers", "last watcher", "ms", false, "watchgate/ws", 4)
	r.add("fanout", "10,000 watchers", "last watcher", "ms", false, "watchgate/sse", 60)
	r.add("fanout", "10,000 watchers", "last watcher", "ms", false, sysEtcd, 80)
	r.add("capacity", "1,000,000 idle watches", "RSS per watch", "bytes", false, "watchgate/ws", 400)
	r.note("fanout", "10,000 watchers", "last watcher", "ms", false, "watchgate/sse", "slow")
	return r
}

func TestTableAndTargets(t *testing.T) {
	r := sampleResults()
	md := markdownTable(r.rows())
	for _, want := range []string{
		"| writes | 256 clients | writes/s | rest | 30,000 | 10,000 | 3.00× |",
		"| fanout | 10,000 watchers | last watcher (ms) | sse | 60.0 (slow) | 80.0 | 0.75× |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
	got := map[string]string{}
	for _, c := range evaluateTargets(&config{}, r) {
		got[c.Target+" ["+c.Via+"]"] = c.Status
	}
	for target, want := range map[string]string{
		"durable writes/s, 256 clients, >= 3x etcd [rest]":          statusMet,
		"durable writes, 256 clients, p99 <= 20 ms [rest]":          statusMet,
		"one write to 10,000 watchers <= 10 ms [ws]":                statusMet,
		"one write to 10,000 watchers >= 10x faster than etcd [ws]": statusMet,
		"one write to 10,000 watchers <= 10 ms [sse]":               statusNotMet,
		"one write to 100,000 watchers <= 50 ms [ws]":               statusNotMeasured,
		"catch-up >= 1,000,000 events/s [ws]":                       statusNotMeasured,
	} {
		if got[target] != want {
			t.Errorf("%s: %q, want %q", target, got[target], want)
		}
	}
}

func TestOutputs(t *testing.T) {
	dir := t.TempDir()
	doc := filepath.Join(dir, "BENCHMARKS.md")
	before := "# Benchmarks\n\nintro\n\n" + docBegin + "\nold\n" + docEnd + "\n\nafter\n"
	if err := os.WriteFile(doc, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &config{out: filepath.Join(dir, "bench", "results"), update: doc}
	m := &machine{Start: time.Now(), End: time.Now(), CPUs: 2, EtcdVersion: "3.4.23"}
	r := sampleResults()
	rows := r.rows()
	checks := evaluateTargets(cfg, r)
	if err := writeOutputs(cfg, m, r, rows, checks); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, filepath.Join(cfg.out, "results.svg"))
	if err := updateDoc(cfg, m, rows, checks); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"intro", "after", "![latency and throughput, watchgate and etcd](bench/results/results.svg)", "| writes | 256 clients |"} {
		if !strings.Contains(s, want) {
			t.Errorf("updated document lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "\nold\n") {
		t.Errorf("the old section was kept:\n%s", s)
	}
	cfg.update = filepath.Join(dir, "missing.md")
	if err := updateDoc(cfg, m, rows, checks); err == nil {
		t.Error("updating a missing file did not fail")
	}
}
