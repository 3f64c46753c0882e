package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// specPath is the project's OpenAPI document, which the server must match.
const specPath = "../openapi.yaml"

var (
	specOnce sync.Once
	spec     *openapi3.T
	specErr  error

	// exercised records "METHOD /path status" of every exchange that was
	// validated, for TestContractCoverage.
	exercisedMu sync.Mutex
	exercised   = map[string]bool{}
)

func loadSpec(tb testing.TB) *openapi3.T {
	tb.Helper()
	specOnce.Do(func() {
		var data []byte
		data, specErr = os.ReadFile(specPath)
		if specErr != nil {
			return
		}
		registerStreamDecoders()
		loader := openapi3.NewLoader()
		spec, specErr = loader.LoadFromData(data)
		if specErr == nil {
			specErr = spec.Validate(context.Background())
		}
	})
	if specErr != nil {
		tb.Fatalf("openapi.yaml: %v", specErr)
	}
	return spec
}

// registerStreamDecoders teaches the validator the watch stream forms: an
// event stream is text, and an NDJSON stream is valid when every line is
// a value of the schema (the first line stands for the body).
func registerStreamDecoders() {
	asText := func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	}
	for _, ct := range []string{"text/event-stream", "text/html", "text/javascript", "text/css", "image/svg+xml"} {
		openapi3filter.RegisterBodyDecoder(ct, asText)
	}
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", func(r io.Reader, _ http.Header, schema *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		var first any
		for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var v any
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			if err := schema.Value.VisitJSON(v); err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			if i == 0 {
				first = v
			}
		}
		return first, nil
	})
}

// specRoute finds the operation of the spec that serves method and the
// escaped path. Keys may hold '/', which OpenAPI path templates cannot
// match, so /v1/kv/ and /v1/watch/ paths are mapped by hand, as the server
// does. ok is false when the spec has no such path.
func specRoute(doc *openapi3.T, method, escapedPath string) (route *routers.Route, params map[string]string, ok bool) {
	specPath := escapedPath
	for _, p := range []struct{ prefix, param string }{{"/v1/kv/", "key"}, {"/v1/watch/", "key"}, {"/ui/", "asset"}} {
		if rest, found := strings.CutPrefix(escapedPath, p.prefix); found && rest != "" {
			v, err := url.PathUnescape(rest)
			if err != nil {
				return nil, nil, false
			}
			specPath = p.prefix + "{" + p.param + "}"
			params = map[string]string{p.param: v}
		}
	}
	item := doc.Paths.Value(specPath)
	if item == nil {
		return nil, nil, false
	}
	return &routers.Route{Spec: doc, Path: specPath, PathItem: item, Method: method,
		Operation: item.GetOperation(method)}, params, true
}

// validateExchange checks one request and its response against
// openapi.yaml. The response must always match the spec (its status listed
// for the operation, headers, body schema); the request must match it
// whenever the server accepted it (2xx, 304), so the spec can reject
// nothing that the server serves. A path or method that the spec does not
// have must get a problem+json 404 or 405.
func validateExchange(tb testing.TB, hr *http.Request, reqBody []byte, resp response) {
	tb.Helper()
	doc := loadSpec(tb)
	route, params, ok := specRoute(doc, hr.Method, hr.URL.EscapedPath())
	if !ok || route.Operation == nil {
		if resp.status != http.StatusNotFound && resp.status != http.StatusMethodNotAllowed {
			tb.Errorf("contract: %s %s is not in openapi.yaml but answered %d", hr.Method, hr.URL.EscapedPath(), resp.status)
		}
		validateProblemBody(tb, doc, resp)
		return
	}
	ctx := context.Background()
	opts := &openapi3filter.Options{
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		IncludeResponseStatus: true,
		MultiError:            true,
	}
	r2 := hr.Clone(ctx)
	r2.Body = io.NopCloser(bytes.NewReader(reqBody))
	in := &openapi3filter.RequestValidationInput{Request: r2, PathParams: params, Route: route, Options: opts}
	if resp.status < 300 || resp.status == http.StatusNotModified {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			tb.Errorf("contract: request %s %s (answered %d) does not match openapi.yaml: %v",
				hr.Method, hr.URL.String(), resp.status, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.status,
		Header:                 resp.header,
		Options:                opts,
	}
	out.SetBodyBytes(resp.body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		tb.Errorf("contract: response %d to %s %s does not match openapi.yaml: %v\nbody: %.500s",
			resp.status, hr.Method, hr.URL.String(), err, resp.body)
	}
	exercisedMu.Lock()
	exercised[hr.Method+" "+route.Path+" "+http.StatusText(resp.status)] = true
	exercised[hr.Method+" "+route.Path] = true
	exercisedMu.Unlock()
}

// validateProblemBody checks a problem+json body against the spec's Problem
// schema.
func validateProblemBody(tb testing.TB, doc *openapi3.T, resp response) {
	tb.Helper()
	if ct := resp.header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("contract: %d answered with Content-Type %q, want application/problem+json", resp.status, ct)
		return
	}
	var v any
	if err := json.Unmarshal(resp.body, &v); err != nil {
		tb.Errorf("contract: problem body %q: %v", resp.body, err)
		return
	}
	if err := doc.Components.Schemas["Problem"].Value.VisitJSON(v); err != nil {
		tb.Errorf("contract: problem body %s does not match the Problem schema: %v", resp.body, err)
	}
}

