package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// wsFleet holds watches on watchgate's multiplexed WebSocket (GET /v1/ws,
// subprotocol watchgate.v1): perSocket watches a socket, one reading
// goroutine each.
//
// The client is gorilla/websocket, reading each message whole through
// NextReader into a buffer of the socket's (64 KiB of read buffer under
// it, so that a burst of small messages costs one read(2) per buffer),
// then parsing what the benchmark checks: the watch id, the message's
// revision and every event's key and mod_revision. Per message it costs
// about a third of coder/websocket's Reader, whose per-message lock goes
// through a select.
type wsFleet struct {
	fleetBase
	url       string
	perSocket int
	dialer    *websocket.Dialer

	mu      sync.Mutex
	sockets []*wsSocket
	n       int // watches added
	wg      sync.WaitGroup
}

type wsSocket struct {
	f       *wsFleet
	idx     int // reader index
	c       *websocket.Conn
	pending atomic.Int64 // created replies still awaited
	created chan struct{}
	// base is the index of the socket's first watch, whose id is
	// "w<base>"; revs[i] is the last revision watch base+i was sent (nil
	// for a socket made without open, which then does not check ids).
	base int
	revs []int64
}

func newWSFleet(addr string, perSocket int) *wsFleet {
	return &wsFleet{
		url:       "ws://" + addr + "/v1/ws",
		perSocket: perSocket,
		dialer: &websocket.Dialer{
			Subprotocols:     []string{"watchgate.v1"},
			HandshakeTimeout: 30 * time.Second,
			ReadBufferSize:   64 << 10,
			WriteBufferSize:  16 << 10,
		},
	}
}

func (f *wsFleet) readers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sockets)
}

// add opens new sockets for specs, perSocket watches each, several
// sockets at a time.
func (f *wsFleet) add(ctx context.Context, specs []watchSpec) error {
	type chunk struct {
		s     *wsSocket
		base  int
		specs []watchSpec
	}
	var chunks []chunk
	f.mu.Lock()
	for len(specs) > 0 {
		n := min(f.perSocket, len(specs))
		s := &wsSocket{f: f, idx: len(f.sockets), created: make(chan struct{})}
		f.sockets = append(f.sockets, s)
		chunks = append(chunks, chunk{s, f.n, specs[:n]})
		f.n += n
		specs = specs[n:]
	}
	f.mu.Unlock()
	return parallel(ctx, len(chunks), 32, func(ctx context.Context, i int) error {
		return chunks[i].s.open(ctx, chunks[i].base, chunks[i].specs)
	})
}

func (s *wsSocket) open(ctx context.Context, base int, specs []watchSpec) error {
	c, _, err := s.f.dialer.DialContext(ctx, s.f.url, nil)
	if err != nil {
		return fmt.Errorf("websocket dial: %w", err)
	}
	if p := c.Subprotocol(); p != "watchgate.v1" {
		c.Close()
		return fmt.Errorf("websocket dial: subprotocol %q, want watchgate.v1", p)
	}
	s.base = base
	s.revs = make([]int64, len(specs))
	for i, sp := range specs {
		s.revs[i] = sp.rev - 1 // events from sp.rev on (0: the next ones)
	}
	s.f.mu.Lock()
	s.c = c // published to close under mu
	s.f.mu.Unlock()
	s.pending.Store(int64(len(specs)))
	s.f.wg.Add(1)
	go s.read()
	var msg []byte
	for i, sp := range specs {
		msg = append(msg[:0], `{"op":"watch","id":"w`...)
		msg = strconv.AppendInt(msg, int64(base+i), 10)
		msg = append(msg, `","key":`...)
		msg = strconv.AppendQuote(msg, sp.key)
		if sp.prefix {
			msg = append(msg, `,"prefix":true`...)
		}
		if sp.rev > 0 {
			msg = append(msg, `,"rev":`...)
			msg = strconv.AppendInt(msg, sp.rev, 10)
		}
		msg = append(msg, '}')
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			return fmt.Errorf("websocket write: %w", err)
		}
	}
	select {
	case <-s.created:
		return nil
	case <-ctx.Done():
		if err := s.f.err(); err != nil {
			return err
		}
		return fmt.Errorf("waiting for %d created replies: %w", s.pending.Load(), ctx.Err())
	}
}

