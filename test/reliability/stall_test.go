package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/ws"
)

// stallValues and stallValueSize make far more data than the buffers of a
// loopback connection hold, so that a client that stops reading blocks
// the server's writes to it.
const (
	stallValues    = 20
	stallValueSize = 1_000_000
	// writeTimeout is the server's default per-write deadline for both
	// stream transports.
	writeTimeout = 10 * time.Second
)

// TestStalledReaderIsCutAndResumes checks the promise to slow clients
// against the real binary: a WebSocket and an SSE client watch a prefix
// and stop reading while 20 MB of values are written. The writes must
// complete (writers never wait for readers); once the clients have read
// nothing for longer than the write timeout, the server must have cut
// them; each then resumes from the last revision it saw and must receive
// exactly the rest, which the validator checks against the store's
// history.
func TestStalledReaderIsCutAndResumes(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	srv, err := startServer(ctx, bin, data, addr)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			srv.kill()
		}
	}()
	base := "http://" + addr
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	rc := &restClient{c: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: func() string { return base }}
	req := watchtest.Request{Key: []byte("big/"), End: kv.PrefixEnd([]byte("big/"))}

	// The watchers connect, take their first answer, then stop reading.
	wsc, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer wsc.CloseNow()
	wsc.SetReadLimit(64 << 20)
	if err := wsc.Write(ctx, websocket.MessageText, []byte(`{"op":"watch","id":"w","key":"big/","prefix":true}`)); err != nil {
		t.Fatal(err)
	}
	var wsItems []watchtest.Item
	m, err := readWS(ctx, wsc)
	if err != nil || m.Type != ws.TypeCreated {
		t.Fatalf("first WebSocket message %+v, %v; want created", m, err)
	}
	wsItems = append(wsItems, watchtest.Item{Kind: watchtest.Created, Revision: m.Revision})

	sreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch/big/?prefix=true&progress=0", nil)
	resp, err := client.Do(sreq)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	created, err := strconv.ParseInt(resp.Header.Get("X-Revision"), 10, 64)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE watch: status %d, X-Revision %q", resp.StatusCode, resp.Header.Get("X-Revision"))
	}
	sseItems := []watchtest.Item{{Kind: watchtest.Created, Revision: created}}

	start := time.Now()
	for i := range stallValues {
		in := opInput{Kind: opPut, Key: fmt.Sprintf("big/%02d", i%8), Value: fmt.Sprintf("v%d|%s", i, strings.Repeat("x", stallValueSize))}
		out, err := rc.exec(ctx, &in)
		if err != nil || out.Unknown {
			t.Fatalf("put %d with the watchers stalled: %v %s", i, err, describeOutput(&out))
		}
	}
	final := created + stallValues
	t.Logf("%d puts of %d bytes took %v with both watchers stalled", stallValues, stallValueSize, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Until(start.Add(writeTimeout + 3*time.Second)))

	// WebSocket: drain the first connection, which must end, then resume.
	var last int64 = created
	first := 0
	for {
		m, err := readWS(ctx, wsc)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the stalled WebSocket was not cut by the server")
			}
			break
		}
		it, err := wsItem(m)
		if err != nil {
			t.Fatal(err)
		}
		wsItems = append(wsItems, it)
		if m.Type == ws.TypeEvents {
			first += len(m.Events)
			last = m.Revision
		}
	}
	if first >= stallValues {
		t.Errorf("the stalled WebSocket got all %d events on its first connection: it was not cut", first)
	}
	wsResume := last + 1
	wsc2, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer wsc2.CloseNow()
	wsc2.SetReadLimit(64 << 20)
	msg := fmt.Sprintf(`{"op":"watch","id":"w","key":"big/","prefix":true,"rev":%d}`, wsResume)
	if err := wsc2.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	var wsItems2 []watchtest.Item
	for last < final {
		m, err := readWS(ctx, wsc2)
		if err != nil {
			t.Fatalf("resumed WebSocket: %v (at revision %d of %d)", err, last, final)
		}
		it, err := wsItem(m)
		if err != nil {
			t.Fatal(err)
		}
		wsItems2 = append(wsItems2, it)
		if m.Type == ws.TypeEvents {
			last = m.Revision
		}
	}
	t.Logf("WebSocket: %d events before the cut, the rest after resuming at %d", first, wsResume)

	// SSE: the same, resuming with Last-Event-ID.
	p := sseclient.NewParser(resp.Body)
	firstSSE := 0
	lastID := strconv.FormatInt(created, 10)
	for {
		ev, err := p.Next()
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the stalled SSE stream was not cut by the server")
			}
			break
		}
		e, err := decodeSSEEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		sseItems = append(sseItems, watchtest.Item{Kind: watchtest.Events, Events: []watchtest.Event{e}})
		firstSSE++
		lastID = ev.ID
	}
	if firstSSE >= stallValues {
		t.Errorf("the stalled SSE stream got all %d events on its first connection: it was not cut", firstSSE)
	}
	resp.Body.Close()
	sreq2, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch/big/?prefix=true&progress=0", nil)
	sreq2.Header.Set("Last-Event-ID", lastID)
	resp2, err := client.Do(sreq2)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	sseItems2 := []watchtest.Item{}
	p2 := sseclient.NewParser(resp2.Body)
	for got := firstSSE; got < stallValues; got++ {
		ev, err := p2.Next()
		if err != nil {
			t.Fatalf("resumed SSE stream: %v after %d events", err, got)
		}
		e, err := decodeSSEEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		sseItems2 = append(sseItems2, watchtest.Item{Kind: watchtest.Events, Events: []watchtest.Event{e}})
	}
	t.Logf("SSE: %d events before the cut, the rest after resuming from %s", firstSSE, lastID)
	resp2.Body.Close()
	wsc2.CloseNow()
	tr.CloseIdleConnections()

	if err := srv.stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	stopped = true
	hl := newHistoryLog()
	if _, _, err := hl.readFile(ctx, data, 0); err != nil {
		t.Fatal(err)
	}
	h, err := hl.History()
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, a, b []watchtest.Item, rev int64, sub int32) {
		c := watchtest.NewChecker(h, req)
		for _, it := range a {
			if err := c.Add(it); err != nil {
				t.Fatalf("%s, first connection: %v", name, err)
			}
		}
		if err := c.Resume(rev, sub); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, it := range b {
			if err := c.Add(it); err != nil {
				t.Fatalf("%s, resumed: %v", name, err)
			}
		}
		if err := c.Complete(final); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	check("WebSocket", wsItems, wsItems2, wsResume, 0)
	rev, sub, _ := parseID(lastID)
	check("SSE", sseItems, sseItems2, rev, sub)
}

// readWS reads one server message, waiting at most 30s.
func readWS(ctx context.Context, c *websocket.Conn) (ws.Message, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, data, err := c.Read(rctx)
	if err != nil {
		return ws.Message{}, err
	}
	var m ws.Message
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("message %q: %w", data, err)
	}
	return m, nil
}

// wsItem converts a message of a plain watch for the validator.
func wsItem(m ws.Message) (watchtest.Item, error) {
	switch m.Type {
	case ws.TypeCreated:
		return watchtest.Item{Kind: watchtest.Created, Revision: m.Revision}, nil
	case ws.TypeProgress:
		return watchtest.Item{Kind: watchtest.Progress, Revision: m.Revision}, nil
	case ws.TypeEvents:
		it := watchtest.Item{Kind: watchtest.Events, Revision: m.Revision}
		for _, e := range m.Events {
			ev, err := decodeWSEvent(e)
			if err != nil {
				return it, err
			}
			it.Events = append(it.Events, ev)
		}
		return it, nil
	}
	return watchtest.Item{}, errors.New("unexpected message " + m.Type)
}
