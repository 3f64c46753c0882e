package httpapi

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

// TestReadyHook checks that Options.Ready turns /readyz 503 with its
// error as the detail, only while it reports one, and that SetReady(false)
// still wins.
func TestReadyHook(t *testing.T) {
	var storeErr atomic.Pointer[error]
	ready := func() error {
		if p := storeErr.Load(); p != nil {
			return *p
		}
		return nil
	}
	s := newTestServer(t, Options{Ready: ready}, kvOptionsForTest())
	mustStatus(t, s.do(t, req{path: "/readyz"}), http.StatusOK)

	down := errors.New("etcd cluster unavailable: no leader")
	storeErr.Store(&down)
	p := mustProblem(t, s.do(t, req{path: "/readyz"}), http.StatusServiceUnavailable, "not-ready")
	if !strings.Contains(p.Detail, down.Error()) {
		t.Errorf("detail %q does not give the reason %q", p.Detail, down)
	}
	mustStatus(t, s.do(t, req{path: "/healthz"}), http.StatusOK)

	storeErr.Store(nil)
	mustStatus(t, s.do(t, req{path: "/readyz"}), http.StatusOK)
	s.api.SetReady(false)
	p = mustProblem(t, s.do(t, req{path: "/readyz"}), http.StatusServiceUnavailable, "not-ready")
	if strings.Contains(p.Detail, "store") {
		t.Errorf("not ready at all, detail %q", p.Detail)
	}
}
