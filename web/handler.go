package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Files is the dashboard and the browser client as they are served:
// index.html (at /), watchgate.js and ui/*. It is read-only and safe for
// concurrent use.
var Files fs.FS = mustSub(static, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // the embedded directory is part of the build
	}
	return sub
}

// The paths Handler serves. A router mounts the handler for GET and HEAD
// at PathIndex, PathClient and every path under PathAssets; Patterns lists
// them in the wildcard syntax of chi and net/http's ServeMux.
const (
	PathIndex  = "/"
	PathClient = "/watchgate.js"
	PathAssets = "/ui/"
)

// Patterns are the route patterns that reach Handler: the dashboard, the
// client and the dashboard's assets.
var Patterns = []string{PathIndex, PathClient, PathAssets + "*"}

// contentSecurityPolicy is sent with the dashboard: it runs only its own
// scripts and styles and talks only to its own origin (the WebSocket
// included).
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// contentTypes are the types of the embedded files, by extension; set here
// so that the answer does not depend on the machine's MIME tables.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Options configures a Handler. The zero value is the documented default.
type Options struct {
	// NotFound answers a request for a path the handler does not serve (a
	// missing asset); nil answers 404 with a problem+json document, as the
	// API answers its own errors. A server passes its own so that every
	// error goes through one table.
	NotFound http.Handler
}

// file is one embedded file, ready to serve.
type file struct {
	name        string
	body        []byte
	etag        string
	contentType string
	// gz is body compressed with gzip, nil when that does not make it
	// smaller; gzETag is its entity tag.
	gz     []byte
	gzETag string
}

// Handler serves Files: GET and HEAD of PathIndex (index.html),
// PathClient and the files under PathAssets, with an ETag (a hash of the
// content) and Cache-Control: no-cache, so a browser revalidates and gets
// 304 until the binary changes. Files are compressed once, at start, and
// sent gzipped to clients that accept it. Other methods get 405, other paths
// Options.NotFound. It holds no goroutine and nothing to close.
type Handler struct {
	files    map[string]*file // by request path
	notFound http.Handler
}

var _ http.Handler = (*Handler)(nil)

// NewHandler returns a handler of the embedded files.
func NewHandler(opts Options) *Handler {
	h := &Handler{files: make(map[string]*file), notFound: opts.NotFound}
	if h.notFound == nil {
		h.notFound = http.HandlerFunc(notFound)
	}
	err := fs.WalkDir(Files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(Files, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		f := &file{
			name:        name,
			body:        body,
			etag:        `"` + hex.EncodeToString(sum[:12]) + `"`,
			contentType: contentTypes[path.Ext(name)],
		}
		if f.contentType == "" {
			f.contentType = "application/octet-stream"
		}
		if gz := gzipped(body); len(gz) < len(body) {
			f.gz = gz
			f.gzETag = strings.TrimSuffix(f.etag, `"`) + `-gzip"`
		}
		urlPath := "/" + name
		if name == "index.html" {
			urlPath = PathIndex
		}
		h.files[urlPath] = f
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is part of the build
	}
	return h
}

// ServeHTTP serves one embedded file.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := h.files[r.URL.Path]
	if !ok {
		h.notFound.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeProblem(w, http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed",
			r.Method+" is not allowed here; allowed: GET, HEAD")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.contentType)
	body, etag := f.body, f.etag
	if f.gz != nil {
		hd.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header) {
			body, etag = f.gz, f.gzETag
			hd.Set("Content-Encoding", "gzip")
		}
	}
	hd.Set("ETag", etag)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "same-origin")
	if f.name == "index.html" {
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Frame-Options", "DENY")
	}
	// ServeContent answers If-None-Match (304), HEAD and Range requests.
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(body))
}

// gzipped compresses b once, at start, with the best compression.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		panic(err) // a valid level
	}
	zw.Write(b) // writes to a bytes.Buffer do not fail
	zw.Close()
	return buf.Bytes()
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip
// (listed, or by "*", with a q-value other than 0).
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "*" {
				continue
			}
			q := strings.ReplaceAll(strings.ToLower(params), " ", "")
			if q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000" {
				continue
			}
			return true
		}
	}
	return false
}

// notFound is the default Options.NotFound.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, http.StatusNotFound, "not-found", "Not found", "no resource at "+r.URL.EscapedPath())
}

// writeProblem answers an RFC 9457 problem document whose type has the
// API's prefix, urn:watchgate:problem:.
func writeProblem(w http.ResponseWriter, status int, slug, title, detail string) {
	body, err := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"urn:watchgate:problem:" + slug, title, status, detail})
	if err != nil {
		panic(fmt.Sprintf("web: encoding a problem: %v", err)) // strings always encode
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/problem+json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
