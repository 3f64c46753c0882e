package reliability

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/ws"
)

// wsWatch is one watch on a socket, followed across reconnects and
// compactions.
type wsWatch struct {
	log   *watchLog
	gen   int
	start int64 // the generation's first revision (0: from now)
	// lastRev is the last revision the watch is known complete up to
	// (hasPos): it resumes at lastRev+1.
	lastRev int64
	hasPos  bool
	conns   int // connections of this generation
	// per connection
	created  bool
	inSnap   bool
	snapMark int
	// reread: the watch ended with compacted and must re-read.
	reread bool

	pos atomic.Int64 // lastRev, for the drain
}

func (w *wsWatch) id() string { return fmt.Sprintf("%s.g%d", w.log.Name, w.gen) }

// wsSocket is one WebSocket (watchgate.v1) carrying several watches; it
// reconnects after every disconnect and resumes each watch with rev = its
// last revision + 1.
type wsSocket struct {
	name    string
	client  *http.Client
	base    func() string // http://host:port
	rest    *restClient
	rnd     *rand.Rand
	watches []*wsWatch
	byID    map[string]*wsWatch

	cut   chan struct{}
	pause chan time.Duration
	away  chan time.Duration

	mu   sync.Mutex // guards conn
	conn *websocket.Conn

	connects atomic.Int64
}

func newWSSocket(name string, client *http.Client, base func() string, rest *restClient, seed uint64, logs []*watchLog, starts []int64) *wsSocket {
	s := &wsSocket{name: name, client: client, base: base, rest: rest, rnd: rand.New(rand.NewPCG(seed, 11)),
		byID: map[string]*wsWatch{},
		cut:  make(chan struct{}, 1), pause: make(chan time.Duration, 1), away: make(chan time.Duration, 1)}
	for i, l := range logs {
		w := &wsWatch{log: l, start: starts[i]}
		if w.start > 0 {
			w.lastRev, w.hasPos = w.start-1, true
			w.pos.Store(w.lastRev)
		}
		l.newGeneration(w.start, 0, nil)
		s.watches = append(s.watches, w)
		s.byID[w.id()] = w
	}
	return s
}

// watchMessage is the watch op for w from its resume point.
func watchMessage(w *wsWatch) []byte {
	s := w.log.Spec
	m := map[string]any{"op": "watch", "id": w.id()}
	jsonKey(m, "key", s.Key)
	switch {
	case s.Prefix:
		m["prefix"] = true
	case s.End != "":
		jsonKey(m, "range_end", s.End)
	}
	if w.hasPos {
		m["rev"] = w.lastRev + 1
	}
	if s.PrevKV {
		m["prev_kv"] = true
	}
	switch {
	case s.NoPut:
		m["events"] = []string{"delete"}
	case s.NoDelete:
		m["events"] = []string{"put"}
	}
	if s.Snapshot {
		m["snapshot"] = true
	}
	b, _ := json.Marshal(m)
	return b
}

func jsonKey(m map[string]any, name, s string) {
	if utf8.ValidString(s) {
		m[name] = s
	} else {
		m[name+"_b64"] = base64.StdEncoding.EncodeToString([]byte(s))
	}
}

// requestProgress asks the server for a progress message, if connected.
func (s *wsSocket) requestProgress(ctx context.Context) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c != nil {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		c.Write(wctx, websocket.MessageText, []byte(`{"op":"progress"}`))
		cancel()
	}
}

func (s *wsSocket) run(ctx context.Context) {
	for ctx.Err() == nil {
		select {
		case d := <-s.away:
			for _, w := range s.watches {
				w.log.stall()
			}
			sleepCtx(ctx, d)
		default:
		}
		s.connect(ctx)
		sleepCtx(ctx, time.Duration(s.rnd.IntN(30))*time.Millisecond)
	}
}

// startAgain re-reads a compacted watch's range and starts its next
// generation from the read's revision + 1.
func (s *wsSocket) startAgain(ctx context.Context, w *wsWatch) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rev, kvs, err := readSpec(rctx, s.rest, w.log.Spec)
	if err != nil {
		return err
	}
	delete(s.byID, w.id())
	w.gen++
	// The new watch starts after the read: that is its resume point.
	w.start, w.hasPos, w.lastRev, w.conns, w.reread = rev+1, true, rev, 0, false
	w.created, w.inSnap = false, false
	w.pos.Store(rev)
	s.byID[w.id()] = w
	w.log.newGeneration(w.start, rev, kvs)
	return nil
}

