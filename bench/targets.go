package main

import (
	"fmt"
	"math"
	"strings"
)

// check is one performance target judged on a run's medians.
type check struct {
	Target   string `json:"target"`
	Via      string `json:"via,omitempty"`
	Status   string `json:"status"` // met, not met, not measured
	Evidence string `json:"evidence"`
}

const (
	statusMet         = "met"
	statusNotMet      = "not met"
	statusNotMeasured = "not measured"
)

// evaluateTargets judges the targets on the results. A target whose case
// was not run at its size is "not measured".
func evaluateTargets(cfg *config, res *results) []check {
	var cs []check
	med := func(scenario, cas, name, target string) float64 {
		return res.find(scenario, cas, name).median(target)
	}
	judge := func(target, via string, ok bool, measured bool, evidence string) {
		st := statusNotMeasured
		switch {
		case !measured:
		case ok:
			st = statusMet
		default:
			st = statusNotMet
		}
		cs = append(cs, check{Target: target, Via: via, Status: st, Evidence: evidence})
	}
	has := func(vs ...float64) bool {
		for _, v := range vs {
			if math.IsNaN(v) {
				return false
			}
		}
		return true
	}

	// 1. Durable writes with 256 clients, with net/http's client and with
	// the lean one (the server's own rate, as wrk would show it).
	for _, tr := range []string{"rest", "rest-lean"} {
		wg := med("writes", "256 clients", "writes/s", "watchgate/"+tr)
		et := med("writes", "256 clients", "writes/s", sysEtcd)
		judge("durable writes/s, 256 clients, >= 3x etcd", tr, wg >= 3*et, has(wg, et),
			fmt.Sprintf("%s/s vs etcd %s/s = %s", formatValue(wg), formatValue(et), formatRatio(wg/et)))
		judge("durable writes/s, 256 clients, >= 30,000/s", tr, wg >= 30000, has(wg),
			fmt.Sprintf("%s/s", formatValue(wg)))
		p99 := med("writes", "256 clients", "p99", "watchgate/"+tr)
		judge("durable writes, 256 clients, p99 <= 20 ms", tr, p99 <= 20, has(p99),
			fmt.Sprintf("p99 %s ms", formatValue(p99)))
	}

	// 2. Fan-out of one write.
	for _, tr := range []string{"ws", "sse"} {
		t := "watchgate/" + tr
		c10 := "10,000 watchers"
		v, ev := med("fanout", c10, "last watcher", t), med("fanout", c10, "last watcher", sysEtcd)
		judge("one write to 10,000 watchers <= 10 ms", tr, v <= 10, has(v), fmt.Sprintf("%s ms", formatValue(v)))
		judge("one write to 10,000 watchers >= 10x faster than etcd", tr, ev >= 10*v, has(v, ev),
			fmt.Sprintf("%s ms vs etcd %s ms = %s faster", formatValue(v), formatValue(ev), formatRatio(ev/v)))
		v = med("fanout", "100,000 watchers", "last watcher", t)
		judge("one write to 100,000 watchers <= 50 ms", tr, v <= 50, has(v), fmt.Sprintf("%s ms", formatValue(v)))
	}

	// 3. Sustained fan-out.
	for _, tr := range []string{"ws", "sse"} {
		t := "watchgate/" + tr
		cas := "1,000 watchers, 1,000 writes/s"
		d, p := med("sustained", cas, "deliveries/s", t), med("sustained", cas, "p99", t)
		note := ""
		if m := res.find("sustained", cas, "deliveries/s"); m != nil && m.Notes[t] != "" {
			note = " (" + m.Notes[t] + ")"
		}
		judge("sustained fan-out >= 1,000,000 deliveries/s", tr, d >= 0.99e6 && note == "", has(d),
			fmt.Sprintf("%s deliveries/s%s", formatValue(d), note))
		judge("sustained fan-out p99 <= 50 ms", tr, p <= 50, has(p), fmt.Sprintf("p99 %s ms", formatValue(p)))
	}

	// 4. Matching cost.
	w0 := med("matching", matchingCase(0), "writes/s", "watchgate/rest")
	w1 := med("matching", matchingCase(1000000), "writes/s", "watchgate/rest")
	c0 := med("matching", matchingCase(0), "server CPU per write", "watchgate/rest")
	c1 := med("matching", matchingCase(1000000), "server CPU per write", "watchgate/rest")
	judge("writes/s with 1M non-matching watchers >= 0.95x with none", "rest (watchers on ws)", w1 >= 0.95*w0, has(w0, w1),
		fmt.Sprintf("%s/s vs %s/s = %s; server CPU per write %s vs %s µs", formatValue(w1), formatValue(w0), formatRatio(w1/w0), formatValue(c1), formatValue(c0)))

	// 5. Capacity.
	r := med("capacity", "1,000,000 idle watches", "server RSS", "watchgate/ws")
	judge("1,000,000 multiplexed watches in <= 1 GiB", "ws", r <= 1024, has(r), fmt.Sprintf("RSS %s MiB", formatValue(r)))
	r = med("capacity", "100,000 idle watches", "server RSS", "watchgate/sse")
	judge("100,000 HTTP/2 SSE streams in <= 1 GiB", "sse", r <= 1024, has(r), fmt.Sprintf("RSS %s MiB", formatValue(r)))

	// 6. Catch-up.
	for _, tr := range []string{"ws", "sse"} {
		v := med("catchup", "1,000,000 revisions behind", "events/s", "watchgate/"+tr)
		judge("catch-up >= 1,000,000 events/s", tr, v >= 1e6, has(v), fmt.Sprintf("%s events/s", formatValue(v)))
	}

	// 7. Reconnect storm.
	for _, tr := range []string{"ws", "sse"} {
		for _, mode := range []string{"own key", "shared prefix"} {
			cas := "1,000 watchers × 10,000 revisions behind, " + mode
			m := res.find("storm", cas, "all live")
			if m == nil {
				continue
			}
			v := m.median("watchgate/" + tr)
			note := m.Notes["watchgate/"+tr]
			judge("reconnect storm ("+mode+") <= 15 s", tr, v <= 15 && note == "", has(v),
				strings.TrimSpace(fmt.Sprintf("%s s %s", formatValue(v), note)))
		}
	}
	if res.find("storm", "1,000 watchers × 10,000 revisions behind, own key", "all live") == nil &&
		res.find("storm", "1,000 watchers × 10,000 revisions behind, shared prefix", "all live") == nil {
		judge("reconnect storm <= 15 s", "", false, false, "")
	}

	return cs
}

func textTargets(cs []check) string {
	var b strings.Builder
	b.WriteString("Targets:\n")
	for _, c := range cs {
		via := ""
		if c.Via != "" {
			via = " [" + c.Via + "]"
		}
		ev := ""
		if c.Status != statusNotMeasured {
			ev = ": " + c.Evidence
		}
		fmt.Fprintf(&b, "  %-12s %s%s%s\n", c.Status, c.Target, via, ev)
	}
	return b.String()
}

func markdownTargets(cs []check) string {
	var b strings.Builder
	b.WriteString("| target | via | status | evidence |\n|---|---|---|---|\n")
	for _, c := range cs {
		ev := c.Evidence
		if c.Status == statusNotMeasured {
			ev = "—"
		}
		st := c.Status
		switch st {
		case statusMet:
			st = "**met**"
		case statusNotMet:
			st = "**not met**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.Target, c.Via, st, ev)
	}
	return b.String()
}
