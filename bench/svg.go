package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// bar is one group of the chart: a watchgate value and etcd's.
type bar struct {
	label    string
	wg, etcd float64
}

// chartSVG draws the run as three panels of horizontal bars on log
// scales: latencies (ms), throughputs (per second) and memory per watch
// (bytes); watchgate's bar above etcd's in each group.
func chartSVG(rows []row, m *machine) string {
	var lat, thr, mem []bar
	for _, r := range rows {
		cas := r.Case
		if r.Scenario == "storm" {
			// "1,000 watchers × 10,000 revisions behind, own key": the
			// mode is what tells the bars apart.
			if i := strings.LastIndex(cas, ", "); i >= 0 {
				cas = cas[i+2:]
			}
		}
		label := r.Scenario + " · " + cas + " · " + r.Metric
		if r.Via != "" {
			label += " [" + r.Via + "]"
		}
		b := bar{label: label, wg: r.WG, etcd: r.Etcd}
		switch {
		case r.Scenario == "writes" || r.Scenario == "sustained" || (r.Scenario == "fanout" && r.Metric == "last watcher"):
			if r.Unit == "ms" {
				lat = append(lat, b)
			} else if r.Unit == "/s" {
				thr = append(thr, b)
			}
		case r.Scenario == "storm":
			b.wg *= 1000
			b.etcd *= 1000
			lat = append(lat, b)
		case r.Scenario == "matching" && r.Metric == "writes/s":
			thr = append(thr, b)
		case r.Scenario == "catchup" && r.Metric == "events/s":
			thr = append(thr, b)
		case r.Scenario == "capacity" && r.Metric == "RSS per watch":
			mem = append(mem, b)
		}
	}
	const width = 1000
	var body strings.Builder
	y := 60
	for _, p := range []struct {
		title string
		unit  string
		bars  []bar
	}{
		{"Latency (ms, log scale; lower is better)", "ms", lat},
		{"Throughput (per second, log scale; higher is better)", "/s", thr},
		{"Server memory per idle watch (bytes, log scale; lower is better)", "B", mem},
	} {
		if len(p.bars) == 0 {
			continue
		}
		y = panel(&body, y, width, p.title, p.unit, p.bars)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, y+20, width, y+20)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">watchgate vs etcd %s — medians</text>`+"\n", html.EscapeString(m.EtcdVersion))
	fmt.Fprintf(&b, `<text x="10" y="40" fill="#555">%s</text>`+"\n", html.EscapeString(truncate(m.summary(), 170)))
	fmt.Fprintf(&b, `<rect x="%d" y="10" width="12" height="10" fill="%s"/><text x="%d" y="19">watchgate</text>`+"\n", width-190, colorWG, width-174)
	fmt.Fprintf(&b, `<rect x="%d" y="10" width="12" height="10" fill="%s"/><text x="%d" y="19">etcd</text>`+"\n", width-100, colorEtcd, width-84)
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}

const (
	colorWG   = "#2b6cb0"
	colorEtcd = "#dd6b20"
)

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// panel draws one panel from y down and returns the y below it.
func panel(b *strings.Builder, y, width int, title, unit string, bars []bar) int {
	const (
		labelW = 390
		right  = 90
		barH   = 11
		gap    = 8
	)
	x0, x1 := labelW, width-right
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, br := range bars {
		for _, v := range []float64{br.wg, br.etcd} {
			if v > 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		return y
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	xOf := func(v float64) float64 {
		return float64(x0) + (math.Log10(v)-dlo)/(dhi-dlo)*float64(x1-x0)
	}
	fmt.Fprintf(b, `<text x="10" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", y+14, html.EscapeString(title))
	y += 24
	top := y
	h := len(bars)*(2*barH+gap) + 4
	// Decade grid lines and labels.
	for d := dlo; d <= dhi; d++ {
		x := xOf(math.Pow(10, d))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, top, x, top+h)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", x, top+h+12, html.EscapeString(tickLabel(math.Pow(10, d), unit)))
	}
	for i, br := range bars {
		gy := top + 2 + i*(2*barH+gap)
		fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", x0-6, gy+barH+4, html.EscapeString(truncate(br.label, 66)))
		for j, v := range []float64{br.wg, br.etcd} {
			by := gy + j*barH
			color := colorWG
			if j == 1 {
				color = colorEtcd
			}
			if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				fmt.Fprintf(b, `<text x="%d" y="%d" fill="#999">—</text>`+"\n", x0+2, by+barH-2)
				continue
			}
			w := math.Max(xOf(v)-float64(x0), 1)
			fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, by, w, barH-1, color)
			fmt.Fprintf(b, `<text x="%.1f" y="%d" fill="#333">%s</text>`+"\n", float64(x0)+w+4, by+barH-2, html.EscapeString(formatValue(v)))
		}
	}
	fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", x0, top, x0, top+h)
	return top + h + 30
}

// tickLabel labels a decade of the axis: 10 ms, 1 s, 100k, 1k B.
func tickLabel(v float64, unit string) string {
	switch unit {
	case "ms":
		if v >= 1000 {
			return shortNumber(v/1000) + " s"
		}
		return shortNumber(v) + " ms"
	case "B":
		return shortNumber(v) + " B"
	}
	return shortNumber(v)
}

// shortNumber writes powers of ten compactly: 0.01, 1, 100, 10k, 1M.
func shortNumber(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%gG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}
