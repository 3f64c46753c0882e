package web

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func serve(tb testing.TB, h http.Handler, method, target string, header map[string]string) *http.Response {
	tb.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestHandlerServesFiles(t *testing.T) {
	h := NewHandler(Options{})
	for _, tc := range []struct {
		path, file, contentType string
		csp                     bool
	}{
		{"/", "index.html", "text/html; charset=utf-8", true},
		{"/watchgate.js", "watchgate.js", "text/javascript; charset=utf-8", false},
		{"/ui/app.js", "ui/app.js", "text/javascript; charset=utf-8", false},
		{"/ui/style.css", "ui/style.css", "text/css; charset=utf-8", false},
		{"/ui/icon.svg", "ui/icon.svg", "image/svg+xml", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			want, err := fs.ReadFile(Files, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			resp := serve(t, h, http.MethodGet, tc.path, nil)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(body) != string(want) {
				t.Fatalf("GET %s: %d, %d bytes; want 200 and the %d bytes of %s", tc.path, resp.StatusCode, len(body), len(want), tc.file)
			}
			got := map[string]string{
				"Content-Type":           resp.Header.Get("Content-Type"),
				"Cache-Control":          resp.Header.Get("Cache-Control"),
				"X-Content-Type-Options": resp.Header.Get("X-Content-Type-Options"),
			}
			wantHeaders := map[string]string{"Content-Type": tc.contentType, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
			if diff := cmp.Diff(wantHeaders, got); diff != "" {
				t.Errorf("headers (-want +got)\n%s", diff)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); (csp != "") != tc.csp {
				t.Errorf("Content-Security-Policy %q, want one: %v", csp, tc.csp)
			}
			etag := resp.Header.Get("ETag")
			if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(etag) {
				t.Fatalf("ETag %q, want a quoted hash", etag)
			}

			resp = serve(t, h, http.MethodGet, tc.path, map[string]string{"If-None-Match": etag})
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("GET with If-None-Match: %d, want 304", resp.StatusCode)
			}
			resp = serve(t, h, http.MethodGet, tc.path, map[string]string{"If-None-Match": `"other"`})
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET with a stale If-None-Match: %d, want 200", resp.StatusCode)
			}
			resp = serve(t, h, http.MethodHead, tc.path, nil)
			body, _ = io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("ETag") != etag {
				t.Errorf("HEAD: %d with %d bytes, ETag %q; want 200, no body, %s", resp.StatusCode, len(body), resp.Header.Get("ETag"), etag)
			}
		})
	}
}

func TestHandlerErrors(t *testing.T) {
	custom := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, tc := range []struct {
		name       string
		opts       Options
		method     string
		path       string
		wantStatus int
		wantType   string
		wantAllow  string
	}{
		{"missing asset", Options{}, http.MethodGet, "/ui/nope.js", 404, "urn:watchgate:problem:not-found", ""},
		{"index by name", Options{}, http.MethodGet, "/index.html", 404, "urn:watchgate:problem:not-found", ""},
		{"directory", Options{}, http.MethodGet, "/ui/", 404, "urn:watchgate:problem:not-found", ""},
		{"escape", Options{}, http.MethodGet, "/ui/../watchgate.js", 404, "urn:watchgate:problem:not-found", ""},
		{"post", Options{}, http.MethodPost, "/watchgate.js", 405, "urn:watchgate:problem:method-not-allowed", "GET, HEAD"},
		{"delete index", Options{}, http.MethodDelete, "/", 405, "urn:watchgate:problem:method-not-allowed", "GET, HEAD"},
		{"custom not found", Options{NotFound: custom}, http.MethodGet, "/ui/nope.css", http.StatusTeapot, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := serve(t, NewHandler(tc.opts), tc.method, tc.path, nil)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.wantStatus)
			}
			if resp.Header.Get("Allow") != tc.wantAllow {
				t.Errorf("Allow %q, want %q", resp.Header.Get("Allow"), tc.wantAllow)
			}
			if tc.wantType == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			var p struct {
				Type   string `json:"type"`
				Title  string `json:"title"`
				Status int    `json:"status"`
				Detail string `json:"detail"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Type != tc.wantType || p.Status != tc.wantStatus || p.Title == "" || p.Detail == "" {
				t.Errorf("problem %+v, want type %s, status %d, a title and a detail", p, tc.wantType, tc.wantStatus)
			}
		})
	}
}

// TestPatternsReachEveryFile checks that the routes a router mounts cover
// every embedded file, and nothing else is needed.
func TestPatternsReachEveryFile(t *testing.T) {
	err := fs.WalkDir(Files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		urlPath := "/" + name
		if name == "index.html" {
			urlPath = "/"
		}
		for _, p := range Patterns {
			if p == urlPath || (strings.HasSuffix(p, "*") && strings.HasPrefix(urlPath, strings.TrimSuffix(p, "*"))) {
				return nil
			}
		}
		t.Errorf("%s (served at %s) matches none of %q", name, urlPath, Patterns)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// localRefs are the references of the dashboard's files to other files,
// by file type: src and href attributes, module imports, CSS url()s.
var localRefs = map[string]*regexp.Regexp{
	".html": regexp.MustCompile(`(?:src|href)="([^"]+)"`),
	".js":   regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^;]*?from\s*"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)`),
	".css":  regexp.MustCompile(`url\(\s*['"]?([^'")]+)`),
}

