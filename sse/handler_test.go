package sse

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

func TestWatchStream(t *testing.T) {
	e := newEnv(t, Options{})
	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			before := e.put(t, "config/a", "before")
			s := connect(t, cl.c, e.url("config/", "prefix=true"), sseclient.Options{})
			resp := s.Response()
			if want := map[bool]int{true: 2, false: 1}[strings.HasPrefix(cl.name, "HTTP/2")]; resp.ProtoMajor != want {
				t.Errorf("protocol %s", resp.Proto)
			}
			rev, compact := e.store.Revisions()
			wantHeaders := map[string]string{
				"Content-Type":       "text/event-stream",
				"Cache-Control":      "no-cache",
				"X-Accel-Buffering":  "no",
				"X-Revision":         strconv.FormatInt(rev, 10),
				"X-Compact-Revision": strconv.FormatInt(compact, 10),
			}
			for k, v := range wantHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if rev != before {
				t.Fatalf("store moved: %d", rev)
			}

			r1 := e.put(t, "config/a", "on")
			r2 := e.del(t, "config/a")
			e.put(t, "other", "x")
			r4 := e.txn(t, "config/b", "1", "other/c", "2", "config/c", "3")
			evs4 := e.storeEvents(t, r4)
			want := []wire{
				{fmt.Sprint(r1), "put", kvData(&e.storeEvents(t, r1)[0], false)},
				{fmt.Sprint(r2), "delete", kvData(&e.storeEvents(t, r2)[0], false)},
				{fmt.Sprintf("%d.0", r4), "put", kvData(&evs4[0], false)},
				{fmt.Sprint(r4), "put", kvData(&evs4[2], false)},
			}
			var got []wire
			var retry time.Duration
			for range want {
				ev := nextEvent(t, s)
				retry = ev.Retry
				got = append(got, wire{ev.ID, ev.Type, ev.Data})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if retry < time.Second || retry > 3*time.Second {
				t.Errorf("retry %v, want 1s to 3s", retry)
			}
			if !strings.Contains(got[0].Data, `"value":"on"`) || strings.Contains(got[0].Data, "prev_kv") {
				t.Errorf("put data %s", got[0].Data)
			}
		})
	}
}

// TestWatchStartOrder checks API.md's order: Last-Event-ID header, then
// last_event_id=, then rev=, then the next revision.
func TestWatchStartOrder(t *testing.T) {
	e := newEnv(t, Options{})
	var revs []int64
	for i := range 5 {
		revs = append(revs, e.put(t, "k", fmt.Sprint(i)))
	}
	tests := []struct {
		name   string
		query  string
		header string
		first  int64 // revision of the first event; 0: the next write
	}{
		{"header wins", fmt.Sprintf("rev=%d&last_event_id=%d", revs[0], revs[1]), fmt.Sprint(revs[2]), revs[3]},
		{"query id over rev", fmt.Sprintf("rev=%d&last_event_id=%d", revs[0], revs[1]), "", revs[2]},
		{"rev", fmt.Sprintf("rev=%d", revs[1]), "", revs[1]},
		{"now", "", "", 0},
		{"rev 0 is now", "rev=0", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := connect(t, e.h1, e.url("k", tt.query), sseclient.Options{LastEventID: tt.header})
			want := tt.first
			if want == 0 {
				want = e.put(t, "k", "next")
			}
			if ev := nextEvent(t, s); ev.ID != fmt.Sprint(want) {
				t.Errorf("first event id %q, want %d", ev.ID, want)
			}
		})
	}
}

