package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// sseFleet holds watches as Server-Sent Event streams (GET
// /v1/watch/{key}) over cleartext HTTP/2 (prior knowledge): perConn
// streams share one connection, whose one goroutine reads every frame and
// parses each stream's events, as a browser's network process would.
//
// It speaks HTTP/2 on x/net's framer rather than through net/http's
// transport, whose goroutine a stream and WINDOW_UPDATE every 4 KB read a
// stream (and a connection) would make the benchmark measure its own
// client and flow-control chatter more than the server's fan-out. Its
// windows are a browser's (Chromium: 6 MiB a stream, 15 MiB the
// connection), given back when half has been read.
type sseFleet struct {
	fleetBase
	addr    string
	perConn int

	mu      sync.Mutex
	conns   []*sseConn
	streams int // streams opened so far
	wg      sync.WaitGroup
}

// Flow-control windows the fleet's connections advertise.
const (
	sseStreamWindow = 6 << 20
	sseConnWindow   = 15 << 20
)

func newSSEFleet(addr string, perConn int) *sseFleet {
	return &sseFleet{addr: addr, perConn: perConn}
}

// readers is the number of connections: each has one reading goroutine.
func (f *sseFleet) readers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.conns)
}

// add opens one stream per spec and returns when every one has answered
// its headers (the server sends them once the watch is registered).
func (f *sseFleet) add(ctx context.Context, specs []watchSpec) error {
	type open struct {
		c *sseConn
		s *sseStream
	}
	opens := make([]open, 0, len(specs))
	f.mu.Lock()
	for _, sp := range specs {
		if len(f.conns) == 0 || f.conns[len(f.conns)-1].assigned >= f.perConn {
			c, err := dialSSEConn(ctx, f, len(f.conns))
			if err != nil {
				f.mu.Unlock()
				return err
			}
			f.conns = append(f.conns, c)
		}
		c := f.conns[len(f.conns)-1]
		c.assigned++
		s := &sseStream{f: f, idx: f.streams, path: f.watchPath(sp), ready: make(chan error, 1)}
		f.streams++
		opens = append(opens, open{c, s})
	}
	f.mu.Unlock()
	// At most sseOpening requests are waiting for their answer at a
	// time, as a browser's pages would open them, not all at once.
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	for len(opens) > 0 {
		batch := opens[:min(len(opens), sseOpening)]
		opens = opens[len(batch):]
		byConn := map[*sseConn][]*sseStream{}
		for _, o := range batch {
			byConn[o.c] = append(byConn[o.c], o.s)
		}
		for c, ss := range byConn {
			if err := c.open(ss); err != nil {
				return err
			}
		}
		for _, o := range batch {
			select {
			case err := <-o.s.ready:
				if err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			case <-timeout.C:
				return errors.New("sse: no answer to the watch requests in 60s")
			}
		}
		timeout.Reset(60 * time.Second)
	}
	return nil
}

// sseOpening bounds the requests waiting for their answer.
const sseOpening = 512

func (f *sseFleet) watchPath(sp watchSpec) string {
	u := "/v1/watch/" + url.PathEscape(sp.key)
	q := url.Values{}
	if sp.prefix {
		q.Set("prefix", "true")
	}
	if sp.rev > 0 {
		q.Set("rev", strconv.FormatInt(sp.rev, 10))
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func (f *sseFleet) close() {
	f.closing.Store(true)
	f.mu.Lock()
	conns := f.conns
	f.mu.Unlock()
	for _, c := range conns {
		c.nc.Close()
	}
	f.wg.Wait()
}

// sseConn is one HTTP/2 connection of the fleet.
type sseConn struct {
	f        *sseFleet
	idx      int // the reader index of its events
	nc       net.Conn
	assigned int // streams given to it, guarded by f.mu

	wmu    sync.Mutex // guards the writing side
	bw     *bufio.Writer
	fw     *http2.Framer
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32

	smu     sync.Mutex // guards streams
	streams map[uint32]*sseStream

	// connUnread is what was received and not yet given back to the
	// connection's window (the reading goroutine's).
	connUnread int
}

func dialSSEConn(ctx context.Context, f *sseFleet, idx int) (*sseConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", f.addr)
	if err != nil {
		return nil, fmt.Errorf("sse: %w", err)
	}
	c := &sseConn{f: f, idx: idx, nc: nc, nextID: 1, streams: map[uint32]*sseStream{}}
	c.bw = bufio.NewWriterSize(nc, 32<<10)
	c.fw = http2.NewFramer(c.bw, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.wmu.Lock()
	_, err = c.bw.WriteString(http2.ClientPreface)
	if err == nil {
		err = c.fw.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: sseStreamWindow})
	}
	if err == nil {
		err = c.fw.WriteWindowUpdate(0, sseConnWindow-65535)
	}
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("sse: %w", err)
	}
	f.wg.Add(1)
	go c.read()
	return c, nil
}

