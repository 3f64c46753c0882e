package httpapi

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/watchgate/watchgate/kv"
)

// Metrics are the server's Prometheus metrics, served at GET /metrics.
// NewMetrics registers the process and Go runtime collectors and the
// counters that requests and commits feed; New adds gauges that read the
// store, the hub and the transports when scraped.
type Metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec
	writeDuration *prometheus.HistogramVec
	commitRevs    prometheus.Histogram
	commitEvents  prometheus.Counter
	authFailures  prometheus.Counter
	limited       *prometheus.CounterVec
	http2Errors   *prometheus.CounterVec
	eventsSent    *prometheus.CounterVec
	notifyToSend  *prometheus.HistogramVec

	observers sync.Map // observerKey -> *observer
}

// NewMetrics makes the metrics on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watchgate_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code (streams are counted when they end).",
		}, []string{"route", "method", "code"}),
		writeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "watchgate_write_duration_seconds",
			Help: "Time to serve a write request (PUT, DELETE, transaction, compaction), durable commit included.",
			// From a fast fsync to a slow disk under load.
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"route", "method"}),
		commitRevs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "watchgate_commit_revisions",
			Help:    "Revisions made durable by one group commit (one fsync).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		commitEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watchgate_commit_events_total",
			Help: "Key changes (put and delete events) committed.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "watchgate_auth_failures_total",
			Help: "Requests refused with 401: no token, an unknown one or an expired one.",
		}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watchgate_limited_total",
			Help: "Requests refused with 429, by limit (write_rate, streams).",
		}, []string{"limit"}),
		http2Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watchgate_http2_errors_total",
			Help: "HTTP/2 connection and stream errors the server sent (GOAWAY, RST_STREAM), by kind: conn_ or stream_ and the error code, e.g. conn_enhance_your_calm for a flooding peer.",
		}, []string{"type"}),
		eventsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "watchgate_events_sent_total",
			Help: "Change events written to watch clients, by transport (sse, ws); snapshot entries are not counted.",
		}, []string{"transport"}),
		notifyToSend: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "watchgate_notify_to_send_seconds",
			Help: "Time from the store's commit notification of a revision to the write of its events to a client, by transport; one observation per write, for its oldest event (events read back from history are not observed).",
			// From a write to a waiting client to one that is catching up.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"transport"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.writeDuration, m.commitRevs, m.commitEvents, m.authFailures, m.limited, m.http2Errors,
		m.eventsSent, m.notifyToSend,
	)
	for _, l := range []string{"write_rate", "streams"} {
		m.limited.WithLabelValues(l)
	}
	for _, t := range []string{"sse", "ws"} {
		m.eventsSent.WithLabelValues(t)
		m.notifyToSend.WithLabelValues(t)
	}
	return m
}

// ObserveCommits records one group commit; pass it to kv.Store.Subscribe,
// which calls it once per group commit with the revisions it made durable.
func (m *Metrics) ObserveCommits(batches []kv.Batch) {
	m.commitRevs.Observe(float64(len(batches)))
	n := 0
	for i := range batches {
		n += len(batches[i].Events)
	}
	m.commitEvents.Add(float64(n))
}

// onSend returns the OnSend hook of a watch transport (sse.Options,
// ws.Options) that feeds watchgate_events_sent_total and
// watchgate_notify_to_send_seconds under the label transport, then calls
// next when it is set.
func (m *Metrics) onSend(transport string, next func(int, time.Time)) func(int, time.Time) {
	sent := m.eventsSent.WithLabelValues(transport)
	latency := m.notifyToSend.WithLabelValues(transport)
	return func(events int, oldestNotify time.Time) {
		sent.Add(float64(events))
		if !oldestNotify.IsZero() {
			latency.Observe(time.Since(oldestNotify).Seconds())
		}
		if next != nil {
			next(events, oldestNotify)
		}
	}
}

// CountHTTP2Error counts an HTTP/2 error the server sent; it is the
// http.Server's HTTP2.CountError.
func (m *Metrics) CountHTTP2Error(errType string) {
	m.http2Errors.WithLabelValues(errType).Inc()
}

