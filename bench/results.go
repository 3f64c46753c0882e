package main

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Systems, as results name them.
const (
	sysWatchgate = "watchgate"
	sysEtcd      = "etcd"
)

// metric is one measured quantity of one scenario case, with one sample
// per repeat and per target (a system and the transport it was reached
// over).
type metric struct {
	Scenario string `json:"scenario"`
	Case     string `json:"case"`
	Name     string `json:"metric"`
	Unit     string `json:"unit"`
	// Higher is true when a higher value is better.
	Higher bool `json:"higher_is_better"`
	// Samples by target: "watchgate/ws", "watchgate/sse",
	// "watchgate/rest", "etcd".
	Samples map[string][]float64 `json:"samples"`
	// Notes by target: what went wrong in a run (a timeout, missing
	// deliveries), shown next to the value.
	Notes map[string]string `json:"notes,omitempty"`
}

// results collects the metrics of a run, in the order first recorded.
type results struct {
	mu      sync.Mutex
	metrics []*metric
}

func (r *results) get(scenario, cas, name, unit string, higher bool) *metric {
	for _, m := range r.metrics {
		if m.Scenario == scenario && m.Case == cas && m.Name == name {
			return m
		}
	}
	m := &metric{Scenario: scenario, Case: cas, Name: name, Unit: unit, Higher: higher,
		Samples: map[string][]float64{}, Notes: map[string]string{}}
	r.metrics = append(r.metrics, m)
	return m
}

// add records one sample.
func (r *results) add(scenario, cas, name, unit string, higher bool, target string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.get(scenario, cas, name, unit, higher)
	m.Samples[target] = append(m.Samples[target], v)
}

// note records a remark on a target's value.
func (r *results) note(scenario, cas, name, unit string, higher bool, target, note string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.get(scenario, cas, name, unit, higher)
	if old := m.Notes[target]; old != "" && !strings.Contains(old, note) {
		note = old + "; " + note
	}
	m.Notes[target] = note
}

// find returns the metric, or nil.
func (r *results) find(scenario, cas, name string) *metric {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.metrics {
		if m.Scenario == scenario && m.Case == cas && m.Name == name {
			return m
		}
	}
	return nil
}

// median of a target's samples; NaN when there are none.
func (m *metric) median(target string) float64 {
	if m == nil {
		return math.NaN()
	}
	return median(m.Samples[target])
}

// etcdTarget is the name of etcd's samples.
const etcdTarget = sysEtcd

// watchgateTargets lists the metric's watchgate targets in a fixed order.
func (m *metric) watchgateTargets() []string {
	var ts []string
	for t := range m.Samples {
		if strings.HasPrefix(t, sysWatchgate) {
			ts = append(ts, t)
		}
	}
	order := map[string]int{"watchgate/rest": 0, "watchgate/rest-lean": 1, "watchgate/rest-h2": 2, "watchgate/ws": 3, "watchgate/sse": 4}
	slices.SortFunc(ts, func(a, b string) int { return order[a] - order[b] })
	return ts
}

// row is one line of the table: a watchgate target against etcd.
type row struct {
	Scenario, Case, Metric, Unit string
	Via                          string
	WG, Etcd, Ratio              float64
	WGNote, EtcdNote             string
	N                            int // samples of the watchgate target
}

func (r *results) rows() []row {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rows []row
	for _, m := range r.metrics {
		ts := m.watchgateTargets()
		if len(ts) == 0 {
			ts = []string{""}
		}
		for _, t := range ts {
			wg, e := m.median(t), m.median(etcdTarget)
			rows = append(rows, row{
				Scenario: m.Scenario, Case: m.Case, Metric: m.Name, Unit: m.Unit,
				Via: strings.TrimPrefix(t, sysWatchgate+"/"),
				WG:  wg, Etcd: e, Ratio: wg / e,
				WGNote: m.Notes[t], EtcdNote: m.Notes[etcdTarget],
				N: len(m.Samples[t]),
			})
		}
	}
	return rows
}

// formatValue prints a value for people: thousands separated, two
// significant decimals under 10.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.IsInf(v, 0):
		return "∞"
	case math.Abs(v) >= 1000:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func formatRatio(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	if v >= 100 {
		return fmt.Sprintf("%.0f×", v)
	}
	if v >= 10 {
		return fmt.Sprintf("%.1f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

func withNote(v, note string) string {
	if note == "" {
		return v
	}
	return v + " (" + note + ")"
}

// markdownTable renders the rows as a Markdown table.
func markdownTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| scenario | case | metric | via | watchgate | etcd | watchgate/etcd |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Case, metricLabel(r.Metric, r.Unit), r.Via,
			withNote(formatValue(r.WG), r.WGNote), withNote(formatValue(r.Etcd), r.EtcdNote), formatRatio(r.Ratio))
	}
	return b.String()
}

func metricLabel(name, unit string) string {
	if unit == "" || strings.HasSuffix(name, unit) {
		return name
	}
	return name + " (" + unit + ")"
}

// textTable renders the rows aligned for a terminal.
func textTable(rows []row) string {
	head := []string{"scenario", "case", "metric", "via", "watchgate", "etcd", "wg/etcd"}
	cells := [][]string{head}
	for _, r := range rows {
		cells = append(cells, []string{r.Scenario, r.Case, metricLabel(r.Metric, r.Unit), r.Via,
			withNote(formatValue(r.WG), r.WGNote), withNote(formatValue(r.Etcd), r.EtcdNote), formatRatio(r.Ratio)})
	}
	width := make([]int, len(head))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	var b strings.Builder
	for _, c := range cells {
		for i, s := range c {
			pad := width[i] - len([]rune(s))
			if i >= 4 {
				b.WriteString(strings.Repeat(" ", pad) + s)
			} else {
				b.WriteString(s + strings.Repeat(" ", pad))
			}
			if i < len(c)-1 {
				b.WriteString("  ")
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// formatCount prints a count with thousands separated: 10,000.
func formatCount(n int) string { return groupThousands(strconv.Itoa(n)) }
