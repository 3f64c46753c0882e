package main

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/watchgate/watchgate/access"
)

// writeAccessFile writes an access file of name: token pairs, each allowed
// to read and write under the prefix of the same name (the name "admin":
// every key), and returns its path.
func writeAccessFile(t *testing.T, path string, tokens map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for name, tok := range tokens {
		prefix := name + "/"
		if name == "admin" {
			prefix = ""
		}
		b.WriteString("  - name: " + name + "\n    sha256: " + access.HashHex(tok) +
			"\n    read: ['" + prefix + "']\n    write: ['" + prefix + "']\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// authDo does a request with a bearer token and returns its status.
func authDo(t *testing.T, method, url, token, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBinaryAccessReload runs the binary with an access file, checks 401
// and 403, then reloads the file with SIGHUP: a revoked token's open
// stream goes on, its new requests get 401, a new token works, and a
// broken file leaves the previous one in force.
func TestBinaryAccessReload(t *testing.T) {
	file := filepath.Join(t.TempDir(), "access.yaml")
	admin, alice, bob, carol := access.NewToken(), access.NewToken(), access.NewToken(), access.NewToken()
	writeAccessFile(t, file, map[string]string{"admin": admin, "alice": alice, "bob": bob})
	p := startBinary(t, t.TempDir(), "--access-file", file)

	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{http.MethodPut, "/v1/kv/alice/a", alice, 201},
		{http.MethodPut, "/v1/kv/alice/a", "", 401},
		{http.MethodPut, "/v1/kv/alice/a", carol, 401},
		{http.MethodPut, "/v1/kv/alice/a", bob, 403},
		{http.MethodGet, "/v1/kv/alice/?prefix=true", bob, 403},
		{http.MethodGet, "/v1/kv/bob/?prefix=true", bob, 200},
		{http.MethodGet, "/healthz", "", 200},
		{http.MethodGet, "/", "", 200},
	} {
		if got := authDo(t, tc.method, p.base+tc.path, tc.token, "v"); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}

	// Bob watches his prefix.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/v1/watch/bob/?prefix=true", nil)
	req.Header.Set("Authorization", "Bearer "+bob)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("bob's watch: %v %v", err, resp)
	}
	defer resp.Body.Close()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	// Reload: bob is revoked, carol added.
	writeAccessFile(t, file, map[string]string{"admin": admin, "alice": alice, "carol": carol})
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, `"message":"access file reloaded"`)
	if got := authDo(t, http.MethodGet, p.base+"/v1/kv/bob/?prefix=true", bob, ""); got != 401 {
		t.Errorf("revoked token: %d, want 401", got)
	}
	if got := authDo(t, http.MethodPut, p.base+"/v1/kv/carol/x", carol, "v"); got != 201 {
		t.Errorf("new token: %d, want 201", got)
	}
	// Bob's open stream keeps the check it passed.
	if got := authDo(t, http.MethodPut, p.base+"/v1/kv/bob/after", admin, "v"); got != 201 {
		t.Fatalf("admin write: %d", got)
	}
	waitLine(t, lines, "event: put")
	if l := <-lines; !strings.Contains(l, `"key":"bob/after"`) {
		t.Errorf("bob's stream after the reloads: %q", l)
	}

	// A broken file is refused; the policy in force stays.
	os.WriteFile(file, []byte("tokens: [\n"), 0o600)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, p, "the previous one stays in force")
	if got := authDo(t, http.MethodPut, p.base+"/v1/kv/carol/y", carol, "v"); got != 201 {
		t.Errorf("after a broken reload: %d, want 201", got)
	}
	if logs := p.logs.String(); strings.Contains(logs, carol) || strings.Contains(logs, bob) || strings.Contains(logs, admin) {
		t.Errorf("a token is in the log")
	}
}

// waitLog waits until the process has logged s.
func waitLog(t *testing.T, p *process, s string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the log:\n%s", s, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
