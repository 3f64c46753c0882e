package reliability

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGoneAgreesWithCompactRevision checks, against the real binary, that
// a read answered 410 Gone is below the X-Compact-Revision of its answer:
// the header is the oldest revision still readable, so a 410 at a revision
// the header calls readable contradicts it. Readers read at the compact
// revision the last compaction returned (always readable then) while the
// compaction moves up one revision at a time.
func TestGoneAgreesWithCompactRevision(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(ctx, bin, filepath.Join(t.TempDir(), "data"), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	rc := &restClient{c: &http.Client{Transport: tr, Timeout: 10 * time.Second}, base: func() string { return "http://" + addr }}
	const revisions = 400
	for i := range revisions {
		in := opInput{Kind: opPut, Key: "k", Value: strconv.Itoa(i)}
		if out, err := rc.exec(ctx, &in); err != nil || out.Unknown {
			t.Fatalf("put: %v %s", err, describeOutput(&out))
		}
	}

	var readable atomic.Int64 // the compact revision of the last compaction
	readable.Store(1)
	var (
		mu    sync.Mutex
		bad   []string
		reads atomic.Int64
	)
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rctx.Err() == nil {
				r := readable.Load()
				in := opInput{Kind: opRangeAt, Key: "k", Rev: r}
				out, err := rc.exec(rctx, &in)
				if err != nil || out.Unknown {
					continue
				}
				reads.Add(1)
				if out.Status == http.StatusGone && out.Compact <= r {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("read at %d: 410 Gone with X-Compact-Revision %d (current revision %d)", r, out.Compact, out.Rev))
					mu.Unlock()
				}
			}
		}()
	}
	for c := int64(2); c <= revisions && ctx.Err() == nil; c++ {
		status, err := rc.compact(ctx, c)
		if err != nil || status != http.StatusOK {
			t.Fatalf("compact %d: %d %v", c, status, err)
		}
		readable.Store(c)
		mu.Lock()
		n := len(bad)
		mu.Unlock()
		if n >= 3 {
			break
		}
	}
	rcancel()
	wg.Wait()
	t.Logf("%d reads at the compact revision", reads.Load())
	for i, b := range bad {
		if i == 5 {
			break
		}
		t.Error(b)
	}
}

// TestRevisionNeverGoesBackForOneClient checks, against the real binary
// under concurrent writes, that the revisions one client sees never go
// back from one request to the next: a read's X-Revision (the revision
// whose state it shows) and then GET /v1/status's revision. A read that
// shows a revision the server does not report yet would let a client that
// reads, then watches from the read's revision + 1, be sent the event it
// already read.
func TestRevisionNeverGoesBackForOneClient(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(ctx, bin, filepath.Join(t.TempDir(), "data"), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	rc := &restClient{c: &http.Client{Transport: tr, Timeout: 10 * time.Second}, base: func() string { return "http://" + addr }}

	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				in := opInput{Kind: opPut, Key: fmt.Sprintf("k%d", w), Value: strconv.Itoa(i)}
				rc.exec(wctx, &in)
			}
		}()
	}
	var bad []string
	deadline := time.Now().Add(5 * time.Second)
	reads := 0
	for time.Now().Before(deadline) && len(bad) < 3 {
		in := opInput{Kind: opGet, Key: "k0"}
		out, err := rc.exec(ctx, &in)
		if err != nil || out.Unknown {
			t.Fatalf("get: %v", err)
		}
		st, err := rc.status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if st.Revision < out.Rev {
			bad = append(bad, fmt.Sprintf("GET /v1/kv/k0 showed revision %d, then GET /v1/status revision %d", out.Rev, st.Revision))
		}
	}
	wcancel()
	wg.Wait()
	t.Logf("%d read/status pairs", reads)
	for _, b := range bad {
		t.Error(b)
	}
}
