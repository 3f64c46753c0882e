package reliability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// Each resumed stream must be answered 200 and get the rest; under
	// load the server may cut a resumed stream too (a write that does not
	// complete within the write timeout), and then the client resumes
	// again from what it saw, as any client does.
	const maxResumes = 5
	wsSegs := []streamSegment{{items: wsItems}}
	for resumes := 0; last < final; resumes++ {
		if resumes == maxResumes {
			t.Fatalf("resumed WebSocket: still at revision %d of %d after %d resumes", last, final, resumes)
		}
		resume := last + 1
		c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/v1/ws", &websocket.DialOptions{Subprotocols: []string{ws.Subprotocol}})
		if err != nil {
			if resp != nil {
				t.Fatalf("resuming the WebSocket: status %d: %v", resp.StatusCode, err)
			}
			t.Fatal(err)
		}
		c.SetReadLimit(64 << 20)
		msg := fmt.Sprintf(`{"op":"watch","id":"w","key":"big/","prefix":true,"rev":%d}`, resume)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		seg := streamSegment{rev: resume}
		for last < final {
			m, err := readWS(ctx, c)
			if err != nil {
				t.Logf("resumed WebSocket ended at revision %d of %d: %v; resuming again", last, final, err)
				break
			}
			it, err := wsItem(m)
			if err != nil {
				t.Fatal(err)
			}
			seg.items = append(seg.items, it)
			if m.Type == ws.TypeEvents {
				last = m.Revision
			}
		}
		c.CloseNow()
		wsSegs = append(wsSegs, seg)
	}
	t.Logf("WebSocket: %d events before the cut, the rest after %d resumes from %d", first, len(wsSegs)-1, wsSegs[1].rev)

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
	sseSegs := []streamSegment{{items: sseItems}}
	firstID := lastID
	for got, resumes := firstSSE, 0; got < stallValues; resumes++ {
		if resumes == maxResumes {
			t.Fatalf("resumed SSE stream: %d events of %d after %d resumes", got, stallValues, resumes)
		}
		sreq2, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/watch/big/?prefix=true&progress=0", nil)
		sreq2.Header.Set("Last-Event-ID", lastID)
		resp2, err := client.Do(sreq2)
		if err != nil {
			t.Fatal(err)
		}
		if resp2.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp2.Body)
			resp2.Body.Close()
			t.Fatalf("resumed SSE stream (Last-Event-ID %s) answered %d: %s", lastID, resp2.StatusCode, b)
		}
		rev, sub, _ := parseID(lastID)
		seg := streamSegment{rev: rev, sub: sub}
		p2 := sseclient.NewParser(resp2.Body)
		for got < stallValues {
			ev, err := p2.Next()
			if err != nil {
				t.Logf("resumed SSE stream ended after %d events of %d: %v; resuming again", got, stallValues, err)
				break
			}
			e, err := decodeSSEEvent(ev)
			if err != nil {
				t.Fatal(err)
			}
			seg.items = append(seg.items, watchtest.Item{Kind: watchtest.Events, Events: []watchtest.Event{e}})
			got++
			lastID = ev.ID
		}
		resp2.Body.Close()
		sseSegs = append(sseSegs, seg)
	}
	t.Logf("SSE: %d events before the cut, the rest after %d resumes from %s", firstSSE, len(sseSegs)-1, firstID)
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
	check := func(name string, segs []streamSegment) {
		c := watchtest.NewChecker(h, req)
		for i, seg := range segs {
			if i > 0 {
				if err := c.Resume(seg.rev, seg.sub); err != nil {
					t.Fatalf("%s, resume %d: %v", name, i, err)
				}
			}
			for _, it := range seg.items {
				if err := c.Add(it); err != nil {
					t.Fatalf("%s, connection %d: %v", name, i+1, err)
				}
			}
		}
		if err := c.Complete(final); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	check("WebSocket", wsSegs)
	check("SSE", sseSegs)
}

// streamSegment is what one connection of a watch received, and where it
// resumed (rev, sub; zero for the first).
type streamSegment struct {
	rev   int64
	sub   int32
	items []watchtest.Item
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