// send writes a watch op for w, declaring the resume to its log.
func (s *wsSocket) send(ctx context.Context, c *websocket.Conn, w *wsWatch) error {
	w.conns++
	if w.conns > 1 {
		switch {
		case w.hasPos:
			w.log.add(logEntry{Kind: entryResume, Rev: w.lastRev + 1, Conn: w.conns})
		default:
			w.log.add(logEntry{Kind: entryRestart, Conn: w.conns})
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.Write(wctx, websocket.MessageText, watchMessage(w))
}

// connect serves one connection.
func (s *wsSocket) connect(ctx context.Context) {
	for _, w := range s.watches {
		if w.reread {
			if err := s.startAgain(ctx, w); err != nil {
				return
			}
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dctx, dcancel := context.WithTimeout(cctx, 5*time.Second)
	c, resp, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(s.base(), "http")+"/v1/ws",
		&websocket.DialOptions{HTTPClient: s.client, Subprotocols: []string{ws.Subprotocol}})
	dcancel()
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusSwitchingProtocols {
			for _, w := range s.watches {
				w.log.breach("handshake answered %d", resp.StatusCode)
			}
		}
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(64 << 20)
	if c.Subprotocol() != ws.Subprotocol {
		s.watches[0].log.breach("subprotocol %q", c.Subprotocol())
		return
	}
	s.connects.Add(1)
	s.mu.Lock()
	s.conn = c
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
		for _, w := range s.watches {
			if w.inSnap {
				w.log.dropFrom(w.snapMark)
			}
			w.created, w.inSnap = false, false
		}
	}()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-s.cut:
			c.CloseNow()
		case <-done:
		}
	}()

	for _, w := range s.watches {
		if err := s.send(cctx, c, w); err != nil {
			return
		}
	}
	for {
		select {
		case d := <-s.pause:
			for _, w := range s.watches {
				w.log.stall()
			}
			sleepCtx(cctx, d)
		default:
		}
		typ, data, err := c.Read(cctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			s.watches[0].log.breach("binary message")
			return
		}
		if !s.handle(cctx, c, data) {
			return
		}
	}
}

// handle dispatches one server message; false ends the connection.
func (s *wsSocket) handle(ctx context.Context, c *websocket.Conn, data []byte) bool {
	var m ws.Message
	if err := json.Unmarshal(data, &m); err != nil {
		s.watches[0].log.breach("message is not JSON: %q", data)
		return false
	}
	switch m.Type {
	case ws.TypePong:
		return true
	case ws.TypeProgress:
		for _, w := range s.watches {
			if !w.created || w.reread {
				continue
			}
			w.log.item(w.conns, watchtest.Item{Kind: watchtest.Progress, Revision: m.Revision})
			if w.hasPos && !w.inSnap {
				w.lastRev = max(w.lastRev, m.Revision)
				w.pos.Store(w.lastRev)
			}
		}
		return true
	}
	w, ok := s.byID[m.ID]
	if !ok {
		s.watches[0].log.breach("%s message for unknown watch %q: %q", m.Type, m.ID, data)
		return false
	}
	conn := w.conns
	switch m.Type {
	case ws.TypeCreated:
		w.created = true
		w.log.item(conn, watchtest.Item{Kind: watchtest.Created, Revision: m.Revision})
		if !w.hasPos && w.start == 0 && !w.log.Spec.Snapshot {
			w.lastRev, w.hasPos = m.Revision, true
			w.pos.Store(w.lastRev)
		}
	case ws.TypeEvents:
		evs := make([]watchtest.Event, 0, len(m.Events))
		for _, e := range m.Events {
			ev, err := decodeWSEvent(e)
			if err != nil {
				w.log.breach("event: %v: %q", err, data)
				return false
			}
			evs = append(evs, ev)
		}
		if w.inSnap {
			w.log.item(conn, watchtest.Item{Kind: watchtest.Snapshot, Revision: m.Revision, Events: evs})
			return true
		}
		w.log.item(conn, watchtest.Item{Kind: watchtest.Events, Revision: m.Revision, Events: evs})
		w.lastRev, w.hasPos = max(w.lastRev, m.Revision), true
		w.pos.Store(w.lastRev)
	case ws.TypeReset:
		w.snapMark, w.inSnap = w.log.mark(), true
		w.log.item(conn, watchtest.Item{Kind: watchtest.Reset, Revision: m.Revision})
	case ws.TypeSynced:
		w.log.item(conn, watchtest.Item{Kind: watchtest.Synced, Revision: m.Revision})
		w.inSnap = false
		w.lastRev, w.hasPos = m.Revision, true
		w.pos.Store(w.lastRev)
	case ws.TypeCompacted:
		w.log.item(conn, watchtest.Item{Kind: watchtest.Compacted, CompactRevision: m.CompactRevision, Revision: m.Revision})
		w.reread = true
		if err := s.startAgain(ctx, w); err != nil {
			return false
		}
		return s.send(ctx, c, w) == nil
	case ws.TypeCanceled, ws.TypeError:
		w.log.breach("%s: %q", m.Type, data)
		kind := watchtest.Canceled
		if m.Type == ws.TypeError {
			kind = watchtest.Error
		}
		w.log.item(conn, watchtest.Item{Kind: kind})
		return false
	default:
		w.log.breach("unknown message type %q", m.Type)
		return false
	}
	return true
}

func decodeWSEvent(e ws.Event) (watchtest.Event, error) {
	ev := watchtest.Event{Type: kv.EventPut}
	switch e.Type {
	case "put":
	case "delete":
		ev.Type = kv.EventDelete
	default:
		return ev, fmt.Errorf("event type %q", e.Type)
	}
	var err error
	if ev.KV, err = toKV(&e.KV); err != nil {
		return ev, err
	}
	if e.PrevKV != nil {
		p, err := toKV(e.PrevKV)
		if err != nil {
			return ev, err
		}
		ev.PrevKV = &p
	}
	return ev, nil
}
