package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// sseFleet holds watches as Server-Sent Event streams (GET
// /v1/watch/{key}) over cleartext HTTP/2: perConn streams share one
// connection (one http.Transport each), one reading goroutine a stream.
type sseFleet struct {
	fleetBase
	base    string
	perConn int

	mu         sync.Mutex
	transports []*http.Transport
	inConn     int // streams on the last transport
	streams    []*sseStream
	wg         sync.WaitGroup
}

type sseStream struct {
	f    *sseFleet
	idx  int
	body io.ReadCloser
}

func newSSEFleet(addr string, perConn int) *sseFleet {
	return &sseFleet{base: "http://" + addr + "/v1/watch/", perConn: perConn}
}

func newH2CTransport() *http.Transport {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: p, DisableCompression: true}
}

func (f *sseFleet) readers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

// add opens one stream per spec, many at a time, and returns when every
// one has answered its headers (the server sends them once the watch is
// registered).
func (f *sseFleet) add(ctx context.Context, specs []watchSpec) error {
	type open struct {
		s  *sseStream
		tr *http.Transport
		sp watchSpec
	}
	opens := make([]open, len(specs))
	f.mu.Lock()
	for i, sp := range specs {
		if len(f.transports) == 0 || f.inConn >= f.perConn {
			f.transports = append(f.transports, newH2CTransport())
			f.inConn = 0
		}
		f.inConn++
		s := &sseStream{f: f, idx: len(f.streams)}
		f.streams = append(f.streams, s)
		opens[i] = open{s, f.transports[len(f.transports)-1], sp}
	}
	f.mu.Unlock()
	return parallel(ctx, len(opens), 512, func(ctx context.Context, i int) error {
		return opens[i].s.open(ctx, opens[i].tr, opens[i].sp)
	})
}

func (f *sseFleet) watchURL(sp watchSpec) string {
	u := f.base + url.PathEscape(sp.key)
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

func (s *sseStream) open(ctx context.Context, tr *http.Transport, sp watchSpec) error {
	// The stream outlives ctx: it is ended by close.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.f.watchURL(sp), nil)
	if err != nil {
		return err
	}
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		done <- result{resp, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		go func() {
			if r := <-done; r.resp != nil {
				r.resp.Body.Close()
			}
		}()
		return ctx.Err()
	case <-time.After(60 * time.Second):
		return errors.New("sse: no answer to the watch request in 60s")
	}
	if r.err != nil {
		return fmt.Errorf("sse: %w", r.err)
	}
	if r.resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(r.resp.Body, 1024))
		r.resp.Body.Close()
		return fmt.Errorf("sse: GET %s: %s: %s", req.URL, r.resp.Status, b)
	}
	if r.resp.ProtoMajor != 2 {
		r.resp.Body.Close()
		return fmt.Errorf("sse: the stream is %s, want HTTP/2", r.resp.Proto)
	}
	s.f.mu.Lock()
	s.body = r.resp.Body
	closing := s.f.closing.Load()
	s.f.wg.Add(1)
	s.f.mu.Unlock()
	if closing {
		s.body.Close()
	}
	go s.read()
	return nil
}

var (
	sseID    = []byte("id: ")
	sseEvent = []byte("event: ")
	sseData  = []byte("data: ")
)

// read is the stream's goroutine: it parses the event stream and emits
// each put and delete.
func (s *sseStream) read() {
	defer s.f.wg.Done()
	br := bufio.NewReaderSize(s.body, 2048)
	var (
		long   []byte // a line longer than the buffer
		rev    int64
		isKV   bool
		key    = make([]byte, 0, 64)
		hasKey bool
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			s.f.fail(fmt.Errorf("sse stream %d ended: %w", s.idx, err))
			return
		}
		line = bytes.TrimSuffix(line, []byte{'\n'})
		switch {
		case len(line) == 0:
			if isKV && hasKey {
				s.f.emit(s.idx, s.idx, rev, key)
			}
			isKV, hasKey = false, false
		case bytes.HasPrefix(line, sseID):
			rev, _, _ = parseInt(line[len(sseID):])
		case bytes.HasPrefix(line, sseEvent):
			switch ev := string(line[len(sseEvent):]); ev {
			case "put", "delete":
				isKV = true
			case "progress":
			default:
				s.f.fail(fmt.Errorf("sse stream %d: event %q", s.idx, ev))
			}
		case bytes.HasPrefix(line, sseData):
			if i := bytes.Index(line, keyField); i >= 0 {
				k := line[i+len(keyField):]
				if j := bytes.IndexByte(k, '"'); j >= 0 {
					key = append(key[:0], k[:j]...)
					hasKey = true
				}
			}
		}
	}
}

func (f *sseFleet) close() {
	f.closing.Store(true)
	f.mu.Lock()
	for _, s := range f.streams {
		if s.body != nil {
			s.body.Close()
		}
	}
	f.mu.Unlock()
	f.wg.Wait()
	for _, tr := range f.transports {
		tr.CloseIdleConnections()
	}
}
