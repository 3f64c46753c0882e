package web

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHandler serves the client in full and as a 304 revalidation,
// the common case of a returning browser.
func BenchmarkHandler(b *testing.B) {
	h := NewHandler(Options{})
	etag := serve(b, h, http.MethodGet, PathClient, nil).Header.Get("ETag")
	for _, bc := range []struct {
		name   string
		header string
	}{{"full", ""}, {"not-modified", etag}} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, PathClient, nil)
			if bc.header != "" {
				r.Header.Set("If-None-Match", bc.header)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK && w.Code != http.StatusNotModified {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