// open sends the requests of ss, a batch at a time: the reading
// goroutine may need the writing side in between (acknowledgements).
func (c *sseConn) open(ss []*sseStream) error {
	for len(ss) > 0 {
		n := min(len(ss), 256)
		if err := c.openBatch(ss[:n]); err != nil {
			return err
		}
		ss = ss[n:]
	}
	return nil
}

func (c *sseConn) openBatch(ss []*sseStream) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for _, s := range ss {
		c.hbuf.Reset()
		for _, hf := range [...]hpack.HeaderField{
			{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
			{Name: ":authority", Value: c.f.addr}, {Name: ":path", Value: s.path},
			{Name: "accept", Value: "text/event-stream"},
		} {
			_ = c.henc.WriteField(hf)
		}
		id := c.nextID
		c.nextID += 2
		c.smu.Lock()
		c.streams[id] = s
		c.smu.Unlock()
		if err := c.fw.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(),
			EndStream: true, EndHeaders: true}); err != nil {
			return fmt.Errorf("sse: %w", err)
		}
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("sse: %w", err)
	}
	return nil
}

// write sends a frame written by fn at once.
func (c *sseConn) write(fn func(fw *http2.Framer) error) {
	c.wmu.Lock()
	err := fn(c.fw)
	if err == nil {
		err = c.bw.Flush()
	}
	c.wmu.Unlock()
	if err != nil {
		c.f.fail(fmt.Errorf("sse connection %d: %w", c.idx, err))
	}
}

func (c *sseConn) stream(id uint32) *sseStream {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.streams[id]
}

// read is the connection's goroutine: it reads every frame, answers
// settings and pings, gives the windows back and parses each stream's
// events.
func (c *sseConn) read() {
	defer c.f.wg.Done()
	fr := http2.NewFramer(nil, bufio.NewReaderSize(c.nc, 64<<10))
	// Each frame is used before the next is read (its payload is the
	// Framer's buffer anyway): no frame struct allocated a DATA frame.
	fr.SetReuseFrames()
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			c.f.fail(fmt.Errorf("sse connection %d: %w", c.idx, err))
			c.failStreams(err)
			return
		}
		switch fm := frame.(type) {
		case *http2.DataFrame:
			// Flow control counts the whole payload, padding included.
			n := int(fm.Header().Length)
			c.connUnread += n
			if c.connUnread >= sseConnWindow/2 {
				inc := uint32(c.connUnread)
				c.connUnread = 0
				c.write(func(fw *http2.Framer) error { return fw.WriteWindowUpdate(0, inc) })
			}
			s := c.stream(fm.StreamID)
			if s == nil {
				continue
			}
			s.feed(c.idx, fm.Data())
			if fm.StreamEnded() {
				s.fail(c.idx, io.EOF)
			}
			s.unread += n
			if s.unread >= sseStreamWindow/2 {
				inc := uint32(s.unread)
				s.unread = 0
				c.write(func(fw *http2.Framer) error { return fw.WriteWindowUpdate(fm.StreamID, inc) })
			}
		case *http2.MetaHeadersFrame:
			s := c.stream(fm.StreamID)
			if s == nil {
				continue
			}
			status, ctype := fm.PseudoValue("status"), ""
			for _, hf := range fm.RegularFields() {
				if hf.Name == "content-type" {
					ctype = hf.Value
				}
			}
			var err error
			switch {
			case status != "200":
				err = fmt.Errorf("sse: GET %s: status %s", s.path, status)
			case ctype != "text/event-stream":
				err = fmt.Errorf("sse: GET %s: content type %q", s.path, ctype)
			case fm.StreamEnded():
				err = fmt.Errorf("sse: GET %s: empty stream", s.path)
			}
			s.answer(err)
		case *http2.RSTStreamFrame:
			if s := c.stream(fm.StreamID); s != nil {
				err := fmt.Errorf("reset by the server (%v)", fm.ErrCode)
				s.answer(fmt.Errorf("sse: GET %s: %w", s.path, err))
				s.fail(c.idx, err)
			}
		case *http2.GoAwayFrame:
			err := fmt.Errorf("sse connection %d: GOAWAY (%v)", c.idx, fm.ErrCode)
			c.f.fail(err)
			c.failStreams(err)
			return
		case *http2.SettingsFrame:
			if !fm.IsAck() {
				c.write(func(fw *http2.Framer) error { return fw.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !fm.IsAck() {
				data := fm.Data
				c.write(func(fw *http2.Framer) error { return fw.WritePing(true, data) })
			}
		}
	}
}

// failStreams answers the streams still waiting for their headers.
func (c *sseConn) failStreams(err error) {
	c.smu.Lock()
	defer c.smu.Unlock()
	for _, s := range c.streams {
		s.answer(fmt.Errorf("sse: GET %s: %w", s.path, err))
	}
}

// sseStream is one watch stream and its event parser.
type sseStream struct {
	f    *sseFleet
	idx  int       // the watch's index
	body io.Reader // read by read, when the stream is parsed from a body
	path string

	ready    chan error // the answer to the request: nil for 200
	answered bool       // (the connection's goroutine's)
	unread   int        // received, not given back to the stream's window

	// The parser's state.
	partial      []byte // a line not complete yet
	failed       bool
	hasID        bool
	id           []byte
	rev          int64
	sub          int64 // math.MaxInt64 for "R": the last event of R
	lastRev      int64 // the position of the last event emitted
	lastSub      int64
	isKV, hasKey bool
	key          []byte
	dataRev      int64 // mod_revision in the data, -1 when none
}

func (s *sseStream) answer(err error) {
	if !s.answered {
		s.answered = true
		s.ready <- err
	}
}

var (
	sseID    = []byte("id: ")
	sseEvent = []byte("event: ")
	sseData  = []byte("data: ")
)

// read parses the stream from its body until the body ends: the events
// go to the handler with the stream's index as the reader's.
func (s *sseStream) read() {
	defer s.f.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := s.body.Read(buf)
		s.feed(s.idx, buf[:n])
		if err != nil {
			s.fail(s.idx, err)
			return
		}
	}
}

