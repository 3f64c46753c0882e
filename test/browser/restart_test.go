package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// event is one event as an observer recorded it, in the order it came.
type event struct {
	Rev   int64  `json:"rev"`
	Type  string `json:"type"`
	Key   string `json:"key"`
	Value string `json:"value"`
}

// clientPageJS starts a page's watchgate.js client: a watch and a
// snapshot of the prefix load/, on one socket. window.T records every
// event, every connection state, and the snapshot. It resolves when both
// watches are registered.
const clientPageJS = `(async () => {
  const m = await import("/watchgate.js");
  const wg = new m.Watchgate({ minBackoff: 100, maxBackoff: 1000 });
  const T = window.T = { events: [], states: [], ends: [], wg };
  wg.addEventListener("state", (e) => T.states.push(e.detail));
  const w = wg.watch({ key: "load/", prefix: true });
  w.addEventListener("events", (e) => {
    for (const ev of e.detail.events) T.events.push({ rev: ev.kv.mod_revision, type: ev.type, key: ev.kv.key, value: ev.kv.value ?? "" });
  });
  w.addEventListener("end", (e) => T.ends.push("watch: " + e.detail.reason));
  const s = T.snap = wg.snapshot({ key: "load/", prefix: true });
  s.addEventListener("end", (e) => T.ends.push("snapshot: " + e.detail.reason));
  // The EventStream helper, over Server-Sent Events.
  T.sse = []; T.sseOpens = 0;
  const es = T.es = new m.EventStream("load/", { prefix: true });
  es.addEventListener("put", (e) => T.sse.push({ rev: e.detail.kv.mod_revision, type: "put", key: e.detail.kv.key, value: e.detail.kv.value ?? "" }));
  es.addEventListener("delete", (e) => T.sse.push({ rev: e.detail.kv.mod_revision, type: "delete", key: e.detail.kv.key, value: "" }));
  es.addEventListener("state", (e) => { if (e.detail.state === "open") T.sseOpens++; });
  await Promise.all([
    new Promise((r) => w.addEventListener("created", r, { once: true })),
    new Promise((r) => s.addEventListener("synced", r, { once: true })),
    new Promise((r) => es.addEventListener("state", (e) => e.detail.state === "open" && r())),
  ]);
  return true;
})()`

// eventSourcePageJS opens a plain EventSource on the prefix load/ and
// records its events in window.S; it resolves once the stream is open.
const eventSourcePageJS = `(async () => {
  const S = window.S = { events: [], opens: 0, errors: 0 };
  const es = S.es = new EventSource("/v1/watch/load%2F?prefix=true");
  for (const type of ["put", "delete"]) {
    es.addEventListener(type, (e) => {
      const kv = JSON.parse(e.data);
      S.events.push({ id: e.lastEventId, rev: kv.mod_revision, type, key: kv.key, value: kv.value ?? "" });
    });
  }
  es.addEventListener("compacted", () => S.compacted = true);
  es.onerror = () => { S.errors++; S.readyState = es.readyState; };
  await new Promise((r) => { es.onopen = () => { S.opens++; r(); }; });
  es.onopen = () => S.opens++;
  return true;
})()`

