package httpapi

import (
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientKey names the client that limits count against: its token when it
// has one, otherwise its IP address (the connection's peer; a proxy in
// front makes all its clients one).
func clientKey(r *http.Request) string {
	if p := Principal(r.Context()); p != nil && !p.IsAnonymous() {
		return "token:" + p.Name
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// rateLimitedError is a 429 that says when to come back.
type rateLimitedError struct {
	requestError
	wait time.Duration
}

func (e *rateLimitedError) retryAfter() time.Duration { return e.wait }

// writeLimiter is a token bucket per client: rate writes a second on
// average, bursts of burst. Buckets that have filled up again (idle
// clients) are dropped as new clients come, so memory follows the number
// of recently active clients. It starts no goroutine.
type writeLimiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex // guards the fields below
	buckets map[string]*rate.Limiter
	adds    int // buckets added since the last sweep
}

// sweepEvery is how many new buckets trigger a sweep of the idle ones.
const sweepEvery = 1024

func newWriteLimiter(perSecond float64, burst int) *writeLimiter {
	if burst < 1 {
		burst = max(1, int(perSecond))
	}
	return &writeLimiter{rate: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*rate.Limiter)}
}

// reserve takes one write from key's bucket, or returns how long to wait
// for it (and takes nothing).
func (l *writeLimiter) reserve(key string, now time.Time) time.Duration {
	l.mu.Lock()
	b := l.buckets[key]
	if b == nil {
		if l.adds++; l.adds >= sweepEvery {
			l.adds = 0
			for k, old := range l.buckets {
				if old.TokensAt(now) >= float64(l.burst) {
					delete(l.buckets, k)
				}
			}
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	res := b.ReserveN(now, 1)
	if !res.OK() {
		return time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// limitWrites answers 429 with Retry-After to a write over the client's
// rate (Options.WriteRate). Every write request takes one token:
// PUT, DELETE, a transaction, a compaction.
func (s *Server) limitWrites(next http.Handler) http.Handler {
	if s.writes == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := s.writes.reserve(clientKey(r), time.Now()); d > 0 {
			s.metrics.limited.WithLabelValues("write_rate").Inc()
			s.writeError(w, r, &rateLimitedError{
				requestError: requestError{kind: ErrRateLimited, msg: "over the write rate of " +
					strconv.FormatFloat(float64(s.writes.rate), 'g', -1, 64) + "/s (bursts of " +
					strconv.Itoa(s.writes.burst) + "); retry after " + d.Round(time.Millisecond).String()},
				wait: d,
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// streamLimiter counts the open streams (SSE streams and WebSockets) of
// each client against a limit.
type streamLimiter struct {
	max int

	mu   sync.Mutex // guards open
	open map[string]int
}

func newStreamLimiter(max int) *streamLimiter {
	return &streamLimiter{max: max, open: make(map[string]int)}
}

// acquire counts a stream of key in, unless key is at the limit.
func (l *streamLimiter) acquire(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] >= l.max {
		return false
	}
	l.open[key]++
	return true
}

func (l *streamLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// limitStreams admits a stream of the request's client, or answers 429;
// release must be called when an admitted stream ends.
func (s *Server) limitStreams(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	key := clientKey(r)
	if !s.streams.acquire(key) {
		s.metrics.limited.WithLabelValues("streams").Inc()
		s.writeError(w, r, &requestError{kind: ErrTooManyStreams, msg: "this client has " +
			strconv.Itoa(s.streams.max) + " open watch streams and sockets, its limit; close one, or watch more keys on one WebSocket"})
		return nil, false
	}
	return func() { s.streams.release(key) }, true
}