// fail ends the stream with err (io.EOF: the server ended it).
func (s *sseStream) fail(reader int, err error) {
	if !s.failed {
		s.failed = true
		s.f.fail(fmt.Errorf("sse stream %d (reader %d) ended: %w", s.idx, reader, err))
	}
}

// feed parses the next bytes of the stream.
func (s *sseStream) feed(reader int, b []byte) {
	for len(b) > 0 && !s.failed {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.partial = append(s.partial, b...)
			return
		}
		line := b[:i]
		if len(s.partial) > 0 {
			s.partial = append(s.partial, line...)
			line = s.partial
		}
		b = b[i+1:]
		s.line(reader, bytes.TrimSuffix(line, []byte{'\r'}))
		s.partial = s.partial[:0]
	}
}

// line handles one line: a field, or the end of an event, which is
// checked and emitted when it is a put or a delete. A change's id must
// be its revision (R, or R.S inside a revision, S its sub-revision), the
// revision in its data, and after the last change's: an event lost,
// repeated or out of order fails the fleet.
func (s *sseStream) line(reader int, line []byte) {
	switch {
	case len(line) == 0:
		if s.isKV {
			ok := s.hasID && s.parseID()
			switch {
			case !ok:
				s.fail(reader, fmt.Errorf("a change with id %q", s.id))
			case !s.hasKey || s.dataRev != s.rev:
				s.fail(reader, fmt.Errorf("id %d for data of revision %d (key found: %v)", s.rev, s.dataRev, s.hasKey))
			case s.rev < s.lastRev || (s.rev == s.lastRev && s.sub <= s.lastSub):
				s.fail(reader, fmt.Errorf("id %d.%d after %d.%d", s.rev, s.sub, s.lastRev, s.lastSub))
			default:
				s.lastRev, s.lastSub = s.rev, s.sub
				s.f.emit(reader, s.idx, s.rev, s.key)
			}
		}
		s.isKV, s.hasKey, s.hasID, s.dataRev = false, false, false, -1
	case bytes.HasPrefix(line, sseID):
		s.id = append(s.id[:0], line[len(sseID):]...)
		s.hasID = true
	case bytes.HasPrefix(line, sseEvent):
		switch ev := string(line[len(sseEvent):]); ev {
		case "put", "delete":
			s.isKV = true
		case "progress":
		default:
			s.fail(reader, fmt.Errorf("event %q", ev))
		}
	case bytes.HasPrefix(line, sseData):
		data := line[len(sseData):]
		if i := bytes.Index(data, keyField); i >= 0 {
			k := data[i+len(keyField):]
			if j := bytes.IndexByte(k, '"'); j >= 0 {
				s.key = append(s.key[:0], k[:j]...)
				s.hasKey = true
			}
		}
		s.dataRev = -1
		if i := bytes.Index(data, modRevField); i >= 0 {
			if r, _, ok := parseInt(data[i+len(modRevField):]); ok {
				s.dataRev = r
			}
		}
	}
}

// parseID parses the id of a change: R, or R.S.
func (s *sseStream) parseID() bool {
	rev, rest, ok := parseInt(s.id)
	sub := int64(math.MaxInt64)
	if ok && len(rest) > 0 {
		if rest[0] != '.' {
			return false
		}
		sub, rest, ok = parseInt(rest[1:])
		ok = ok && len(rest) == 0
	}
	s.rev, s.sub = rev, sub
	return ok
}
