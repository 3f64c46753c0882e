package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSSEFeed parses a stream fed in pieces cut anywhere, as DATA frames
// cut it, and checks that a change out of order, repeated, or whose id is
// not its revision fails the fleet.
func TestSSEFeed(t *testing.T) {
	good := "retry: 1500\n\n" +
		"id: 7.0\nevent: put\ndata: {\"key\":\"a\",\"mod_revision\":7}\n\n" +
		"id: 7\nevent: delete\ndata: {\"key\":\"b\",\"mod_revision\":7}\n\n" +
		": heartbeat\n\nid: 7\nevent: progress\ndata: {\"revision\":7}\n\n" +
		"id: 9\r\nevent: put\r\ndata: {\"key\":\"c\",\"mod_revision\":9,\"prev_kv\":{\"key\":\"c\",\"mod_revision\":8}}\r\n\r\n"
	for _, tc := range []struct {
		name    string
		stream  string
		want    []event
		wantErr string
	}{
		{name: "in order", stream: good, want: []event{{3, 1, 7, "a"}, {3, 1, 7, "b"}, {3, 1, 9, "c"}}},
		{
			name:    "repeated",
			stream:  "id: 7\nevent: put\ndata: {\"key\":\"a\",\"mod_revision\":7}\n\nid: 7\nevent: put\ndata: {\"key\":\"a\",\"mod_revision\":7}\n\n",
			want:    []event{{3, 1, 7, "a"}},
			wantErr: "id 7.",
		},
		{
			name:    "back inside a revision",
			stream:  "id: 7.2\nevent: put\ndata: {\"key\":\"a\",\"mod_revision\":7}\n\nid: 7.1\nevent: put\ndata: {\"key\":\"b\",\"mod_revision\":7}\n\n",
			want:    []event{{3, 1, 7, "a"}},
			wantErr: "id 7.1 after 7.2",
		},
		{
			name:    "id is not the revision",
			stream:  "id: 8\nevent: put\ndata: {\"key\":\"a\",\"mod_revision\":7}\n\n",
			wantErr: "id 8 for data of revision 7",
		},
		{
			name:    "bad id",
			stream:  "id: 8x\nevent: put\ndata: {\"key\":\"a\",\"mod_revision\":8}\n\n",
			wantErr: `a change with id "8x"`,
		},
	} {
		for _, piece := range []int{1, 3, 17, len(tc.stream)} {
			t.Run(tc.name, func(t *testing.T) {
				f := &sseFleet{}
				got := collect(&f.fleetBase)
				s := &sseStream{f: f, idx: 1}
				for b := tc.stream; len(b) > 0; {
					n := min(piece, len(b))
					s.feed(3, []byte(b[:n]))
					b = b[n:]
				}
				if diff := cmp.Diff(tc.want, *got); diff != "" {
					t.Errorf("pieces of %d: events (-want +got):\n%s", piece, diff)
				}
				err := f.err()
				switch {
				case tc.wantErr == "" && err != nil:
					t.Errorf("pieces of %d: %v", piece, err)
				case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
					t.Errorf("pieces of %d: error %v, want %q", piece, err, tc.wantErr)
				}
			})
		}
	}
}
