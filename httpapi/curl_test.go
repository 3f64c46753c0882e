package httpapi

import (
	"net/http"
	"os/exec"
	"strings"
	"testing"
)

// curl runs curl with args against the server and returns what it printed.
// -w appends "\n<status> <http version>".
func curl(t *testing.T, args ...string) (body string, status string, version string) {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is not installed (make deps installs it): %v", err)
	}
	all := append([]string{"-sS", "--max-time", "10", "-w", "\n%{http_code} %{http_version}"}, args...)
	out, err := exec.Command(path, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	fields := strings.Fields(s[i+1:])
	if len(fields) != 2 {
		t.Fatalf("curl %v: unexpected output %q", args, out)
	}
	return s[:i], fields[0], fields[1]
}

// TestCurl drives the API with curl over HTTP/1.1 and cleartext HTTP/2, as
// the README shows it.
func TestCurl(t *testing.T) {
	s := newTestServer(t, Options{}, kvOptionsForTest())
	for _, proto := range []struct {
		flag, version string
	}{
		{"--http1.1", "1.1"},
		{"--http2-prior-knowledge", "2"},
	} {
		t.Run(proto.flag, func(t *testing.T) {
			key := s.URL + "/v1/kv/curl/" + proto.version + "/hello"
			for _, tc := range []struct {
				name   string
				args   []string
				status string
				body   string // substring of the output
			}{
				{"put", []string{"-X", "PUT", "--data-binary", "world", key}, "201", `"kv":{"key":"curl/` + proto.version + `/hello"`},
				{"get raw", []string{key}, "200", "world"},
				{"get json", []string{"-H", "Accept: application/json", key}, "200", `"value":"world"`},
				{"headers", []string{"-D", "-", "-o", "/dev/null", key}, "200", "etag: \""},
				{"revision header", []string{"-D", "-", "-o", "/dev/null", key}, "200", "x-compact-revision: 1"},
				{"range", []string{s.URL + "/v1/kv/curl/?prefix=true&keys_only=true"}, "200", `"count":`},
				{"txn", []string{"-d", `{"compare":[{"key":"curl/` + proto.version + `/hello","target":"value","op":"=","value":"world"}],"success":[{"get":{"key":"curl/` + proto.version + `/hello"}}]}`,
					s.URL + "/v1/txn"}, "200", `"succeeded":true`},
				{"conditional put fails", []string{"-X", "PUT", "-H", "If-None-Match: *", "--data-binary", "again", key}, "412", `"status":412`},
				{"missing", []string{s.URL + "/v1/kv/curl/none"}, "404", `"type":"urn:watchgate:problem:key-not-found"`},
				{"delete", []string{"-X", "DELETE", key}, "200", `"deleted":1`},
			} {
				out, status, version := curl(t, append([]string{proto.flag}, tc.args...)...)
				if status != tc.status || version != proto.version || !strings.Contains(strings.ToLower(out), strings.ToLower(tc.body)) {
					t.Errorf("%s: status %s over HTTP/%s, output %q; want %s over HTTP/%s containing %q",
						tc.name, status, version, out, tc.status, proto.version, tc.body)
				}
			}
		})
	}
	// The value written by curl reads back through Go's client too.
	s.put(t, "curl/x", "y")
	mustStatus(t, s.do(t, req{path: "/v1/kv/curl/x", h2: true}), http.StatusOK)
}
