package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// putJSON is a put event in the server's own layout.
func putJSON(key, value string, rev int64) string {
	return `{"type":"put","kv":{"key":"` + key + `","value":"` + value + `","create_revision":3,"mod_revision":` + itoa(int(rev)) + `,"version":2}}`
}

// TestWSEvents checks the events messages of a socket with watches w10
// and w11: the server's own layout (parsed in one pass), other layouts
// (searched), and the checks of the watch id and the revisions.
func TestWSEvents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msgs    []string
		want    []event
		wantErr string
	}{
		{
			name: "server layout",
			msgs: []string{
				`{"type":"events","id":"w10","revision":42,"events":[` + putJSON("a/b", "eA==", 41) + `,` + putJSON("a/c", "eQ==", 42) + `]}`,
				`{"type":"events","id":"w11","revision":43,"events":[` + putJSON("a/d", "", 43) + `]}`,
			},
			want: []event{{1, 10, 41, "a/b"}, {1, 10, 42, "a/c"}, {1, 11, 43, "a/d"}},
		},
		{
			name: "a delete and an escaped value after a put",
			msgs: []string{`{"type":"events","id":"w10","revision":44,"events":[` + putJSON("a/b", "x", 42) + `,` +
				`{"type":"delete","kv":{"key":"a/c","mod_revision":43}},` + putJSON("a/e", `q\"mod_revision\":99`, 44) + `]}`},
			want: []event{{1, 10, 42, "a/b"}, {1, 10, 43, "a/c"}, {1, 10, 44, "a/e"}},
		},
		{
			name: "other member order",
			msgs: []string{`{"type":"events","revision":42,"id":"w11","events":[{"type":"put","kv":{"key":"k","mod_revision":42,"value":"v"}}]}`},
			want: []event{{1, 11, 42, "k"}},
		},
		{
			name:    "watch of another socket",
			msgs:    []string{`{"type":"events","id":"w12","revision":42,"events":[` + putJSON("a/b", "x", 42) + `]}`},
			wantErr: "not a watch of this socket",
		},
		{
			name: "revision not above the last",
			msgs: []string{
				`{"type":"events","id":"w10","revision":42,"events":[` + putJSON("a/b", "x", 42) + `]}`,
				`{"type":"events","id":"w10","revision":42,"events":[` + putJSON("a/b", "x", 42) + `]}`,
			},
			want:    []event{{1, 10, 42, "a/b"}},
			wantErr: "at revision 42 after 42",
		},
		{
			name:    "event above the message's revision",
			msgs:    []string{`{"type":"events","id":"w10","revision":42,"events":[` + putJSON("a/b", "x", 43) + `]}`},
			wantErr: "event at revision 43 in a message at 42",
		},
		{
			name:    "no events",
			msgs:    []string{`{"type":"events","id":"w10","revision":42,"events":[]}`},
			wantErr: "without events",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &wsSocket{f: &wsFleet{}, idx: 1, created: make(chan struct{}), base: 10, revs: []int64{0, 0}}
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
		})
	}
}

// BenchmarkWSHandle is the benchmark client's cost of parsing and
// checking one events message of the fan-out scenario.
func BenchmarkWSHandle(b *testing.B) {
	m := []byte(`{"type":"events","id":"w12345","revision":4242,"events":[` +
		putJSON("bench/fanout/watchgate/ws/k", strings.Repeat("eHh4", 34), 4242) + `]}`)
	s := &wsSocket{f: &wsFleet{}, created: make(chan struct{}), base: 12000, revs: make([]int64, 1000)}
	n := 0
	s.f.setHandler(func(_, _ int, _ int64, _ []byte) { n++ })
	b.ReportAllocs()
	for b.Loop() {
		s.revs[345] = 0
		if err := s.handle(m); err != nil {
			b.Fatal(err)
		}
	}
}
