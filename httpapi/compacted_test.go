package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/watchgate/watchgate/kv"
)

// laggingStore refuses reads below hidden as compacted while its
// Revisions still reports the older compact revision, as the store does
// for a moment while a compaction publishes its revision.
type laggingStore struct {
	*kv.Store
	hidden int64
}

func (l laggingStore) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	if r.Rev > 0 && r.Rev < l.hidden {
		return kv.RangeResult{}, fmt.Errorf("%w: revision %d, compact revision %d", kv.ErrCompacted, r.Rev, l.hidden)
	}
	return l.Store.Range(ctx, r)
}

// TestGoneNeverSaysReadable checks that a 410 never reports, in its
// header or its body, a compact revision at or below the revision it
// refused, even while the store's published compact revision lags.
func TestGoneNeverSaysReadable(t *testing.T) {
	st, err := kv.Open(t.TempDir(), kv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 5; i++ {
		if _, err := st.Txn(context.Background(), kv.TxnRequest{Success: []kv.Op{{Type: kv.OpPut, Key: []byte("k"), Value: []byte("v")}}}); err != nil {
			t.Fatal(err)
		}
	}
	api, err := New(laggingStore{Store: st, hidden: 5}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api)
	defer ts.Close()
	s := &testServer{Server: ts, store: st, api: api}
	for _, tc := range []struct {
		path  string
		asked int64
	}{{"/v1/kv/k?rev=2", 2}, {"/v1/kv/k?rev=3&format=json", 3}, {"/v1/kv/?prefix=true&rev=4", 4}} {
		resp := s.do(t, req{path: tc.path})
		p := mustProblem(t, resp, http.StatusGone, "compacted")
		header, _ := strconv.ParseInt(resp.header.Get("X-Compact-Revision"), 10, 64)
		if p.CompactRevision <= tc.asked || header <= tc.asked {
			t.Errorf("%s: 410 with compact revision %d (header %d): says the refused revision is readable", tc.path, p.CompactRevision, header)
		}
	}
	// Reads the store serves are unaffected.
	mustStatus(t, s.do(t, req{path: "/v1/kv/k?rev=5"}), http.StatusOK)
}

// unpublishedStore is a store whose file holds one commit more than it
// has published (Revisions), as the store does for a moment after each
// group commit.
type unpublishedStore struct{ *kv.Store }

func (u unpublishedStore) Revisions() (rev, compact int64) {
	rev, compact = u.Store.Revisions()
	return rev - 1, compact
}

// TestReadsShowThePublishedRevision checks that a read without rev= shows
// the published revision, not a later commit of the file: the client
// would otherwise see a write before it is acknowledged and announced to
// watchers, and be sent it again by a watch from now.
func TestReadsShowThePublishedRevision(t *testing.T) {
	st, err := kv.Open(t.TempDir(), kv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, v := range []string{"old", "new"} {
		if _, err := st.Txn(context.Background(), kv.TxnRequest{Success: []kv.Op{{Type: kv.OpPut, Key: []byte("k"), Value: []byte(v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	api, err := New(unpublishedStore{st}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api)
	defer ts.Close()
	s := &testServer{Server: ts, store: st, api: api}
	resp := s.do(t, req{path: "/v1/kv/k"})
	if string(resp.body) != "old" || resp.header.Get("X-Revision") != "2" {
		t.Errorf("GET: %q at X-Revision %s, want old at 2", resp.body, resp.header.Get("X-Revision"))
	}
	resp = s.do(t, req{path: "/v1/kv/?prefix=true"})
	if !strings.Contains(string(resp.body), `"revision":2,`) || !strings.Contains(string(resp.body), `"value":"old"`) {
		t.Errorf("range: %s", resp.body)
	}
}