// TestRestartResumesEveryWatch writes continuously while the server is
// stopped gracefully and started again, then killed and started again
// (same binary, same data directory, same port). Observers watch the
// written prefix through both restarts: the dashboard's event log, a page
// using watchgate.js directly (a watch and a snapshot over one socket, and
// its EventStream helper over SSE), and a page with a plain browser
// EventSource. Each must show
// every write exactly once, in revision order, and the snapshot must equal
// the store.
func TestRestartResumesEveryWatch(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	s.put(t, "load/0000", "before the watches")

	dash := openDashboard(t, b, s, "?prefix=load/&log=load/")
	dash.waitFor(t, "event log watching", `document.querySelector("#log-info").dataset.revision`, `document.querySelector("#log-info").textContent`, waitTimeout)
	client := b.newPage("watchgate.js", s.base+"/healthz")
	client.eval(t, clientPageJS, nil)
	es := b.newPage("EventSource", s.base+"/healthz")
	es.eval(t, eventSourcePageJS, nil)
	start := s.put(t, "load/0001", "first watched").Revision

	// The writer: one key per write, each written once (If-None-Match: *),
	// until told to stop; a write whose answer was lost in a restart is
	// retried, and a 412 then means the lost attempt was committed.
	var written atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stopWriting := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		for i := 2; ; i++ {
			select {
			case <-stopWriting:
				writerDone <- nil
				return
			default:
			}
			key, value := fmt.Sprintf("load/%04d", i), fmt.Sprintf("value %d", i)
			for {
				status, body, err := s.do(ctx, http.MethodPut, key, value, map[string]string{"If-None-Match": "*"})
				if ctx.Err() != nil {
					writerDone <- ctx.Err()
					return
				}
				if err == nil && (status == http.StatusCreated || status == http.StatusPreconditionFailed) {
					break
				}
				if err == nil && status != http.StatusServiceUnavailable {
					writerDone <- fmt.Errorf("PUT %s: %d %s", key, status, body)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
			written.Add(1)
			time.Sleep(25 * time.Millisecond)
		}
	}()
	// writeMore waits for n more writes.
	writeMore := func(n int64) {
		t.Helper()
		target := written.Load() + n
		deadline := time.Now().Add(30 * time.Second)
		for written.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("the writer is stuck at %d writes", written.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// reconnected waits until every observer is back after the n-th
	// restart, so that each restart cuts live connections of all three.
	reconnected := func(n int) {
		t.Helper()
		dash.waitFor(t, fmt.Sprintf("dashboard resumed %d times", n),
			fmt.Sprintf(`document.querySelector("#conn").dataset.state === "connected" && document.querySelectorAll('#log li.marker[data-kind="resumed"]').length >= %d`, n),
			`document.querySelector("#conn").textContent`, 30*time.Second)
		client.waitFor(t, fmt.Sprintf("watchgate.js resumed %d times", n),
			fmt.Sprintf(`T.wg.state === "connected" && T.states.filter(s => s.state === "connected" && s.resumed).length >= %d && T.es.state === "open" && T.sseOpens >= %d`, n, n+1),
			`{states: T.states, sse: T.es.state, sseOpens: T.sseOpens}`, 30*time.Second)
		es.waitFor(t, fmt.Sprintf("EventSource open again %d times", n),
			fmt.Sprintf(`S.es.readyState === EventSource.OPEN && S.opens >= %d`, n+1),
			`{readyState: S.es.readyState, opens: S.opens, errors: S.errors}`, 30*time.Second)
	}

	writeMore(20)
	s.stop()
	t.Logf("stopped (SIGTERM) after %d writes", written.Load())
	time.Sleep(300 * time.Millisecond)
	s.start()
	reconnected(1)
	writeMore(20)
	s.kill()
	t.Logf("killed (SIGKILL) after %d writes", written.Load())
	time.Sleep(300 * time.Millisecond)
	s.start()
	reconnected(2)
	writeMore(20)
	close(stopWriting)
	select {
	case err := <-writerDone:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the writer did not stop; %d writes", written.Load())
	}
	total := written.Load()
	t.Logf("%d writes in all", total)

	// What the store holds is what every observer must have seen: each key
	// was created once, so its mod_revision is the revision of its event.
	want := storedEvents(t, s, start)
	if int64(len(want)) != total+1 {
		t.Fatalf("the store has %d keys written since revision %d, want %d", len(want), start, total+1)
	}
	last := want[len(want)-1].Rev

	t.Run("dashboard event log", func(t *testing.T) {
		const entries = `[...document.querySelectorAll("#log li.event")].reverse().map(li => ({rev: +li.dataset.rev, type: li.dataset.type, key: li.dataset.key, value: li.dataset.value ?? ""}))`
		got := collect(t, dash, entries, last)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("event log (-want +got)\n%s", diff)
		}
		var markers []string
		dash.eval(t, `[...document.querySelectorAll("#log li.marker")].map(li => li.dataset.kind)`, &markers)
		if n := count(markers, "resumed"); n != 2 {
			t.Errorf("event log markers %q: want 2 resumptions", markers)
		}
		dash.waitFor(t, "connection badge resumed", `document.querySelector("#conn").dataset.state === "connected" && /resumed from revision \d+/.test(document.querySelector("#conn").textContent)`,
			`document.querySelector("#conn").textContent`, waitTimeout)
	})

	t.Run("watchgate.js", func(t *testing.T) {
		got := collect(t, client, `T.events`, last)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("watch events (-want +got)\n%s", diff)
		}
		var rec struct {
			States []struct {
				State       string `json:"state"`
				Resumed     bool   `json:"resumed"`
				ResumedFrom *int64 `json:"resumedFrom"`
			} `json:"states"`
			Ends []string `json:"ends"`
			Snap []event  `json:"snap"`
		}
		client.eval(t, `({states: T.states, ends: T.ends, snap: T.snap.sorted().filter(kv => kv.mod_revision >= `+fmt.Sprint(start)+`).map(kv => ({rev: kv.mod_revision, type: "put", key: kv.key, value: kv.value}))})`, &rec)
		var resumes []int64
		for _, st := range rec.States {
			if st.State == "connected" && st.Resumed && st.ResumedFrom != nil {
				resumes = append(resumes, *st.ResumedFrom)
			}
		}
		if len(resumes) != 2 {
			t.Errorf("connection states %+v: want two resumptions with a revision", rec.States)
		}
		if len(rec.Ends) != 0 {
			t.Errorf("watches ended: %q", rec.Ends)
		}
		if diff := cmp.Diff(want, rec.Snap); diff != "" {
			t.Errorf("snapshot replica (-want +got)\n%s", diff)
		}
	})

	t.Run("EventStream", func(t *testing.T) {
		got := collect(t, client, `T.sse`, last)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("EventStream events (-want +got)\n%s", diff)
		}
	})

	t.Run("EventSource", func(t *testing.T) {
		got := collect(t, es, `S.events.map(e => ({rev: e.rev, type: e.type, key: e.key, value: e.value}))`, last)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("EventSource events (-want +got)\n%s", diff)
		}
		var st struct {
			Opens, Errors int
			IDs           []string
		}
		es.eval(t, `({opens: S.opens, errors: S.errors, ids: S.events.map(e => e.id)})`, &st)
		if st.Opens < 3 || st.Errors < 2 {
			t.Errorf("EventSource opened %d times with %d errors; want a reconnection per restart", st.Opens, st.Errors)
		}
		for i, id := range st.IDs {
			if i < len(got) && id != fmt.Sprint(got[i].Rev) {
				t.Errorf("event %d has id %q, want its revision %d", i, id, got[i].Rev)
			}
		}
	})
}