// read is the socket's reading goroutine.
func (s *wsSocket) read() {
	defer s.f.wg.Done()
	buf := make([]byte, 0, 64<<10)
	for {
		typ, r, err := s.c.NextReader()
		if err != nil {
			s.f.fail(fmt.Errorf("websocket read: %w", err))
			s.c.Close()
			return
		}
		buf, err = readAll(r, buf[:0])
		if err == nil && typ != websocket.TextMessage {
			err = fmt.Errorf("websocket: binary message %.200q", buf)
		}
		if err == nil {
			err = s.handle(buf)
		}
		if err != nil {
			s.f.fail(err)
			s.c.Close()
			return
		}
	}
}

func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

var (
	wsTypePrefix = []byte(`{"type":"`)
	wsIDPrefix   = []byte(`"id":"w`)
	wsRevPrefix  = []byte(`"revision":`)
	keyField     = []byte(`"key":"`)
	modRevField  = []byte(`"mod_revision":`)

	// The server's own layout of an events message and of a put event
	// (ws/message.go, kvjson), parsed in one pass by the fast path.
	wsEventsHead = []byte(`{"type":"events","id":"w`)
	wsEventsRev  = []byte(`","revision":`)
	wsEventsList = []byte(`,"events":[`)
	putHead      = []byte(`{"type":"put","kv":{"key":"`)
	putValue     = []byte(`","value":"`)
	putCreate    = []byte(`","create_revision":`)
	putMod       = []byte(`,"mod_revision":`)
	putVersion   = []byte(`,"version":`)
)

// handle decodes one server message; only what the benchmark needs. An
// events message must name a watch of this socket and carry a revision
// above the last one that watch was sent, and its events' revisions must
// lie in between.
func (s *wsSocket) handle(m []byte) error {
	if w, rev, evs, ok := cutEventsHead(m); ok {
		return s.events(m, w, rev, evs)
	}
	if !bytes.HasPrefix(m, wsTypePrefix) {
		return fmt.Errorf("websocket: unexpected message %.200q", m)
	}
	rest := m[len(wsTypePrefix):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return fmt.Errorf("websocket: unexpected message %.200q", m)
	}
	typ, rest := rest[:end], rest[end:]
	switch string(typ) {
	case "events":
		i := bytes.Index(rest, wsIDPrefix)
		if i < 0 {
			return fmt.Errorf("websocket: events without an id: %.200q", m)
		}
		w, after, ok := parseInt(rest[i+len(wsIDPrefix):])
		if !ok || len(after) == 0 || after[0] != '"' {
			return fmt.Errorf("websocket: events with a bad id: %.200q", m)
		}
		i = bytes.Index(rest, wsRevPrefix)
		if i < 0 {
			return fmt.Errorf("websocket: events without a revision: %.200q", m)
		}
		rev, _, ok := parseInt(rest[i+len(wsRevPrefix):])
		if !ok {
			return fmt.Errorf("websocket: events with a bad revision: %.200q", m)
		}
		i = bytes.Index(rest, []byte(`"events":[`))
		if i < 0 {
			return fmt.Errorf("websocket: events without events: %.200q", m)
		}
		return s.events(m, w, rev, rest[i:])
	case "created":
		if s.pending.Add(-1) == 0 {
			close(s.created)
		}
	case "progress", "pong", "synced", "reset":
	default:
		return fmt.Errorf("websocket: %.300s", m)
	}
	return nil
}

// cutEventsHead parses the head of an events message in the server's own
// layout, {"type":"events","id":"w<w>","revision":<rev>,"events":[, and
// returns the rest. ok is false for any other message or layout.
func cutEventsHead(m []byte) (w, rev int64, rest []byte, ok bool) {
	b, ok := bytes.CutPrefix(m, wsEventsHead)
	if !ok {
		return 0, 0, nil, false
	}
	if w, b, ok = parseInt(b); !ok {
		return 0, 0, nil, false
	}
	if b, ok = bytes.CutPrefix(b, wsEventsRev); !ok {
		return 0, 0, nil, false
	}
	if rev, b, ok = parseInt(b); !ok {
		return 0, 0, nil, false
	}
	if b, ok = bytes.CutPrefix(b, wsEventsList); !ok {
		return 0, 0, nil, false
	}
	return w, rev, b, true
}

