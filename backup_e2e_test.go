package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

// rangeDump is every key of a server at one revision, as GET
// /v1/kv/?prefix=true lists them, page after page.
type rangeDump struct {
	Revision int64             `json:"revision"`
	KVs      []json.RawMessage `json:"kvs"`
}

// dumpAll lists every key of the server at base (at revision rev, or the
// current one when 0), following continue tokens.
func dumpAll(t *testing.T, base string, rev int64) rangeDump {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var all rangeDump
	next := ""
	for {
		u := base + "/v1/kv/?prefix=true&limit=100"
		if rev > 0 {
			u += "&rev=" + strconv.FormatInt(rev, 10)
		}
		if next != "" {
			u += "&continue=" + next
		}
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Revision int64             `json:"revision"`
			KVs      []json.RawMessage `json:"kvs"`
			More     bool              `json:"more"`
			Continue string            `json:"continue"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		all.Revision = page.Revision
		all.KVs = append(all.KVs, page.KVs...)
		if !page.More {
			return all
		}
		next = page.Continue
	}
}

// statusOf returns the server's /v1/status.
func statusOf(t *testing.T, base string) map[string]any {
	t.Helper()
	resp, err := http.Get(base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestBinarySnapshotRestore backs a server up with GET /v1/snapshot while
// it takes writes, restores the file into a fresh data directory as
// watchgate.db (the commands of the README), starts the binary on it and
// compares every key, the revision, the compact revision and the history
// left after compaction.
func TestBinarySnapshotRestore(t *testing.T) {
	p := startBinary(t, t.TempDir())
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, body string) {
		t.Helper()
		req, _ := http.NewRequest(method, p.base+path, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	for i := 0; i < 250; i++ {
		do(http.MethodPut, fmt.Sprintf("/v1/kv/app/%03d", i), fmt.Sprintf("v%d", i))
	}
	do(http.MethodPut, "/v1/kv/bin/%FF%00", "\xff\x00")
	do(http.MethodPost, "/v1/txn", `{"success":[{"put":{"key":"t/a","value":"1"}},{"put":{"key":"t/b","value":"2"}},{"delete":{"key":"app/00","prefix":true}}]}`)
	for i := 0; i < 20; i++ {
		do(http.MethodPut, "/v1/kv/app/100", fmt.Sprintf("update %d", i))
	}
	do(http.MethodPost, "/v1/compact", `{"revision":200}`)
	do(http.MethodDelete, "/v1/kv/app/2?prefix=true", "")

	// The backup, as the README shows it: curl -o backup.db .../v1/snapshot
	backup := filepath.Join(t.TempDir(), "backup.db")
	curlOut, err := runCurl(t, "-sS", "-f", "-D", "-", "-o", backup, p.base+"/v1/snapshot")
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, curlOut)
	}
	snapRev := headerValue(curlOut, "X-Revision")
	// Writes after the snapshot are not in it.
	do(http.MethodPut, "/v1/kv/after", "x")
	want := dumpAll(t, p.base, mustAtoi(t, snapRev))
	wantStatus := statusOf(t, p.base)

	// Restore: a fresh data directory holding the file as watchgate.db.
	restored := t.TempDir()
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, kv.FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	q := startBinary(t, restored)
	got := dumpAll(t, q.base, 0)
	if got.Revision != want.Revision || strconv.FormatInt(got.Revision, 10) != snapRev {
		t.Errorf("restored revision %d, snapshot's %s, original's at the snapshot %d", got.Revision, snapRev, want.Revision)
	}
	if diff := cmp.Diff(want.KVs, got.KVs, cmp.Transformer("str", func(m json.RawMessage) string { return string(m) })); diff != "" {
		t.Errorf("restored keys (-want +got)\n%s", diff)
	}
	// 250 keys, less app/000-009 and app/200-249, plus bin and t/a, t/b.
	if len(got.KVs) != 193 {
		t.Errorf("%d keys restored, want 193", len(got.KVs))
	}
	st := statusOf(t, q.base)
	if st["compact_revision"] != wantStatus["compact_revision"] || st["compact_revision"] != 200.0 {
		t.Errorf("compact revision %v, want %v", st["compact_revision"], wantStatus["compact_revision"])
	}
	// History survives the restore: a read at a revision between the
	// compaction and the snapshot is served, below it is 410.
	for _, tc := range []struct {
		rev  int64
		want int
	}{{200, 200}, {mustAtoi(t, snapRev) - 1, 200}, {199, 410}} {
		resp, err := client.Get(q.base + "/v1/kv/app/?prefix=true&count_only=true&rev=" + strconv.FormatInt(tc.rev, 10))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("restored read at %d: %d, want %d", tc.rev, resp.StatusCode, tc.want)
		}
	}
	// The restored server goes on from the snapshot's revision.
	req, _ := http.NewRequest(http.MethodPut, q.base+"/v1/kv/next", strings.NewReader("n"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Revision") != strconv.FormatInt(mustAtoi(t, snapRev)+1, 10) {
		t.Errorf("first write after the restore at revision %s, want %s + 1", resp.Header.Get("X-Revision"), snapRev)
	}
}

func mustAtoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}

// headerValue finds a header in curl -D - output.
func headerValue(out, name string) string {
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// runCurl runs curl with args and returns its output.
func runCurl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (make deps installs it): %v", err)
	}
	out, err := exec.Command(curl, args...).CombinedOutput()
	return string(out), err
}