// TestContractCoverage runs a broad set of calls through the contract
// validator (every call of every test in this package goes through it as
// well) and then checks that every operation of openapi.yaml that this
// package serves was exercised.
func TestContractCoverage(t *testing.T) {
	s := newTestServer(t, Options{OpenAPI: mustReadFile(t, specPath)}, kvOptionsForTest())
	rev := s.put(t, "contract/a", "1")
	s.put(t, "contract/b", "2")
	s.put(t, "contract/%FF", "\xff")
	calls := []req{
		{path: "/v1/kv/contract/a"},
		{path: "/v1/kv/contract/a?format=json"},
		{path: "/v1/kv/contract/%FF?format=json"},
		{path: "/v1/kv/contract/a", header: map[string]string{"If-None-Match": `"` + itoa(rev) + `"`}},
		{path: "/v1/kv/contract/missing"},
		{path: "/v1/kv/contract/?prefix=true"},
		{path: "/v1/kv/contract/?prefix=true&limit=1"},
		{path: "/v1/kv/contract/?prefix=true&keys_only=true"},
		{path: "/v1/kv/contract/?prefix=true&count_only=true"},
		{path: "/v1/kv/contract/a?range_end=contract/c"},
		{path: "/v1/kv/?prefix=true"},
		{path: "/v1/kv/"},
		{path: "/v1/kv/contract/a?rev=99999"},
		{path: "/v1/kv/contract/a?limit=0&prefix=true"},
		{method: http.MethodHead, path: "/v1/kv/contract/a"},
		{method: http.MethodHead, path: "/v1/kv/contract/missing"},
		{method: http.MethodHead, path: "/v1/kv/?prefix=true"},
		{method: http.MethodPut, path: "/v1/kv/", body: "x"},
		{method: http.MethodPut, path: "/v1/kv/contract/c", body: "3"},
		{method: http.MethodPut, path: "/v1/kv/contract/c?prev_kv=true", body: "4"},
		{method: http.MethodPut, path: "/v1/kv/contract/c", body: "5", header: map[string]string{"If-Match": `"1"`}},
		{method: http.MethodPut, path: "/v1/kv/contract/c", body: "5", header: map[string]string{"If-Match": `five`}},
		{method: http.MethodPut, path: "/v1/kv/" + strings.Repeat("k", 5000), body: "x"},
		{method: http.MethodDelete, path: "/v1/kv/contract/c?prev_kv=true"},
		{method: http.MethodDelete, path: "/v1/kv/contract/c"},
		{method: http.MethodDelete, path: "/v1/kv/contract/c", header: map[string]string{"If-Match": `"2"`}},
		{method: http.MethodDelete, path: "/v1/kv/nothing/?prefix=true"},
		{method: http.MethodDelete, path: "/v1/kv/?range_end=%00"},
		{method: http.MethodDelete, path: "/v1/kv/"},
		{method: http.MethodPut, path: "/v1/kv/contract/d", body: "d"},
		{method: http.MethodPost, path: "/v1/txn", body: `{"compare":[{"key":"contract/d","target":"version","op":">","value":0}],
			"success":[{"put":{"key":"contract/e","value":"e","prev_kv":true}},{"get":{"key":"contract/","prefix":true,"limit":10}},
			{"delete":{"key":"contract/d","prev_kv":true}}],"failure":[{"get":{"key":"contract/d","count_only":true}}]}`},
		{method: http.MethodPost, path: "/v1/txn", body: `{"compare":[{"key_b64":"/w==","target":"value","op":"=","value_b64":"/w=="}],"failure":[{"get":{"key":"contract/d","count_only":true}}]}`},
		{method: http.MethodPost, path: "/v1/txn", body: `{"compare":[{"key":"a","target":"lease","op":"=","value":0}]}`},
		{method: http.MethodPost, path: "/v1/txn", body: `{"success":[` + strings.Repeat(`{"get":{"key":"a"}},`, 200) + `{"get":{"key":"a"}}]}`},
		{method: http.MethodPost, path: "/v1/compact", body: `{"revision":3}`},
		{method: http.MethodPost, path: "/v1/compact", body: `{"revision":2}`},
		{method: http.MethodPost, path: "/v1/compact", body: `{"revision":99999}`},
		{method: http.MethodPost, path: "/v1/compact", body: `{"revision":"x"}`},
		{method: http.MethodPost, path: "/v1/compact", body: strings.Repeat(" ", 5000) + `{"revision":2}`},
		{path: "/v1/kv/contract/a?rev=2"},
		{path: "/v1/kv/?prefix=true&rev=2"},
		// Watches that end by themselves: compacted starts, a resume from
		// the compacted id, and errors before streaming.
		{path: "/v1/watch/contract/a?rev=2"},
		{path: "/v1/watch/?prefix=true&rev=2&format=ndjson"},
		{path: "/v1/watch/contract/a", header: map[string]string{"Last-Event-ID": "compacted"}},
		{path: "/v1/watch/contract/?prefix=maybe"},
		{path: "/v1/watch/"},
		{path: "/v1/watch/" + strings.Repeat("k", 5000)},
		{path: "/v1/ws"},
		{path: "/v1/ws", header: map[string]string{"Connection": "Upgrade", "Upgrade": "websocket",
			"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "watchgate.v1",
			"Origin": "https://elsewhere.example"}},
		{path: "/v1/ws", header: map[string]string{"Connection": "Upgrade", "Upgrade": "websocket",
			"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}},
		{path: "/v1/status"},
		{path: "/v1/snapshot"},
		{path: "/healthz"},
		{path: "/readyz"},
		{path: "/openapi.yaml"},
		{path: "/nowhere"},
		{method: http.MethodPost, path: "/v1/status"},
		{method: http.MethodPatch, path: "/v1/kv/a"},
		{path: "/", h2: true},
		{method: http.MethodHead, path: "/"},
		{path: "/watchgate.js"},
		{method: http.MethodHead, path: "/watchgate.js"},
		{path: "/ui/app.js"},
		{path: "/ui/missing.js"},
		{method: http.MethodHead, path: "/ui/style.css"},
		{path: "/metrics"},
		{method: http.MethodPost, path: "/v1/session"},
		{path: "/v1/session"},
		{method: http.MethodDelete, path: "/v1/session"},
	}
	for _, c := range calls {
		s.do(t, c)
	}

	// Every operation of the spec that this package serves was called.
	doc := loadSpec(t)
	var missing []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			exercisedMu.Lock()
			ok := exercised[method+" "+path]
			exercisedMu.Unlock()
			if !ok {
				missing = append(missing, method+" "+path)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("operations of openapi.yaml never exercised: %v", missing)
	}
}

func mustReadFile(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// recordingTB records the failures reported to it instead of failing.
type recordingTB struct {
	testing.TB
	failures []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Fatalf(format string, args ...any) { r.Errorf(format, args...) }
func (r *recordingTB) Helper()                           {}

// TestContractDetectsDrift shows that the validator rejects answers that
// differ from openapi.yaml, so the contract checks above can fail.
func TestContractDetectsDrift(t *testing.T) {
	good := http.Header{"X-Revision": {"5"}, "X-Compact-Revision": {"1"}, "X-Request-Id": {"r"},
		"Content-Type": {"application/json"}, "Etag": {`"5"`}}
	withHeader := func(k, v string) http.Header {
		h := good.Clone()
		if v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
		return h
	}
	putBody := `{"revision":5,"kv":{"key":"a","create_revision":5,"mod_revision":5,"version":1}}`
	for _, tc := range []struct {
		name   string
		method string
		path   string
		resp   response
		wantOK bool
	}{
		{"valid put", http.MethodPut, "/v1/kv/a", response{status: 200, header: good, body: []byte(putBody)}, true},
		{"status not in spec", http.MethodPut, "/v1/kv/a", response{status: 202, header: good, body: []byte(putBody)}, false},
		{"no X-Revision", http.MethodPut, "/v1/kv/a", response{status: 200, header: withHeader("X-Revision", ""), body: []byte(putBody)}, false},
		{"bad ETag", http.MethodPut, "/v1/kv/a", response{status: 200, header: withHeader("Etag", "5"), body: []byte(putBody)}, false},
		{"missing revision member", http.MethodPut, "/v1/kv/a", response{status: 200, header: good,
			body: []byte(`{"kv":{"key":"a","create_revision":5,"mod_revision":5,"version":1}}`)}, false},
		{"key and key_b64", http.MethodPut, "/v1/kv/a", response{status: 200, header: good,
			body: []byte(`{"revision":5,"kv":{"key":"a","key_b64":"YQ==","create_revision":5,"mod_revision":5,"version":1}}`)}, false},
		{"extra member", http.MethodPut, "/v1/kv/a", response{status: 200, header: good,
			body: []byte(`{"revision":5,"extra":1,"kv":{"key":"a","create_revision":5,"mod_revision":5,"version":1}}`)}, false},
		{"problem as text", http.MethodGet, "/v1/kv/a", response{status: 404,
			header: withHeader("Content-Type", "text/plain"), body: []byte("not found")}, false},
		{"unknown path answered 200", http.MethodGet, "/v1/nothing", response{status: 200, header: good, body: []byte(`{}`)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hr := httptest.NewRequest(tc.method, tc.path, strings.NewReader("v"))
			hr.Header.Set("Content-Type", "application/octet-stream")
			rec := &recordingTB{TB: t}
			validateExchange(rec, hr, []byte("v"), tc.resp)
			if got := len(rec.failures) == 0; got != tc.wantOK {
				t.Errorf("valid = %v, want %v; failures: %v", got, tc.wantOK, rec.failures)
			}
		})
	}
}
