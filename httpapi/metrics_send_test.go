package httpapi

import (
	"net/http"
	"testing"
	"time"
)

// TestMetricsEventsSent writes to watchers over SSE and over the WebSocket
// and checks that /metrics counts exactly the events each transport
// delivered and observes their notify-to-send latency.
func TestMetricsEventsSent(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	scrape := func() string {
		resp := s.do(t, req{path: "/metrics"})
		mustStatus(t, resp, http.StatusOK)
		return string(resp.body)
	}
	text := scrape()
	for _, series := range []string{
		`watchgate_events_sent_total{transport="sse"}`,
		`watchgate_events_sent_total{transport="ws"}`,
		`watchgate_notify_to_send_seconds_count{transport="sse"}`,
		`watchgate_notify_to_send_seconds_count{transport="ws"}`,
	} {
		if got := metricValue(text, series); got != 0 {
			t.Errorf("before any watch %s = %v, want 0", series, got)
		}
	}

	sw := s.openWatch(t, s.h2, "/v1/watch/m/?prefix=true", nil)
	ws := s.dialWS(t, nil)
	ws.send(t, `{"op":"watch","id":"all","key":"m/","prefix":true}`)
	ws.expect(t, "created", "all")
	ws.send(t, `{"op":"watch","id":"a","key":"m/a"}`)
	ws.expect(t, "created", "a")

	// A PUT reaches the SSE watch and both WebSocket watches; a
	// transaction of two puts the SSE watch and the prefix watch.
	s.put(t, "m/a", "1")
	s.do(t, req{method: http.MethodPost, path: "/v1/txn", body: `{"success":[{"put":{"key":"m/b","value":"2"}},{"put":{"key":"m/c","value":"3"}},{"put":{"key":"other","value":"4"}}]}`})
	sseEvents := 0
	for sseEvents < 3 {
		if ev := sw.next(t); ev.Type != "put" {
			t.Fatalf("SSE event %+v, want a put", ev)
		}
		sseEvents++
	}
	wsEvents := 0
	for wsEvents < 4 {
		m := ws.read(t)
		if m.Type != "events" {
			t.Fatalf("WebSocket message %s, want events", m.raw)
		}
		wsEvents += len(m.Events)
	}
	if wsEvents != 4 {
		t.Fatalf("WebSocket received %d events, want 4", wsEvents)
	}

	// The counters are fed after each write to the client: wait for them.
	want := map[string]float64{
		`watchgate_events_sent_total{transport="sse"}`: float64(sseEvents),
		`watchgate_events_sent_total{transport="ws"}`:  float64(wsEvents),
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		text = scrape()
		done := true
		for series, v := range want {
			if metricValue(text, series) < v {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	for series, v := range want {
		if got := metricValue(text, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	for tr, events := range map[string]float64{"sse": float64(sseEvents), "ws": float64(wsEvents)} {
		count := metricValue(text, `watchgate_notify_to_send_seconds_count{transport="`+tr+`"}`)
		sum := metricValue(text, `watchgate_notify_to_send_seconds_sum{transport="`+tr+`"}`)
		inf := metricValue(text, `watchgate_notify_to_send_seconds_bucket{transport="`+tr+`",le="+Inf"}`)
		// One observation per write that carried events: at least one,
		// at most one per event.
		if count < 1 || count > events {
			t.Errorf("%s: %v latency observations, want 1 to %v", tr, count, events)
		}
		if inf != count {
			t.Errorf("%s: +Inf bucket %v, count %v", tr, inf, count)
		}
		if sum <= 0 || sum > 10*count {
			t.Errorf("%s: latency sum %vs over %v observations", tr, sum, count)
		}
	}
}
