package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

// currentReader is a store that, like the etcd backend, reads at revision
// 0 by itself; it records the revision of every Range.
type currentReader struct {
	*kv.Store
	mu   sync.Mutex
	revs []int64
}

func (c *currentReader) ReadsAtCurrent() bool { return true }

func (c *currentReader) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	c.mu.Lock()
	c.revs = append(c.revs, r.Rev)
	c.mu.Unlock()
	return c.Store.Range(ctx, r)
}

// TestReadRevision checks which revision a read without rev= asks the
// store for: the published one for the embedded store, 0 for a store
// that reads at its current revision itself (a gateway's published
// revision lags the etcd cluster, so pinning would read stale data).
func TestReadRevision(t *testing.T) {
	st, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := st.Put(context.Background(), []byte(k), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	published, _ := st.Revisions()

	tests := []struct {
		name    string
		wrapped bool
		target  string
		want    []int64
	}{
		{"embedded store, one key", false, "/v1/kv/a", []int64{published}},
		{"embedded store, prefix", false, "/v1/kv/?prefix=true", []int64{published}},
		{"current reader, one key", true, "/v1/kv/a", []int64{0}},
		{"current reader, prefix", true, "/v1/kv/?prefix=true", []int64{0}},
		{"current reader, at a revision", true, "/v1/kv/a?rev=2", []int64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &currentReader{Store: st}
			var store Store = rec
			if !tt.wrapped {
				store = recordingStore{rec}
			}
			api, err := New(store, Options{})
			if err != nil {
				t.Fatal(err)
			}
			api.SetReady(true)
			w := httptest.NewRecorder()
			api.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tt.target, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", tt.target, w.Code, w.Body)
			}
			if diff := cmp.Diff(tt.want, rec.revs); diff != "" {
				t.Errorf("revisions asked of the store (-want +got):\n%s", diff)
			}
		})
	}
}

// recordingStore hides ReadsAtCurrent: the store then behaves as the
// embedded one while its reads are still recorded.
type recordingStore struct{ c *currentReader }

func (r recordingStore) Revisions() (int64, int64) { return r.c.Revisions() }
func (r recordingStore) Range(ctx context.Context, q kv.RangeRequest) (kv.RangeResult, error) {
	return r.c.Range(ctx, q)
}
func (r recordingStore) Txn(ctx context.Context, t kv.TxnRequest) (kv.TxnResponse, error) {
	return r.c.Txn(ctx, t)
}
func (r recordingStore) Compact(ctx context.Context, rev int64) error { return r.c.Compact(ctx, rev) }
func (r recordingStore) WriteSnapshot(w io.Writer) (int64, int64, error) {
	return r.c.WriteSnapshot(w)
}
func (r recordingStore) Status() (kv.Status, error) { return r.c.Status() }