func TestWatchFilters(t *testing.T) {
	e := newEnv(t, Options{MinProgress: time.Millisecond})
	base := e.put(t, "a", "0")
	e.put(t, "a", "1")
	e.del(t, "a")
	e.put(t, "b", "2")
	e.put(t, "c", "3")
	e.txn(t, "b", "-", "a", "4", "d", "5")
	last := e.put(t, "zz", "end")
	tests := []struct {
		query string
		want  []string // type key, and whether prev_kv is there
	}{
		{"", []string{"put a", "put a", "delete a", "put a"}},
		{"events=put", []string{"put a", "put a", "put a"}},
		{"events=delete", []string{"delete a"}},
		{"events=put,delete", []string{"put a", "put a", "delete a", "put a"}},
		{"events=put&events=delete", []string{"put a", "put a", "delete a", "put a"}},
		{"prev_kv=true", []string{"put a", "put a prev", "delete a prev", "put a"}},
		{"prev_kv", []string{"put a", "put a prev", "delete a prev", "put a"}},
		{"range_end=c", []string{"put a", "put a", "delete a", "put b", "delete b", "put a"}},
		{"range_end=%00", []string{"put a", "put a", "delete a", "put b", "put c", "delete b", "put a", "put d", "put zz"}},
		{"range_end=c&events=delete", []string{"delete a", "delete b"}},
	}
	for _, cl := range e.h2Clients() {
		for _, tt := range tests {
			t.Run(cl.name+"/"+tt.query, func(t *testing.T) {
				q := fmt.Sprintf("rev=%d&progress=100ms", base)
				if tt.query != "" {
					q += "&" + tt.query
				}
				s := connect(t, cl.c, e.url("a", q), sseclient.Options{})
				var got []string
				for {
					ev := nextEvent(t, s)
					if ev.Type == "progress" {
						if ev.ID != fmt.Sprint(last) {
							t.Fatalf("progress %q before the last revision %d", ev.ID, last)
						}
						break
					}
					var d struct {
						Key    string
						PrevKV *struct{ Value string } `json:"prev_kv"`
					}
					mustUnmarshal(t, ev.Data, &d)
					s := ev.Type + " " + d.Key
					if d.PrevKV != nil {
						s += " prev"
					}
					got = append(got, s)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("events (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestWatchBadRequests(t *testing.T) {
	e := newEnv(t, Options{})
	tests := []struct {
		name   string
		path   string
		header string
		status int
		detail string
	}{
		{"empty key", "/v1/watch/", "", 400, "empty key"},
		{"prefix and range_end", "/v1/watch/a?prefix=true&range_end=b", "", 400, "not both"},
		{"empty range", "/v1/watch/b?range_end=a", "", 400, "not after"},
		{"events", "/v1/watch/a?events=update", "", 400, "events"},
		{"empty events", "/v1/watch/a?events=", "", 400, "events"},
		{"negative progress", "/v1/watch/a?progress=-1s", "", 400, "progress"},
		{"short progress", "/v1/watch/a?progress=1ms", "", 400, "at least 1s"},
		{"bad progress", "/v1/watch/a?progress=soon", "", 400, "progress"},
		{"format", "/v1/watch/a?format=xml", "", 400, "format"},
		{"negative rev", "/v1/watch/a?rev=-1", "", 400, "rev"},
		{"bad rev", "/v1/watch/a?rev=x", "", 400, "rev"},
		{"bool", "/v1/watch/a?prev_kv=maybe", "", 400, "prev_kv"},
		{"Last-Event-ID", "/v1/watch/a", "abc", 400, "Last-Event-ID"},
		{"last_event_id", "/v1/watch/a?last_event_id=01", "", 400, "last_event_id"},
		{"sub overflow", "/v1/watch/a?last_event_id=5.2147483648", "", 400, "last_event_id"},
		{"bad query", "/v1/watch/a?x=%zz", "", 400, "query"},
		{"key too large", "/v1/watch/" + strings.Repeat("k", 4097), "", 413, "key"},
		{"range_end too large", "/v1/watch/a?range_end=" + strings.Repeat("k", 4097), "", 413, "range_end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.header != "" {
				req.Header.Set("Last-Event-ID", tt.header)
			}
			resp, err := e.h1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			p := problem(t, resp)
			if p["status"] != float64(tt.status) || !strings.Contains(fmt.Sprint(p["detail"]), tt.detail) {
				t.Errorf("problem %v, want status %d and %q in detail", p, tt.status, tt.detail)
			}
		})
	}
}

// TestWatchErrorsThroughOptions checks that errors before streaming go to
// Options.WriteError with errors a server's table can classify.
func TestWatchErrorsThroughOptions(t *testing.T) {
	var got []error
	e := newEnv(t, Options{WriteError: func(w http.ResponseWriter, r *http.Request, err error) {
		got = append(got, err)
		w.WriteHeader(http.StatusTeapot)
	}})
	for _, path := range []string{"/v1/watch/?x=1", "/v1/watch/a?last_event_id=x", "/v1/watch/" + strings.Repeat("k", 5000)} {
		resp, err := e.h1.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot {
			t.Errorf("%s: status %d", path, resp.StatusCode)
		}
	}
	if len(got) != 3 || !errors.Is(got[0], ErrBadRequest) || !errors.Is(got[1], ErrBadRequest) ||
		!errors.Is(got[1], ErrInvalidID) || !errors.Is(got[2], kv.ErrKeyTooLarge) {
		t.Errorf("errors %v", got)
	}
}

func TestWatchProgress(t *testing.T) {
	for _, cl := range h2Names {
		t.Run(cl, func(t *testing.T) {
			e := newEnv(t, Options{MinProgress: time.Millisecond, Heartbeat: -1})
			r := e.put(t, "k", "v")
			s := connect(t, e.client(cl), e.url("k", "progress=50ms"), sseclient.Options{})
			want := wire{fmt.Sprint(r), "progress", fmt.Sprintf(`{"revision":%d}`, r)}
			if got := nextWire(t, s); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
			// Writes elsewhere move the bookmark on.
			r2 := e.put(t, "other", "v")
			for {
				got := nextWire(t, s)
				if got.Type != "progress" {
					t.Fatalf("got %+v", got)
				}
				if got.ID == fmt.Sprint(r2) {
					break
				}
			}
		})
	}
}

// rawStream reads the raw body of a watch.
func rawStream(t *testing.T, c *http.Client, url string, hdr http.Header) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	l, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v (after %q)", err, l)
	}
	return strings.TrimSuffix(l, "\n")
}

func TestWatchHeartbeat(t *testing.T) {
	e := newEnv(t, Options{Heartbeat: 30 * time.Millisecond, RetryMin: 1500 * time.Millisecond, RetryMax: 1500 * time.Millisecond})
	for _, cl := range e.clients() {
		t.Run(cl.name, func(t *testing.T) {
			_, br := rawStream(t, cl.c, e.url("k", "progress=0"), nil)
			var got []string
			for range 4 {
				got = append(got, readLine(t, br))
			}
			if diff := cmp.Diff([]string{"retry: 1500", "", ": heartbeat", ": heartbeat"}, got); diff != "" {
				t.Errorf("stream (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWatchNDJSON(t *testing.T) {
	e := newEnv(t, Options{})
	base := e.put(t, "n/a", "1")
	r := e.txn(t, "n/a", "2", "n/b", "3")
	for _, tt := range []struct {
		name, query string
		hdr         http.Header
	}{
		{"format", "format=ndjson", nil},
		{"accept", "", http.Header{"Accept": {"text/plain, application/x-ndjson;q=0.9"}}},
	} {
		for _, cl := range e.h2Clients() {
			t.Run(cl.name+"/"+tt.name, func(t *testing.T) {
				q := fmt.Sprintf("prefix=true&rev=%d&prev_kv=true", base)
				if tt.query != "" {
					q += "&" + tt.query
				}
				resp, br := rawStream(t, cl.c, e.url("n/", q), tt.hdr)
				if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
					t.Errorf("Content-Type %q", ct)
				}
				evs := e.storeEvents(t, r)
				want := []string{
					fmt.Sprintf(`{"id":"%d","type":"put","revision":%d,"kv":%s}`, base, base, kvData(&e.storeEvents(t, base)[0], true)),
					fmt.Sprintf(`{"id":"%d.0","type":"put","revision":%d,"kv":%s}`, r, r, kvData(&evs[0], true)),
					fmt.Sprintf(`{"id":"%d","type":"put","revision":%d,"kv":%s}`, r, r, kvData(&evs[1], true)),
				}
				var got []string
				for range want {
					got = append(got, readLine(t, br))
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("lines (-want +got):\n%s", diff)
				}
				// last_event_id resumes exactly as for SSE.
				_, br2 := rawStream(t, cl.c, e.url("n/", fmt.Sprintf("prefix=true&format=ndjson&prev_kv=true&last_event_id=%d.0", r)), nil)
				if got := readLine(t, br2); got != want[2] {
					t.Errorf("resumed: %s, want %s", got, want[2])
				}
			})
		}
	}
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, Options{})
	var streams []*sseclient.Stream
	for _, cl := range e.clients() {
		streams = append(streams, connect(t, cl.c, e.url("k", ""), sseclient.Options{}))
	}
	rev := e.put(t, "k", "v")
	for _, s := range streams {
		if ev := nextEvent(t, s); ev.ID != fmt.Sprint(rev) {
			t.Fatalf("event %+v", ev)
		}
	}
	if n := e.h.Streams(); n != int64(len(streams)) {
		t.Errorf("Streams() = %d, want %d", n, len(streams))
	}
	e.h.Shutdown()
	for _, s := range streams {
		if _, err := s.Next(); !errors.Is(err, io.EOF) {
			t.Errorf("after Shutdown: %v, want the stream to end", err)
		}
	}
	_, err := sseclient.Connect(t.Context(), e.url("k", ""), sseclient.Options{Client: e.h1})
	if statusOf(err) != http.StatusServiceUnavailable {
		t.Errorf("new stream after Shutdown: %v, want 503", err)
	}
	waitFor(t, func() bool { return e.h.Streams() == 0 })
}

func TestHubClose(t *testing.T) {
	for _, cl := range h2Names {
		t.Run(cl, func(t *testing.T) {
			e := newEnv(t, Options{})
			s := connect(t, e.client(cl), e.url("k", ""), sseclient.Options{})
			e.hub.Close()
			if _, err := s.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("after the hub closed: %v, want the stream to end", err)
			}
			_, err := sseclient.Connect(t.Context(), e.url("k", ""), sseclient.Options{Client: e.h1})
			if statusOf(err) != http.StatusServiceUnavailable {
				t.Errorf("new stream after the hub closed: %v, want 503", err)
			}
		})
	}
}

// TestEncodeEndings checks the responses that end a stream: an error
// renders a problem (the server's, or an internal one), and nothing after
// it is written.
func TestEncodeEndings(t *testing.T) {
	boom := errors.New("disk on fire")
	tests := []struct {
		name   string
		opts   Options
		resps  []watchhub.Response
		want   string
		events int
	}{
		{"error", Options{}, []watchhub.Response{{Kind: watchhub.KindError, Err: boom}, {Kind: watchhub.KindProgress, Revision: 9}},
			"event: error\ndata: {\"type\":\"urn:watchgate:problem:internal\",\"title\":\"Internal error\",\"status\":500,\"detail\":\"internal error\"}\n\n", 1},
		{"server problem", Options{ProblemJSON: func(err error) []byte { return []byte(`{"title":"` + err.Error() + `"}`) }},
			[]watchhub.Response{{Kind: watchhub.KindError, Err: boom}},
			"event: error\ndata: {\"title\":\"disk on fire\"}\n\n", 1},
		{"broken server problem", Options{ProblemJSON: func(err error) []byte { return []byte("not json") }},
			[]watchhub.Response{{Kind: watchhub.KindError, Err: boom}},
			"event: error\ndata: {\"type\":\"urn:watchgate:problem:internal\",\"title\":\"Internal error\",\"status\":500,\"detail\":\"internal error\"}\n\n", 1},
		{"compacted", Options{}, []watchhub.Response{{Kind: watchhub.KindCreated, Revision: 3}, {Kind: watchhub.KindCompacted, CompactRevision: 5, Revision: 8}, {Kind: watchhub.KindProgress, Revision: 9}},
			"id: compacted\nevent: compacted\ndata: {\"compact_revision\":5,\"revision\":8}\n\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(nil, nil, tt.opts)
			c := &feed{h: h, path: "/v1/watch/k"}
			if end := c.encode(tt.resps); !end {
				t.Error("stream not ended")
			}
			if diff := cmp.Diff(tt.want, string(c.enc.Bytes())); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestProgressNeverMovesBack checks that a bookmark behind the start is
// not sent: it would make a resumed client repeat events.
func TestProgressNeverMovesBack(t *testing.T) {
	tests := []struct {
		startRev int64
		startSub int32
		progress int64
		sent     bool
	}{
		{10, 0, 9, true}, // everything up to 9: resume at 10
		{10, 0, 8, false},
		{10, 0, 12, true},
		{10, 2, 9, false}, // inside 10 after sub 1: 9 would repeat 10.0 and 10.1
		{10, 2, 10, true},
		{0, 0, 1, true},
	}
	for _, tt := range tests {
		c := &feed{h: NewHandler(nil, nil, Options{}), startRev: tt.startRev, startSub: tt.startSub}
		c.encode([]watchhub.Response{{Kind: watchhub.KindProgress, Revision: tt.progress}})
		if sent := c.enc.Len() > 0; sent != tt.sent {
			t.Errorf("start %d.%d progress %d: sent %v, want %v", tt.startRev, tt.startSub, tt.progress, sent, tt.sent)
		}
	}
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKeyFromPath(t *testing.T) {
	tests := []struct {
		path string
		key  string
		ok   bool
	}{
		{"/v1/watch/config/a", "config/a", true},
		{"/v1/watch/a%2Fb%00%ff", "a/b\x00\xff", true},
		{"/v1/watch/", "", true},
		{"/v1/watch/a%zz", "", false},
		{"/v1/kv/a", "", false},
	}
	for _, tt := range tests {
		key, err := keyFromPath(tt.path, "/v1/watch/")
		if (err == nil) != tt.ok || string(key) != tt.key {
			t.Errorf("keyFromPath(%q) = %q, %v", tt.path, key, err)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("error %v is not ErrBadRequest", err)
		}
	}
}
