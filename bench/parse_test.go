package main

import (
	"bufio"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type event struct {
	Reader, W int
	Rev       int64
	Key       string
}

func collect(f *fleetBase) *[]event {
	var got []event
	f.setHandler(func(reader, w int, rev int64, key []byte) {
		got = append(got, event{reader, w, rev, string(key)})
	})
	return &got
}

func TestWSHandle(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msgs    []string
		want    []event
		created int64 // created replies still awaited after
		wantErr string
	}{
		{
			name: "events",
			msgs: []string{`{"type":"events","id":"w7","revision":42,"events":[` +
				`{"type":"put","kv":{"key":"a/b","create_revision":5,"mod_revision":41,"version":3,"value":"x"}},` +
				`{"type":"put","kv":{"key":"a/c","create_revision":42,"mod_revision":42,"version":1,"value":"y"}}]}`},
			want:    []event{{3, 7, 41, "a/b"}, {3, 7, 42, "a/c"}},
			created: 2,
		},
		{
			name:    "created and progress",
			msgs:    []string{`{"type":"created","id":"w1","revision":9}`, `{"type":"progress","revision":9}`, `{"type":"pong"}`},
			created: 1,
		},
		{
			name:    "compacted is an error",
			msgs:    []string{`{"type":"compacted","id":"w1","compact_revision":70,"revision":90}`},
			created: 2,
			wantErr: "compacted",
		},
		{
			name:    "not json",
			msgs:    []string{`hello`},
			created: 2,
			wantErr: "unexpected message",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &wsSocket{f: &wsFleet{}, idx: 3, created: make(chan struct{})}
			s.pending.Store(2)
			got := collect(&s.f.fleetBase)
			var err error
			for _, m := range tc.msgs {
				if err = s.handle([]byte(m)); err != nil {
					break
				}
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if p := s.pending.Load(); p != tc.created {
				t.Errorf("pending created %d, want %d", p, tc.created)
			}
		})
	}
}

func TestSSERead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stream  string
		want    []event
		wantErr string
	}{
		{
			name: "events, progress and comments",
			stream: "retry: 2000\n\n: heartbeat\n\n" +
				"id: 41.0\nevent: put\ndata: {\"key\":\"k/1\",\"mod_revision\":41}\n\n" +
				"id: 41\nevent: delete\ndata: {\"key\":\"k/2\",\"mod_revision\":41}\n\n" +
				"event: progress\nid: 50\ndata: {\"revision\":50}\n\n" +
				"id: 51\nevent: put\ndata: {\"key\":\"" + strings.Repeat("z", 3000) + "\",\"mod_revision\":51}\n\n",
			want:    []event{{5, 5, 41, "k/1"}, {5, 5, 41, "k/2"}, {5, 5, 51, strings.Repeat("z", 3000)}},
			wantErr: "EOF",
		},
		{
			name:    "compacted",
			stream:  "id: compacted\nevent: compacted\ndata: {\"compact_revision\":7,\"revision\":9}\n\n",
			wantErr: "event \"compacted\"",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &sseFleet{}
			got := collect(&f.fleetBase)
			s := &sseStream{f: f, idx: 5, body: io.NopCloser(strings.NewReader(tc.stream))}
			f.wg.Add(1)
			s.read()
			if diff := cmp.Diff(tc.want, *got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if err := f.err(); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestJSONInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{`{"revision":42,"kv":{"key":"a","mod_revision":42}}`, 42, true},
		{`{"kv":{}}`, 0, false},
		{`{"revision":x}`, 0, false},
	} {
		got, ok := jsonInt([]byte(tc.in), `"revision":`)
		if got != tc.want || ok != tc.ok {
			t.Errorf("jsonInt(%s) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		status     int
		body, rest string
		err        bool
	}{
		{name: "created", in: "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\ncontent-length: 14\r\n\r\n{\"revision\":7}NEXT",
			status: 201, body: `{"revision":7}`, rest: "NEXT"},
		{name: "empty body", in: "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", status: 204},
		{name: "longer than the buffer", in: "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + strings.Repeat("x", 5000),
			status: 200, body: strings.Repeat("x", 5000)},
		{name: "no length", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", err: true},
		{name: "bad length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: true},
		{name: "bad status line", in: "HTTP/1.0 200 OK\r\n\r\n", err: true},
		{name: "short body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", err: true},
		{name: "cut in the header", in: "HTTP/1.1 200 OK\r\nContent-Le", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tc.in), 4096)
			status, body, err := readResponse(r)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if status != tc.status || string(body) != tc.body {
				t.Errorf("got %d %q, want %d %q", status, body, tc.status, tc.body)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tc.rest {
				t.Errorf("left %q, want %q", rest, tc.rest)
			}
		})
	}
}

func TestHistogramQuantile(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {0.001, time.Millisecond}} {
		got := h.quantile(tc.q)
		if rel := math.Abs(float64(got-tc.want)) / float64(tc.want); rel > 0.02 {
			t.Errorf("quantile(%v) = %v, want %v within 2%%", tc.q, got, tc.want)
		}
	}
	var small histogram
	small.add(30 * time.Microsecond)
	if got := small.quantile(0.5); got < 30*time.Microsecond || got > 31*time.Microsecond {
		t.Errorf("one 30µs sample: quantile %v", got)
	}
	if got := new(histogram).quantile(0.5); got != 0 {
		t.Errorf("empty histogram: %v", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		check   func(c *config) string
		wantErr string
	}{
		{
			name: "quick shrinks what is not set",
			args: []string{"-quick", "-fanout", "10k,100k"},
			check: func(c *config) string {
				return cmp.Diff([]any{[]int{10000, 100000}, []int{1, 16}, 1}, []any{c.fanout, c.writeClients, c.repeats})
			},
		},
		{
			name: "scenarios and counts",
			args: []string{"-scenarios", "capacity,storm", "-capacity-ws", "2M"},
			check: func(c *config) string {
				return cmp.Diff([]any{[]string{"capacity", "storm"}, 2000000}, []any{c.scenarios, c.capWS})
			},
		},
		{
			name: "gateways",
			args: []string{"-scenarios", "gateways", "-gateways", "1,3", "-gateways-watchers", "5k,20k", "-quick"},
			check: func(c *config) string {
				return cmp.Diff([]any{[]string{"gateways"}, []int{1, 3}, []int{5000, 20000}, 3}, []any{c.scenarios, c.gwCounts, c.gwWatchers, c.gwRepeats})
			},
		},
		{name: "no gateway", args: []string{"-gateways", "0"}, wantErr: "-gateways counts"},
		{name: "bad gateways transport", args: []string{"-gateways-transports", "grpc"}, wantErr: "transport"},
		{name: "unknown scenario", args: []string{"-scenarios", "writes,nope"}, wantErr: "unknown scenario"},
		{name: "bad transport", args: []string{"-fanout-transports", "grpc"}, wantErr: "transport"},
		{name: "bad count", args: []string{"-fanout", "ten"}, wantErr: "not a count"},
		{name: "argument", args: []string{"extra"}, wantErr: "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := tc.check(c); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