// TestSelfContained checks that the dashboard works offline: every file it
// refers to is embedded, and no file loads anything from another origin.
func TestSelfContained(t *testing.T) {
	for _, name := range []string{"index.html", "ui/app.js", "ui/style.css", "watchgate.js"} {
		body, err := fs.ReadFile(Files, name)
		if err != nil {
			t.Fatal(err)
		}
		refs := localRefs[path.Ext(name)].FindAllStringSubmatch(string(body), -1)
		if name == "ui/app.js" && len(refs) == 0 {
			t.Errorf("found no import in %s: the pattern is broken", name)
		}
		for _, m := range refs {
			ref := strings.Join(m[1:], "")
			switch {
			case strings.HasPrefix(ref, "data:"):
				continue
			case strings.Contains(ref, "://") || strings.HasPrefix(ref, "//"):
				t.Errorf("%s refers to %q on another origin", name, ref)
				continue
			}
			target := path.Clean(path.Join(path.Dir(name), ref))
			if strings.HasPrefix(ref, "/") {
				target = strings.TrimPrefix(ref, "/")
			}
			if target == "openapi.yaml" {
				continue // served by the API itself
			}
			if _, err := fs.Stat(Files, target); err != nil {
				t.Errorf("%s refers to %q (%s), which is not embedded", name, ref, target)
			}
		}
	}
}

func TestHandlerGzip(t *testing.T) {
	h := NewHandler(Options{})
	want, err := fs.ReadFile(Files, "watchgate.js")
	if err != nil {
		t.Fatal(err)
	}
	plain := serve(t, h, http.MethodGet, PathClient, nil)
	for _, tc := range []struct {
		acceptEncoding string
		gzip           bool
	}{
		{"", false},
		{"gzip", true},
		{"br, gzip;q=0.8, deflate", true},
		{"GZIP", true},
		{"*", true},
		{"gzip;q=0", false},
		{"gzip; q=0.000", false},
		{"identity", false},
		{"br", false},
	} {
		t.Run(tc.acceptEncoding, func(t *testing.T) {
			resp := serve(t, h, http.MethodGet, PathClient, map[string]string{"Accept-Encoding": tc.acceptEncoding})
			if resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("Vary %q, want Accept-Encoding", resp.Header.Get("Vary"))
			}
			body := resp.Body
			if got := resp.Header.Get("Content-Encoding") == "gzip"; got != tc.gzip {
				t.Fatalf("Content-Encoding %q, want gzip: %v", resp.Header.Get("Content-Encoding"), tc.gzip)
			}
			etag := resp.Header.Get("ETag")
			if tc.gzip {
				if etag == plain.Header.Get("ETag") {
					t.Errorf("the gzipped body has the ETag of the plain one, %s", etag)
				}
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			got, err := io.ReadAll(body)
			if err != nil || string(got) != string(want) {
				t.Fatalf("body: %d bytes, %v; want the %d bytes of watchgate.js", len(got), err, len(want))
			}
			again := serve(t, h, http.MethodGet, PathClient, map[string]string{"Accept-Encoding": tc.acceptEncoding, "If-None-Match": etag})
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation with %s: %d, want 304", etag, again.StatusCode)
			}
		})
	}
}