// Registry is the registry /metrics serves, for collectors of other parts.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// registerServer adds the gauges that read s's store, hub and transports.
func (m *Metrics) registerServer(s *Server) {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		gauge("watchgate_revision", "The store's current revision.", func() float64 {
			rev, _ := s.store.Revisions()
			return float64(rev)
		}),
		gauge("watchgate_compact_revision", "The oldest revision still readable.", func() float64 {
			_, c := s.store.Revisions()
			return float64(c)
		}),
		storeCollector{s},
		gauge("watchgate_ready", "1 when /readyz answers 200.", func() float64 {
			if s.ready.Load() {
				return 1
			}
			return 0
		}),
	}
	if s.opts.Hub != nil {
		cs = append(cs, hubCollector{s})
	}
	m.reg.MustRegister(cs...)
}

var (
	dbSizeDesc   = prometheus.NewDesc("watchgate_db_size_bytes", "Size of the store's file.", nil, nil)
	keysDesc     = prometheus.NewDesc("watchgate_keys", "Keys in the store.", nil, nil)
	watchersDesc = prometheus.NewDesc("watchgate_watchers", "Watchers by group of the watch hub.", []string{"group"}, nil)
	connsDesc    = prometheus.NewDesc("watchgate_connections", "Open watch connections by transport (SSE streams, WebSockets).", []string{"transport"}, nil)
	streamsDesc  = prometheus.NewDesc("watchgate_hub_streams", "Open streams of the watch hub.", nil, nil)
)

// storeCollector reads the store's status once per scrape.
type storeCollector struct{ s *Server }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dbSizeDesc; ch <- keysDesc }
func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.s.store.Status()
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(dbSizeDesc, prometheus.GaugeValue, float64(st.DBSizeBytes))
	ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(st.Keys))
}

// hubCollector reads the hub's and the transports' counts once per scrape.
type hubCollector struct{ s *Server }

func (c hubCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- watchersDesc
	ch <- connsDesc
	ch <- streamsDesc
}

func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.opts.Hub.Stats()
	for _, g := range []struct {
		name string
		n    int
	}{{"synced", st.Synced}, {"unsynced", st.Unsynced}, {"victim", st.Victim}} {
		ch <- prometheus.MustNewConstMetric(watchersDesc, prometheus.GaugeValue, float64(g.n), g.name)
	}
	ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(c.s.sse.Streams()), "sse")
	ch <- prometheus.MustNewConstMetric(connsDesc, prometheus.GaugeValue, float64(c.s.ws.Connections()), "ws")
	ch <- prometheus.MustNewConstMetric(streamsDesc, prometheus.GaugeValue, float64(st.Streams))
}

// serveMetrics serves GET /metrics in the Prometheus text format.
func (s *Server) serveMetrics() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{s},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

type promLogger struct{ s *Server }

func (l promLogger) Println(v ...any) { l.s.log.Warn().Msgf("metrics: %v", v) }

// observe records a finished request: its route pattern (never the raw
// path, whose keys would make unbounded label values), method and status,
// and for writes the duration.
func (m *Metrics) observe(r *http.Request, status int, d time.Duration) {
	// The router records the pattern in the request it routed, which is
	// r unless a middleware copied it; otherwise ask its context.
	route := r.Pattern
	if route == "" {
		route = "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if p := rc.RoutePattern(); p != "" {
				route = p
			}
		}
	}
	method := r.Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodOptions:
	default:
		method = "other"
	}
	o := m.observerOf(route, method, status)
	o.requests.Inc()
	if o.duration != nil {
		o.duration.Observe(d.Seconds())
	}
}

// observerKey names the series that one kind of request feeds.
type observerKey struct {
	route, method string
	status        int
}

// observer is the series that requests of one observerKey feed: the
// request counter, and for successful writes the duration histogram
// (nil otherwise).
type observer struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// observerOf returns the cached series of (route, method, status), so that
// a request costs one map lookup rather than hashing its label values into
// the vectors. Routes are the router's patterns and methods and statuses
// few, so the cache stays small.
func (m *Metrics) observerOf(route, method string, status int) *observer {
	k := observerKey{route, method, status}
	if o, ok := m.observers.Load(k); ok {
		return o.(*observer)
	}
	o := &observer{requests: m.requests.WithLabelValues(route, method, strconv.Itoa(status))}
	if isWrite(method, route) && status < 300 {
		o.duration = m.writeDuration.WithLabelValues(route, method)
	}
	actual, _ := m.observers.LoadOrStore(k, o)
	return actual.(*observer)
}

// isWrite reports whether a request of method on route writes the store.
func isWrite(method, route string) bool {
	switch route {
	case "/v1/kv/*":
		return method == http.MethodPut || method == http.MethodDelete
	case "/v1/txn", "/v1/compact":
		return method == http.MethodPost
	}
	return false
}
