package reliability

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/ws"
)

// TestGoneAgreesWithCompactRevision checks, against the real binary, that
// a read answered 410 Gone is below the X-Compact-Revision of its answer:
// the header is the oldest revision still readable, so a 410 at a revision
// the header calls readable contradicts it. Readers read at the compact
// revision the last compaction returned (always readable then) while the
// compaction moves up one revision at a time.
func TestGoneAgreesWithCompactRevision(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rc, stop := startOwnServer(ctx, t)
	defer stop()
	const revisions = 400
	for i := range revisions {
		in := opInput{Kind: opPut, Key: "k", Value: strconv.Itoa(i)}
		if out, err := rc.exec(ctx, &in); err != nil || out.Unknown {
			t.Fatalf("put: %v %s", err, describeOutput(&out))
		}
	}

	// A neighbour dirties the file system continuously, as a busy host
	// does: fsyncs take longer, which widens any window between a
	// commit becoming visible and becoming durable.
	nctx, ncancel := context.WithCancel(ctx)
	defer ncancel()
	var nwg sync.WaitGroup
	nwg.Add(1)
	go func() {
		defer nwg.Done()
		dirty(nctx, filepath.Join(t.TempDir(), "neighbour"))
	}()
	defer nwg.Wait()
	defer ncancel()

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
// whose state it shows), then the X-Revision of GET /healthz (the
// server's current revision). A read that shows a revision the server
// does not report yet is a revision not yet durable, or not yet sent to
// the watchers: a client that reads, then watches from the read's
// revision + 1, could be sent the event it already read. A neighbour
// dirties the file system, as in TestGoneAgreesWithCompactRevision.
func TestRevisionNeverGoesBackForOneClient(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rc, stop := startOwnServer(ctx, t)
	defer stop()

	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dirty(wctx, filepath.Join(t.TempDir(), "neighbour"))
	}()
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
		resp, _, err := rc.do(ctx, http.MethodGet, "/healthz", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := strconv.ParseInt(resp.Header.Get("X-Revision"), 10, 64)
		if err != nil {
			t.Fatalf("GET /healthz without X-Revision: %v", err)
		}
		reads++
		if cur < out.Rev {
			bad = append(bad, fmt.Sprintf("GET /v1/kv/k0 showed revision %d, then GET /healthz X-Revision %d", out.Rev, cur))
		}
	}
	wcancel()
	wg.Wait()
	t.Logf("%d read/status pairs", reads)
	for _, b := range bad {
		t.Error(b)
	}
}

// dirty writes a file over and over until ctx ends, leaving the file
// system with dirty pages for the server's fsyncs to wait on.
func dirty(ctx context.Context, path string) {
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for ctx.Err() == nil {
		f, err := os.Create(path)
		if err != nil {
			return
		}
		for i := 0; i < 16 && ctx.Err() == nil; i++ {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
		f.Close()
		os.Remove(path)
	}
}

// TestReadThenWatchSeesNoEventTwice runs the pattern the API is designed
// for, against the real binary under concurrent writes: read a range,
// then watch it from the read's revision + 1 (WebSocket, rev = R+1). The
// watch must start exactly there: an event at or below R is one the
// client already has from its read. A neighbour dirties the file system,
// as in TestGoneAgreesWithCompactRevision.
func TestReadThenWatchSeesNoEventTwice(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr, rc, stop := startOwnServer(ctx, t)
	defer stop()

	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer wcancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		dirty(wctx, filepath.Join(t.TempDir(), "neighbour"))
	}()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				in := opInput{Kind: opPut, Key: fmt.Sprintf("k/%d", w), Value: strconv.Itoa(i)}
				rc.exec(wctx, &in)
			}
		}()
	}

	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var bad []string
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for ; time.Now().Before(deadline) && len(bad) < 3; n++ {
		rev, _, err := rc.rangeAll(ctx, "k/")
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("w%d", n)
		msg := fmt.Sprintf(`{"op":"watch","id":%q,"key":"k/","prefix":true,"rev":%d}`, id, rev+1)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		// The first events message of this watch.
		for {
			m, err := readWS(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if m.ID != id || m.Type != ws.TypeEvents {
				continue
			}
			for _, e := range m.Events {
				if e.KV.ModRevision <= rev {
					bad = append(bad, fmt.Sprintf("read at revision %d, watched from %d, was sent the event of revision %d", rev, rev+1, e.KV.ModRevision))
					break
				}
			}
			break
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"op":"cancel","id":%q}`, id))); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d reads followed by a watch", n)
	for _, b := range bad {
		t.Error(b)
	}
}

// TestPreconditionFailedShowsOneRevision checks, against the real binary
// under concurrent writes to the same key, that a 412's problem document
// describes one state: its "revision" member is the revision of the
// current kv it carries, the same as its X-Revision. A client that
// re-syncs from a 412 (take the kv, watch from revision + 1) would
// otherwise skip the changes between the two.
func TestPreconditionFailedShowsOneRevision(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, rc, stop := startOwnServer(ctx, t)
	defer stop()

	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer wcancel()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wctx.Err() == nil; i++ {
				in := opInput{Kind: opPut, Key: "k", Value: fmt.Sprintf("w%d-%d", w, i)}
				rc.exec(wctx, &in)
			}
		}()
	}
	var bad []string
	deadline := time.Now().Add(5 * time.Second)
	n := 0
	for ; time.Now().Before(deadline) && len(bad) < 3; n++ {
		resp, body, err := rc.do(ctx, http.MethodPut, "/v1/kv/k", http.Header{"If-Match": {`"1"`}}, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusPreconditionFailed {
			t.Fatalf("PUT with a stale If-Match: status %d: %s", resp.StatusCode, body)
		}
		var p struct {
			Revision *int64 `json:"revision"`
			KV       *struct {
				ModRevision int64 `json:"mod_revision"`
			} `json:"kv"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		hdr, _ := strconv.ParseInt(resp.Header.Get("X-Revision"), 10, 64)
		if p.Revision != nil && *p.Revision != hdr {
			mod := int64(0)
			if p.KV != nil {
				mod = p.KV.ModRevision
			}
			bad = append(bad, fmt.Sprintf(`412 with X-Revision %d and "revision":%d in its problem, for a kv of mod_revision %d`, hdr, *p.Revision, mod))
		}
	}
	t.Logf("%d failed preconditions", n)
	for _, b := range bad {
		t.Error(b)
	}
}

// startOwnServer runs the binary on a free loopback port over a new store
// for one test, with a REST client for it. stop ends the server
// gracefully and fails t if it does not exit cleanly.
func startOwnServer(ctx context.Context, t *testing.T) (addr string, rc *restClient, stop func()) {
	t.Helper()
	bin := buildBinary(t)
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startServer(ctx, bin, filepath.Join(t.TempDir(), "data"), addr)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	rc = &restClient{c: &http.Client{Transport: tr, Timeout: 10 * time.Second}, base: func() string { return "http://" + addr }}
	return addr, rc, func() {
		tr.CloseIdleConnections()
		if err := srv.stop(30 * time.Second); err != nil {
			t.Error(err)
		}
	}
}