// events checks an events message for watch w at revision rev, whose
// events are in b, and emits them.
func (s *wsSocket) events(m []byte, w, rev int64, b []byte) error {
	prev := int64(-1)
	if s.revs != nil {
		k := int(w) - s.base
		if k < 0 || k >= len(s.revs) {
			return fmt.Errorf("websocket: events for w%d, not a watch of this socket: %.200q", w, m)
		}
		if prev = s.revs[k]; rev <= prev {
			return fmt.Errorf("websocket: events for w%d at revision %d after %d: %.200q", w, rev, prev, m)
		}
		s.revs[k] = rev
	}
	return emitEvents(&s.f.fleetBase, s.idx, int(w), prev, rev, b)
}

// emitEvents finds every event's key and mod_revision in b (JSON events
// of the benchmark's own plain keys) and emits them. Each revision must
// be above prev and at most rev, and the message must hold an event. A
// put event in the server's own layout is parsed in one pass; any other
// (a delete, a prev_kv, an escaped value) is searched for its members.
func emitEvents(f *fleetBase, reader, w int, prev, rev int64, b []byte) error {
	n := 0
	fast := true
	for {
		var key []byte
		var r int64
		var ok bool
		if fast {
			if len(b) > 0 && b[0] == ',' {
				b = b[1:]
			}
			var rest []byte
			if key, r, rest, ok = cutPut(b); ok {
				b = rest
			} else {
				fast = false // from here on, search
			}
		}
		if !ok {
			i := bytes.Index(b, keyField)
			if i < 0 {
				break
			}
			b = b[i+len(keyField):]
			j := bytes.IndexByte(b, '"')
			if j < 0 {
				break
			}
			key = b[:j]
			b = b[j:]
			k := bytes.Index(b, modRevField)
			if k < 0 {
				break
			}
			if r, b, ok = parseInt(b[k+len(modRevField):]); !ok {
				return fmt.Errorf("websocket: w%d: bad mod_revision in a message at %d", w, rev)
			}
		}
		if r <= prev || r > rev {
			return fmt.Errorf("websocket: w%d: event at revision %d in a message at %d, after %d", w, r, rev, prev)
		}
		f.emit(reader, w, r, key)
		n++
	}
	if n == 0 {
		return fmt.Errorf("websocket: w%d: events message at %d without events", w, rev)
	}
	return nil
}

// cutPut parses one put event at the start of b in the server's layout,
// {"type":"put","kv":{"key":"<key>","value":"<value>",
// "create_revision":<c>,"mod_revision":<r>,"version":<v>}}, with a key
// and a value without escapes, and returns its key, its mod_revision and
// what follows it.
func cutPut(b []byte) (key []byte, r int64, rest []byte, ok bool) {
	if b, ok = bytes.CutPrefix(b, putHead); !ok {
		return nil, 0, nil, false
	}
	i := bytes.IndexByte(b, '"')
	if i < 0 || bytes.IndexByte(b[:i], '\\') >= 0 {
		return nil, 0, nil, false
	}
	key = b[:i]
	if b, ok = bytes.CutPrefix(b[i:], putValue); !ok {
		return nil, 0, nil, false
	}
	if i = bytes.IndexByte(b, '"'); i < 0 || i > 0 && b[i-1] == '\\' {
		return nil, 0, nil, false
	}
	if b, ok = bytes.CutPrefix(b[i:], putCreate); !ok {
		return nil, 0, nil, false
	}
	if _, b, ok = parseInt(b); !ok {
		return nil, 0, nil, false
	}
	if b, ok = bytes.CutPrefix(b, putMod); !ok {
		return nil, 0, nil, false
	}
	if r, b, ok = parseInt(b); !ok {
		return nil, 0, nil, false
	}
	if b, ok = bytes.CutPrefix(b, putVersion); !ok {
		return nil, 0, nil, false
	}
	if _, b, ok = parseInt(b); !ok || len(b) < 2 || b[0] != '}' || b[1] != '}' {
		return nil, 0, nil, false
	}
	return key, r, b[2:], true
}

func (f *wsFleet) close() {
	f.closing.Store(true)
	f.mu.Lock()
	for _, s := range f.sockets {
		if s.c != nil {
			s.c.Close()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
}
