package httpapi

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type deleteResp struct {
	Revision int64    `json:"revision"`
	Deleted  int64    `json:"deleted"`
	PrevKVs  []kvJSON `json:"prev_kvs"`
}

func TestDelete(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	for _, k := range []string{"d/1", "d/2", "d/3", "e", "f"} {
		s.put(t, k, "v")
	}

	t.Run("one key", func(t *testing.T) {
		resp := s.do(t, req{method: http.MethodDelete, path: "/v1/kv/e?prev_kv=true"})
		mustStatus(t, resp, http.StatusOK)
		var got deleteResp
		decodeJSON(t, resp, &got)
		want := deleteResp{Revision: 7, Deleted: 1, PrevKVs: []kvJSON{{Key: ptr("e"), Value: ptr("v"), CreateRevision: 5, ModRevision: 5, Version: 1}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
		mustStatus(t, s.do(t, req{path: "/v1/kv/e"}), http.StatusNotFound)
	})

	t.Run("missing key", func(t *testing.T) {
		before := s.revision()
		resp := s.do(t, req{method: http.MethodDelete, path: "/v1/kv/e"})
		mustProblem(t, resp, http.StatusNotFound, "key-not-found")
		if s.revision() != before {
			t.Errorf("deleting a missing key made revision %d", s.revision())
		}
	})

	t.Run("prefix", func(t *testing.T) {
		resp := s.do(t, req{method: http.MethodDelete, path: "/v1/kv/d/?prefix=true"})
		mustStatus(t, resp, http.StatusOK)
		var got deleteResp
		decodeJSON(t, resp, &got)
		if got.Deleted != 3 || got.PrevKVs != nil || resp.header.Get("X-Revision") != itoa(got.Revision) || got.Revision != s.revision() {
			t.Errorf("prefix delete %+v X-Revision %s", got, resp.header.Get("X-Revision"))
		}
	})

	t.Run("empty range is 200", func(t *testing.T) {
		before := s.revision()
		resp := s.do(t, req{method: http.MethodDelete, path: "/v1/kv/x?range_end=y&prev_kv=true"})
		mustStatus(t, resp, http.StatusOK)
		var got deleteResp
		decodeJSON(t, resp, &got)
		if diff := cmp.Diff(deleteResp{Revision: before, Deleted: 0, PrevKVs: []kvJSON{}}, got); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	})

	t.Run("If-Match", func(t *testing.T) {
		rev := s.put(t, "g", "v")
		p := mustProblem(t, s.do(t, req{method: http.MethodDelete, path: "/v1/kv/g", header: map[string]string{"If-Match": `"1"`}}),
			http.StatusPreconditionFailed, "precondition-failed")
		if p.KV == nil {
			t.Errorf("412 without the current kv")
		}
		mustStatus(t, s.do(t, req{method: http.MethodDelete, path: "/v1/kv/g", header: map[string]string{"If-Match": `"` + itoa(rev) + `"`}}), http.StatusOK)
		mustProblem(t, s.do(t, req{method: http.MethodDelete, path: "/v1/kv/g", header: map[string]string{"If-Match": "*"}}),
			http.StatusPreconditionFailed, "precondition-failed")
		mustProblem(t, s.do(t, req{method: http.MethodDelete, path: "/v1/kv/g?prefix=true", header: map[string]string{"If-Match": "*"}}),
			http.StatusBadRequest, "bad-request")
	})

	t.Run("everything", func(t *testing.T) {
		mustProblem(t, s.do(t, req{method: http.MethodDelete, path: "/v1/kv/"}), http.StatusBadRequest, "bad-request")
		resp := s.do(t, req{method: http.MethodDelete, path: "/v1/kv/?prefix=true"})
		mustStatus(t, resp, http.StatusOK)
		var got deleteResp
		decodeJSON(t, resp, &got)
		if got.Deleted != 1 { // only "f" is left
			t.Errorf("deleted %d, want 1", got.Deleted)
		}
		var all rangeResp
		decodeJSON(t, s.do(t, req{path: "/v1/kv/?prefix=true"}), &all)
		if all.Count != 0 {
			t.Errorf("%d keys left", all.Count)
		}
	})
}
