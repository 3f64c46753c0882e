package h2srv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCurl talks to the server with curl over cleartext HTTP/2 with prior
// knowledge, as the API's documentation does.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	ts := newTestServer(t, echoHandler(), Options{StreamWindow: 65535}, false)
	body := filepath.Join(t.TempDir(), "body")
	data := bytes.Repeat([]byte("0123456789"), 300_000)
	if err := os.WriteFile(body, data, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"get", []string{ts.URL + "/x?y=1", "-H", "X-A: b"}, "HTTP/2 200"},
		{"post", []string{ts.URL + "/sum", "--data-binary", "@" + body}, "3000000 "},
		{"head", []string{"-I", ts.URL + "/x"}, "x-method: HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--http2-prior-knowledge", "-sS", "-i", "--max-time", "20"}, tt.args...)
			out, err := exec.Command(curl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("curl output lacks %q:\n%s", tt.want, out)
			}
			if !strings.HasPrefix(string(out), "HTTP/2 200") {
				t.Errorf("curl output:\n%s", out)
			}
		})
	}
}