// storedEvents reads the keys under load/ from REST and returns, in
// revision order, the put each of them made since revision from.
func storedEvents(t *testing.T, s *server, from int64) []event {
	t.Helper()
	resp, err := client.Get(s.api + "/v1/kv/load%2F?prefix=true")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		KVs []struct {
			Key         string `json:"key"`
			Value       string `json:"value"`
			ModRevision int64  `json:"mod_revision"`
			Version     int64  `json:"version"`
		} `json:"kvs"`
		More bool `json:"more"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.More {
		t.Fatalf("range load/: %v (more %v)", err, r.More)
	}
	var out []event
	for _, kv := range r.KVs {
		if kv.Version != 1 {
			t.Errorf("%s has version %d: written more than once", kv.Key, kv.Version)
		}
		if kv.ModRevision >= from {
			out = append(out, event{Rev: kv.ModRevision, Type: "put", Key: kv.Key, Value: kv.Value})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rev < out[j].Rev })
	return out
}

// collect waits until the page's list of events (the expression list)
// reaches revision last, then a little longer for any event that should
// not be there, and returns it.
func collect(t *testing.T, p *page, list string, last int64) []event {
	t.Helper()
	p.waitFor(t, fmt.Sprintf("events through revision %d", last),
		fmt.Sprintf(`(%s).some(e => e.rev >= %d)`, list, last),
		fmt.Sprintf(`(%s).slice(-5)`, list), 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	var got []event
	p.eval(t, list, &got)
	return got
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}
