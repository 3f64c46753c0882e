package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
	"github.com/watchgate/watchgate/ws"
)

// e2eSegment is what one watch client received from one gateway, and the
// point it resumed from there.
type e2eSegment struct {
	gateway   int
	resumeRev int64 // 0 for the first segment
	resumeSub int32
	resumeID  string // SSE: the Last-Event-ID sent
	items     []watchtest.Item
}

// e2eWatch is a watch client that moves from gateway to gateway.
type e2eWatch struct {
	name   string
	events atomic.Int64 // events received so far
	// until is the revision after which the client stops (0: not yet
	// known).
	until atomic.Int64
	done  chan struct{}
	segs  []e2eSegment // read after done
	err   error        // read after done
}

// sseItem converts an SSE event of a watch into a validator item.
func sseItem(ev sseclient.Event) (watchtest.Item, error) {
	switch ev.Type {
	case "progress", "compacted":
		var d struct {
			Revision        int64 `json:"revision"`
			CompactRevision int64 `json:"compact_revision"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			return watchtest.Item{}, fmt.Errorf("%s event %q: %w", ev.Type, ev.Data, err)
		}
		if ev.Type == "compacted" {
			return watchtest.Item{Kind: watchtest.Compacted, Revision: d.Revision, CompactRevision: d.CompactRevision}, nil
		}
		return watchtest.Item{Kind: watchtest.Progress, Revision: d.Revision}, nil
	case "put", "delete":
		var d kvjson.KeyValue
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			return watchtest.Item{}, fmt.Errorf("%s event %q: %w", ev.Type, ev.Data, err)
		}
		e := watchtest.Event{ID: ev.ID, Type: kv.EventPut}
		if ev.Type == "delete" {
			e.Type = kv.EventDelete
		}
		var err error
		if e.KV, err = jsonKV(&d); err != nil {
			return watchtest.Item{}, err
		}
		if d.PrevKV != nil {
			p, err := jsonKV(d.PrevKV)
			if err != nil {
				return watchtest.Item{}, err
			}
			e.PrevKV = &p
		}
		it := watchtest.Item{Kind: watchtest.Events, Events: []watchtest.Event{e}}
		if !strings.Contains(ev.ID, ".") {
			it.Revision = e.KV.ModRevision // id "R" completes R
		}
		return it, nil
	}
	return watchtest.Item{}, fmt.Errorf("unexpected SSE event %+v", ev)
}

// wsItem converts a WebSocket message of a watch into a validator item.
func wsItem(m ws.Message) (watchtest.Item, error) {
	switch m.Type {
	case ws.TypeCreated:
		return watchtest.Item{Kind: watchtest.Created, Revision: m.Revision}, nil
	case ws.TypeProgress:
		return watchtest.Item{Kind: watchtest.Progress, Revision: m.Revision}, nil
	case ws.TypeEvents:
		it := watchtest.Item{Kind: watchtest.Events, Revision: m.Revision}
		for _, e := range m.Events {
			ev := watchtest.Event{Type: kv.EventPut}
			if e.Type == "delete" {
				ev.Type = kv.EventDelete
			}
			var err error
			if ev.KV, err = jsonKV(&e.KV); err != nil {
				return it, err
			}
			if e.PrevKV != nil {
				p, err := jsonKV(e.PrevKV)
				if err != nil {
					return it, err
				}
				ev.PrevKV = &p
			}
			it.Events = append(it.Events, ev)
		}
		return it, nil
	}
	return watchtest.Item{}, fmt.Errorf("unexpected WebSocket message %+v", m)
}

func jsonKV(k *kvjson.KeyValue) (kv.KeyValue, error) {
	key, err := k.KeyBytes()
	if err != nil {
		return kv.KeyValue{}, err
	}
	v, err := k.ValueBytes()
	if err != nil {
		return kv.KeyValue{}, err
	}
	return kv.KeyValue{Key: key, Value: v, CreateRevision: k.CreateRevision, ModRevision: k.ModRevision, Version: k.Version}, nil
}

// completes returns the revision an item completes (0 for none).
func completes(it watchtest.Item) int64 {
	if it.Kind == watchtest.Events || it.Kind == watchtest.Progress {
		return it.Revision
	}
	return 0
}

// watchSSE follows the prefix w/ from startRev over SSE: through
// bases[0] until that connection breaks, then through bases[1] with the
// Last-Event-ID of the last event received.
func watchSSE(ctx context.Context, w *e2eWatch, bases []string, startRev int64) {
	defer close(w.done)
	lastID := ""
	for g, base := range bases {
		url := base + "/v1/watch/w/?prefix=true&prev_kv=true&progress=1s"
		if g == 0 {
			url += "&rev=" + strconv.FormatInt(startRev, 10)
		}
		seg := e2eSegment{gateway: g, resumeID: lastID}
		st, err := sseclient.Connect(ctx, url, sseclient.Options{LastEventID: lastID})
		if err != nil {
			w.err = fmt.Errorf("SSE through gateway %d: %w", g+1, err)
			return
		}
		for {
			ev, err := st.Next()
			if err != nil {
				if g == 0 {
					break // the gateway is gone: resume through the next
				}
				w.err = fmt.Errorf("SSE through gateway %d: %w", g+1, err)
				st.Close()
				w.segs = append(w.segs, seg)
				return
			}
			it, err := sseItem(ev)
			if err != nil {
				w.err = err
				st.Close()
				return
			}
			seg.items = append(seg.items, it)
			w.events.Add(int64(len(it.Events)))
			if u := w.until.Load(); u > 0 && completes(it) >= u {
				st.Close()
				w.segs = append(w.segs, seg)
				return
			}
		}
		lastID = st.LastEventID()
		st.Close()
		w.segs = append(w.segs, seg)
	}
	w.err = errors.New("SSE: out of gateways")
}

// watchWS follows the prefix w/ from startRev over a WebSocket: through
// bases[0] until the socket breaks, then through bases[1] from the last
// revision completed + 1.
func watchWS(ctx context.Context, w *e2eWatch, bases []string, startRev int64) {
	defer close(w.done)
	rev := startRev
	for g, base := range bases {
		seg := e2eSegment{gateway: g}
		if g > 0 {
			seg.resumeRev = rev
		}
		sock, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v1/ws",
			&websocket.DialOptions{Subprotocols: []string{"watchgate.v1"}})
		if err != nil {
			w.err = fmt.Errorf("WebSocket to gateway %d: %w", g+1, err)
			return
		}
		sock.SetReadLimit(16 << 20)
		msg := fmt.Sprintf(`{"op":"watch","id":"w","key":"w/","prefix":true,"prev_kv":true,"rev":%d}`, rev)
		if err := sock.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			w.err = fmt.Errorf("WebSocket to gateway %d: %w", g+1, err)
			return
		}
		// Bookmarks on request, so that the client learns that it is
		// complete up to the last revision even when that came before
		// it was told to wait for it.
		pingDone := make(chan struct{})
		go func() {
			t := time.NewTicker(300 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-pingDone:
					return
				case <-t.C:
					if sock.Write(ctx, websocket.MessageText, []byte(`{"op":"progress"}`)) != nil {
						return
					}
				}
			}
		}()
		for {
			_, data, err := sock.Read(ctx)
			if err != nil {
				if g == 0 {
					break
				}
				close(pingDone)
				w.err = fmt.Errorf("WebSocket to gateway %d: %w", g+1, err)
				sock.CloseNow()
				w.segs = append(w.segs, seg)
				return
			}
			var m ws.Message
			if err := json.Unmarshal(data, &m); err != nil {
				close(pingDone)
				sock.CloseNow()
				w.err = fmt.Errorf("message %q: %w", data, err)
				return
			}
			if m.Type == ws.TypePong {
				continue
			}
			it, err := wsItem(m)
			if err != nil {
				close(pingDone)
				sock.CloseNow()
				w.err = err
				return
			}
			seg.items = append(seg.items, it)
			w.events.Add(int64(len(it.Events)))
			if c := completes(it); c > 0 {
				rev = max(rev, c+1)
			}
			if u := w.until.Load(); u > 0 && completes(it) >= u {
				close(pingDone)
				sock.Close(websocket.StatusNormalClosure, "")
				w.segs = append(w.segs, seg)
				return
			}
		}
		close(pingDone)
		sock.CloseNow()
		w.segs = append(w.segs, seg)
	}
	w.err = errors.New("WebSocket: out of gateways")
}

// parseResumeID returns where an SSE stream resumes after the event id:
// "R" resumes at R+1, "R.S" inside R after sub-revision S.
func parseResumeID(id string) (rev int64, sub int32, err error) {
	r, s, dotted := strings.Cut(id, ".")
	if rev, err = strconv.ParseInt(r, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("event id %q: %w", id, err)
	}
	if !dotted {
		return rev + 1, 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("event id %q: %w", id, err)
	}
	return rev, int32(n) + 1, nil
}

// e2eWrite sends one request and returns the revision it answered with.
func e2eWrite(client *http.Client, method, url, body string) (int64, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	var r struct{ Revision int64 }
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("%s %s: %q: %w", method, url, b, err)
	}
	return r.Revision, nil
}

// TestEtcdGatewaysFailover runs two watchgate binaries with
// --backend=etcd in front of a three-member etcd cluster. An SSE client
// and a WebSocket client watch the prefix w/ through gateway 1 while two
// writers write through both gateways (puts, deletes, and transactions of
// several keys). Gateway 1 is killed with SIGKILL; the clients resume
// through gateway 2 (Last-Event-ID; rev = last + 1) and the writer of
// gateway 1 moves there too. Both streams are checked against etcd's
// history: nothing lost, nothing repeated, revisions never split. Then a
// compaction through gateway 2 reaches, in-band, an SSE client that
// resumes from before it through gateway 1 restarted.
func TestEtcdGatewaysFailover(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	eps := strings.Join(c.Endpoints(), ",")
	args := []string{"--backend", "etcd", "--etcd-endpoints", eps}
	gws := []*process{startBinary(t, t.TempDir(), args...), startBinary(t, t.TempDir(), args...)}
	bases := []string{gws[0].base, gws[1].base}
	client := &http.Client{Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()

	// A key outside the prefix, to start from a known revision.
	first, err := e2eWrite(client, http.MethodPut, bases[0]+"/v1/kv/o/start", "x")
	if err != nil {
		t.Fatal(err)
	}
	startRev := first + 1
	sse := &e2eWatch{name: "SSE", done: make(chan struct{})}
	wsw := &e2eWatch{name: "WebSocket", done: make(chan struct{})}
	go watchSSE(ctx, sse, bases, startRev)
	go watchWS(ctx, wsw, bases, startRev)

	// Writers: writer i writes through gateway i (and moves to gateway 2
	// when its gateway is gone).
	var stop atomic.Bool
	var wg sync.WaitGroup
	var acked [2]atomic.Int64
	var unavailable atomic.Int64
	writeErrs := make(chan error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := i
			for n := 0; !stop.Load(); n++ {
				base := bases[g]
				var err error
				switch {
				case n%7 == 3:
					_, err = e2eWrite(client, http.MethodDelete, fmt.Sprintf("%s/v1/kv/w/%d/%d", base, i, (n-1)%5), "")
				case n%5 == 4:
					_, err = e2eWrite(client, http.MethodPost, base+"/v1/txn", fmt.Sprintf(
						`{"success":[{"put":{"key":"w/%d/t%d","value":"%d"}},{"put":{"key":"o/%d","value":"%d"}},{"put":{"key":"w/%d/u","value":"%d"}}]}`,
						i, n%3, n, i, n, i, n))
				case n%3 == 2:
					_, err = e2eWrite(client, http.MethodPut, fmt.Sprintf("%s/v1/kv/o/%d/%d", base, i, n%4), strconv.Itoa(n))
				default:
					_, err = e2eWrite(client, http.MethodPut, fmt.Sprintf("%s/v1/kv/w/%d/%d", base, i, n%5), strconv.Itoa(n))
				}
				switch {
				case err == nil:
					acked[i].Add(1)
				case strings.Contains(err.Error(), ": 404 "):
					// A delete of a key that is gone.
				case strings.Contains(err.Error(), ": 503 "):
					// etcd slow to answer on a loaded machine: the write
					// may or may not have been applied; the history says
					// which, and the streams are checked against it.
					unavailable.Add(1)
				case g == 0 && i == 0:
					// Gateway 1 was killed (or the write met it dying): an
					// unacknowledged write may or may not have been
					// applied; the history says which.
					g = 1
				default:
					writeErrs <- fmt.Errorf("writer %d through gateway %d: %w", i+1, g+1, err)
					return
				}
			}
		}()
	}
	stopWriters := func() {
		stop.Store(true)
		wg.Wait()
		select {
		case err := <-writeErrs:
			t.Fatal(err)
		default:
		}
	}
	defer stopWriters()

	waitEvents := func(what string, n int64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for sse.events.Load() < n || wsw.events.Load() < n {
			select {
			case <-sse.done:
				t.Fatalf("%s: the SSE client stopped: %v", what, sse.err)
			case <-wsw.done:
				t.Fatalf("%s: the WebSocket client stopped: %v", what, wsw.err)
			case err := <-writeErrs:
				t.Fatal(err)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d SSE and %d WebSocket events after 20s, want %d", what, sse.events.Load(), wsw.events.Load(), n)
			}
		}
	}
	waitEvents("before the kill", 40)
	if err := gws[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	gws[0].wait(t, 10*time.Second)
	before := min(sse.events.Load(), wsw.events.Load())
	waitEvents("after the kill", before+40)
	stopWriters()
	last, err := e2eWrite(client, http.MethodPut, bases[1]+"/v1/kv/w/end", "end")
	if err != nil {
		t.Fatal(err)
	}
	sse.until.Store(last)
	wsw.until.Store(last)
	for _, w := range []*e2eWatch{sse, wsw} {
		select {
		case <-w.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s client: not complete up to %d after 20s", w.name, last)
		}
		if w.err != nil {
			t.Fatalf("%s client: %v", w.name, w.err)
		}
	}
	t.Logf("writes acknowledged: %d through gateway 1 (then 2), %d through gateway 2, %d answered 503; last revision %d",
		acked[0].Load(), acked[1].Load(), unavailable.Load(), last)

	// etcd's history, read through a store of the test's own.
	es, err := etcdstore.New(ctx, etcdstore.Options{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	var batches []kv.Batch
	for from := startRev; from <= last; {
		bs, next, err := es.History(ctx, from, last, 0)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, bs...)
		if next <= from {
			t.Fatalf("history from %d does not advance", from)
		}
		from = next
	}
	h, err := watchtest.NewHistory(startRev-1, batches)
	if err != nil {
		t.Fatal(err)
	}
	req := watchtest.Request{Key: []byte("w/"), End: kv.PrefixEnd([]byte("w/")), StartRev: startRev, PrevKV: true}
	for _, w := range []*e2eWatch{sse, wsw} {
		if len(w.segs) != 2 || w.segs[0].gateway != 0 || w.segs[1].gateway != 1 {
			t.Fatalf("%s client: %d segments, want one through each gateway", w.name, len(w.segs))
		}
		ck := watchtest.NewChecker(h, req)
		for i, seg := range w.segs {
			if i > 0 {
				// Where the client resumed, checked against where it
				// should have.
				rev, sub := seg.resumeRev, int32(0)
				if w == sse {
					if seg.resumeID != ck.ResumeID() {
						t.Errorf("SSE client resumed with Last-Event-ID %q, want %q", seg.resumeID, ck.ResumeID())
					}
					if rev, sub, err = parseResumeID(seg.resumeID); err != nil {
						t.Fatal(err)
					}
				} else if wr, ws := ck.ResumePoint(); seg.resumeRev != wr || ws != 0 {
					t.Errorf("WebSocket client resumed at %d, want %d.%d", seg.resumeRev, wr, ws)
				}
				if err := ck.Resume(rev, sub); err != nil {
					t.Fatalf("%s client: %v", w.name, err)
				}
			}
			n := 0
			for _, it := range seg.items {
				n += len(it.Events)
				if err := ck.Add(it); err != nil {
					t.Fatalf("%s client, segment through gateway %d: %v", w.name, seg.gateway+1, err)
				}
			}
			if n == 0 {
				t.Errorf("%s client received no event through gateway %d", w.name, seg.gateway+1)
			}
		}
		if err := ck.Complete(last); err != nil {
			t.Fatalf("%s client: %v", w.name, err)
		}
		t.Logf("%s client: %d events checked, through both gateways", w.name, ck.Events())
	}

	// Compaction through gateway 2 reaches, in-band, a client that
	// resumes from before it through gateway 1 restarted.
	gw1 := startBinary(t, t.TempDir(), args...)
	if _, err := e2eWrite(client, http.MethodPost, bases[1]+"/v1/compact", fmt.Sprintf(`{"revision":%d}`, last)); err != nil {
		t.Fatal(err)
	}
	st, err := sseclient.Connect(ctx, gw1.base+"/v1/watch/w/?prefix=true", sseclient.Options{LastEventID: strconv.FormatInt(startRev, 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev, err := st.Next()
	if err != nil {
		t.Fatal(err)
	}
	it, err := sseItem(ev)
	if err != nil {
		t.Fatal(err)
	}
	// etcd's compaction at last drops the deletes made at last: the
	// compact revision shown is the one after it.
	if it.Kind != watchtest.Compacted || ev.ID != "compacted" || it.CompactRevision != last+1 {
		t.Fatalf("resuming at %d after a compaction at %d: %+v (%+v), want compacted at %d", startRev+1, last, it, ev, last+1)
	}
	if _, err := st.Next(); err == nil {
		t.Errorf("the stream goes on after compacted")
	}
	// The browser's retry after the compacted event is told to stop.
	_, err = sseclient.Connect(ctx, gw1.base+"/v1/watch/w/?prefix=true", sseclient.Options{LastEventID: "compacted"})
	if se, ok := errors.AsType[*sseclient.StatusError](err); !ok || se.StatusCode != http.StatusNoContent {
		t.Errorf("resuming from Last-Event-ID compacted: %v, want 204", err)
	}
}

// TestEtcdGatewayExitsWhenFeedLost cuts a gateway off from etcd (its only
// endpoint is one member, which is killed) while the rest of the cluster
// writes and compacts past the gateway's revision. When the member is
// back, the gateway's etcd watch cannot resume: the gateway must exit
// non-zero, so that its supervisor restarts it, rather than serve a
// stream with a hole.
func TestEtcdGatewayExitsWhenFeedLost(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	gw := startBinary(t, t.TempDir(), "--backend", "etcd", "--etcd-endpoints", c.Member(2).ClientURL)
	client := &http.Client{Timeout: 10 * time.Second}
	if _, err := e2eWrite(client, http.MethodPut, gw.base+"/v1/kv/a", "1"); err != nil {
		t.Fatal(err)
	}
	c.Kill(2)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The killed member may have been the leader: calls are retried
	// until the others have elected one.
	retry := func(what string, f func() error) {
		t.Helper()
		for {
			err := f()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	var rev int64
	for i := range 5 {
		retry("put", func() error {
			resp, err := cli.Put(ctx, "b", strconv.Itoa(i))
			if err == nil {
				rev = resp.Header.Revision
			}
			return err
		})
	}
	retry("compact", func() error { _, err := cli.Compact(ctx, rev); return err })
	c.Restart(2)
	select {
	case <-gw.exited:
	case <-time.After(40 * time.Second):
		t.Fatalf("the gateway still runs 40s after its etcd watch lost its place to a compaction:\n%s", gw.logs.String())
	}
	var ee *exec.ExitError
	if !errors.As(gw.err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("the gateway exited with %v, want exit status 1:\n%s", gw.err, gw.logs.String())
	}
	logs := gw.logs.String()
	if !strings.Contains(logs, "commit feed lost to compaction") || !strings.Contains(logs, `"message":"stopped"`) {
		t.Errorf("the log does not say why the gateway exited, or it did not shut down in order:\n%s", logs)
	}
}
