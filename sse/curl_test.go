package sse

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/internal/sseclient"
)

// TestCurl watches with curl -N, the way the API documents, over HTTP/1.1
// and cleartext HTTP/2 (prior knowledge), resuming inside a transaction.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed: %v", err)
	}
	e := newEnv(t, Options{})
	r1 := e.put(t, "c/a", "1")
	r2 := e.txn(t, "c/b", "2", "x", "0", "c/c", "3", "c/d", "4")
	evs := e.storeEvents(t, r2)
	// Every run resumes inside r2, so it also gets the writes of the runs
	// before it.
	later := []wire{
		{fmt.Sprintf("%d.2", r2), "put", kvData(&evs[2], false)},
		{fmt.Sprint(r2), "put", kvData(&evs[3], false)},
	}
	for _, tt := range []struct {
		flag, status string
	}{
		{"--http1.1", "HTTP/1.1 200 OK"},
		{"--http2-prior-knowledge", "HTTP/2 200"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, curl, tt.flag, "-sN", "-D", "-",
				"-H", fmt.Sprintf("Last-Event-ID: %d.0", r2), e.url("c/", "prefix=true"))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cancel()
			br := bufio.NewReader(out)
			var headers []string
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("headers: %v", err)
				}
				if l = strings.TrimRight(l, "\r\n"); l == "" {
					break
				}
				headers = append(headers, l)
			}
			if strings.TrimSpace(headers[0]) != tt.status || !containsFold(headers, "content-type: text/event-stream") {
				t.Errorf("headers %q", headers)
			}
			p := sseclient.NewParser(br)
			r3 := e.put(t, "c/a", "5")
			later = append(later, wire{fmt.Sprint(r3), "put", kvData(&e.storeEvents(t, r3)[0], false)})
			want := later
			var got []wire
			for range want {
				ev, err := p.Next()
				if err != nil {
					t.Fatalf("curl output: %v", err)
				}
				got = append(got, wire{ev.ID, ev.Type, ev.Data})
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}

	// NDJSON for scripts: curl -N ... | jq
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "--http2-prior-knowledge", "-sN", e.url("c/", fmt.Sprintf("prefix=true&format=ndjson&rev=%d", r1)))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cancel()
	sc := bufio.NewScanner(out)
	var ids []string
	for len(ids) < 4 && sc.Scan() {
		var l struct {
			ID, Type string
			Revision int64
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		ids = append(ids, l.ID)
	}
	if diff := cmp.Diff([]string{fmt.Sprint(r1), fmt.Sprintf("%d.0", r2), fmt.Sprintf("%d.2", r2), fmt.Sprint(r2)}, ids[:4]); diff != "" {
		t.Errorf("NDJSON ids (-want +got):\n%s", diff)
	}
}

func containsFold(lines []string, want string) bool {
	for _, l := range lines {
		if strings.EqualFold(l, want) {
			return true
		}
	}
	return false
}
