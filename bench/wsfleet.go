package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsFleet holds watches on watchgate's multiplexed WebSocket (GET /v1/ws,
// subprotocol watchgate.v1): perSocket watches a socket, one reading
// goroutine each.
type wsFleet struct {
	fleetBase
	url       string
	perSocket int
	client    *http.Client

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
}

func newWSFleet(addr string, perSocket int) *wsFleet {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return &wsFleet{
		url:       "ws://" + addr + "/v1/ws",
		perSocket: perSocket,
		client:    &http.Client{Transport: &http.Transport{Protocols: p, MaxIdleConnsPerHost: 1024}},
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
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	c, _, err := websocket.Dial(dctx, s.f.url, &websocket.DialOptions{
		Subprotocols: []string{"watchgate.v1"},
		HTTPClient:   s.f.client,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("websocket dial: %w", err)
	}
	c.SetReadLimit(-1)
	s.c = c
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
		if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
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
	ctx := context.Background()
	for {
		_, r, err := s.c.Reader(ctx)
		if err != nil {
			s.f.fail(fmt.Errorf("websocket read: %w", err))
			return
		}
		buf, err = readAll(r, buf[:0])
		if err != nil {
			s.f.fail(fmt.Errorf("websocket read: %w", err))
			return
		}
		if err := s.handle(buf); err != nil {
			s.f.fail(err)
			s.c.CloseNow()
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
	keyField     = []byte(`"key":"`)
	modRevField  = []byte(`"mod_revision":`)
)

// handle decodes one server message; only what the benchmark needs.
func (s *wsSocket) handle(m []byte) error {
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
		if !ok {
			return fmt.Errorf("websocket: events with a bad id: %.200q", m)
		}
		emitEvents(&s.f.fleetBase, s.idx, int(w), after)
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

// emitEvents finds every event's key and mod_revision in b (JSON events
// of the benchmark's own plain keys) and emits them.
func emitEvents(f *fleetBase, reader, w int, b []byte) {
	for {
		i := bytes.Index(b, keyField)
		if i < 0 {
			return
		}
		b = b[i+len(keyField):]
		j := bytes.IndexByte(b, '"')
		if j < 0 {
			return
		}
		key := b[:j]
		b = b[j:]
		k := bytes.Index(b, modRevField)
		if k < 0 {
			return
		}
		rev, after, _ := parseInt(b[k+len(modRevField):])
		b = after
		f.emit(reader, w, rev, key)
	}
}

func (f *wsFleet) close() {
	f.closing.Store(true)
	f.mu.Lock()
	for _, s := range f.sockets {
		if s.c != nil {
			s.c.CloseNow()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.client.CloseIdleConnections()
}
