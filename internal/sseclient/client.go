package sseclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRetry is the reconnection time before the stream sets one, as in
// Chromium.
const DefaultRetry = 3 * time.Second

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("sseclient: stream closed")

// StatusError is a response that ends a Stream for good, as it makes an
// EventSource fail: a status other than 200 (a 204 is how a server tells a
// client to stop), or a 200 that is not text/event-stream.
type StatusError struct {
	StatusCode  int
	ContentType string
	// Body is the start of the response body (a problem+json, say).
	Body []byte
}

func (e *StatusError) Error() string {
	if e.StatusCode == http.StatusOK {
		return fmt.Sprintf("sseclient: response is %q, not text/event-stream", e.ContentType)
	}
	return fmt.Sprintf("sseclient: status %d: %s", e.StatusCode, e.Body)
}

// Options configures a Stream. The zero value connects once with
// http.DefaultClient.
type Options struct {
	// Client makes the requests; nil means http.DefaultClient. Set its
	// Transport's Protocols to speak HTTP/2, cleartext included.
	Client *http.Client
	// Header is added to every request (Accept, Cache-Control and
	// Last-Event-ID are set by the Stream).
	Header http.Header
	// LastEventID is sent as Last-Event-ID on the first request.
	LastEventID string
	// Reconnect makes the Stream reconnect as an EventSource does when a
	// connection ends or fails (not on a StatusError), after the
	// reconnection time, sending the last event id it saw.
	Reconnect bool
	// ReconnectDelay, when positive, replaces the reconnection time the
	// stream sets with retry: (tests that cut a stream many times).
	ReconnectDelay time.Duration
}

// Stream is one event stream, followed over as many connections as it
// takes. Next must be called from one goroutine; Cut and Close may be
// called from any.
type Stream struct {
	url    string
	opts   Options
	ctx    context.Context
	cancel context.CancelCauseFunc

	parser *Parser // nil between connections
	lastID string
	retry  time.Duration

	// cut asks Next to drop the connection and what it has buffered.
	cut atomic.Bool

	mu         sync.Mutex // guards the fields below
	resp       *http.Response
	reconnects int
	connects   int
}

// Connect opens a stream of url and waits for its response: an error is
// returned when the first connection fails or is answered with anything
// but a 200 text/event-stream (a *StatusError). The stream lives until
// Close or until ctx is done.
func Connect(ctx context.Context, url string, opts Options) (*Stream, error) {
	if opts.Client == nil {
		opts.Client = http.DefaultClient
	}
	ctx, cancel := context.WithCancelCause(ctx)
	s := &Stream{url: url, opts: opts, ctx: ctx, cancel: cancel, lastID: opts.LastEventID, retry: DefaultRetry}
	if err := s.connect(); err != nil {
		cancel(nil)
		return nil, err
	}
	return s, nil
}

// connect makes one request and installs the parser of its body.
func (s *Stream) connect() error {
	req, err := http.NewRequestWithContext(s.ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return err
	}
	for k, v := range s.opts.Header {
		req.Header[k] = append([]string(nil), v...)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if s.lastID != "" {
		req.Header.Set("Last-Event-ID", s.lastID)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return err
	}
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	if resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return &StatusError{StatusCode: resp.StatusCode, ContentType: ct, Body: body}
	}
	s.mu.Lock()
	s.resp = resp
	s.connects++
	s.mu.Unlock()
	s.parser = NewParser(resp.Body)
	s.parser.SetLastEventID(s.lastID)
	return nil
}

// Next returns the next event. Without Reconnect it returns io.EOF when
// the stream ends and the read error when it breaks. With Reconnect it
// reconnects until an event arrives, a reconnection is refused
// (*StatusError) or the stream is closed (ErrClosed, or ctx's error).
func (s *Stream) Next() (Event, error) {
	for {
		if s.cut.Swap(false) && s.parser != nil {
			// What the parser holds beyond the last returned event is lost,
			// as after a network failure at this point.
			s.closeBody()
			s.parser = nil
			if !s.opts.Reconnect {
				return Event{}, errCut
			}
		}
		if s.parser == nil {
			if err := s.wait(); err != nil {
				return Event{}, err
			}
			if err := s.connect(); err != nil {
				var se *StatusError
				if errors.As(err, &se) || s.ctx.Err() != nil {
					return Event{}, s.closedErr(err)
				}
				continue // a network error: try again after the delay
			}
			s.mu.Lock()
			s.reconnects++
			s.mu.Unlock()
		}
		ev, err := s.parser.Next()
		if err == nil {
			s.lastID = ev.ID
			if ev.Retry > 0 {
				s.retry = ev.Retry
			}
			return ev, nil
		}
		// The connection ended or broke. The id and retry a stream set
		// without dispatching an event count too.
		s.lastID = s.parser.LastEventID()
		if r := s.parser.Retry(); r > 0 {
			s.retry = r
		}
		s.closeBody()
		s.parser = nil
		if s.ctx.Err() != nil {
			return Event{}, s.closedErr(err)
		}
		if !s.opts.Reconnect {
			return Event{}, err
		}
	}
}

// wait sleeps the reconnection time, or returns when the stream is closed.
func (s *Stream) wait() error {
	d := s.retry
	if s.opts.ReconnectDelay > 0 {
		d = s.opts.ReconnectDelay
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.ctx.Done():
		return s.closedErr(s.ctx.Err())
	}
}

func (s *Stream) closedErr(err error) error {
	if s.ctx.Err() == nil {
		return err
	}
	if errors.Is(context.Cause(s.ctx), errClosedCause) {
		return ErrClosed
	}
	return s.ctx.Err()
}

var errClosedCause = errors.New("closed")

func (s *Stream) closeBody() {
	s.mu.Lock()
	resp := s.resp
	s.resp = nil
	s.mu.Unlock()
	if resp != nil {
		resp.Body.Close()
	}
}

// LastEventID is the id the next reconnection sends: the last event id
// the stream set.
func (s *Stream) LastEventID() string { return s.lastID }

// Response is the response of the current connection, nil between
// connections. Its Body belongs to the Stream.
func (s *Stream) Response() *http.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resp
}

// Reconnects is the number of successful reconnections so far.
func (s *Stream) Reconnects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reconnects
}

// errCut is returned by Next after Cut without Reconnect.
var errCut = errors.New("sseclient: connection cut")

// Cut closes the current connection as a network failure right after the
// last event Next returned would: what was received beyond it is dropped,
// a Next blocked on the connection returns (after the events already
// received), and with Reconnect the Stream connects again with its last
// event id.
func (s *Stream) Cut() {
	s.cut.Store(true)
	s.mu.Lock()
	resp := s.resp
	s.mu.Unlock()
	if resp != nil {
		resp.Body.Close()
	}
}

// Close ends the stream; Next returns ErrClosed from then on.
func (s *Stream) Close() error {
	s.mu.Lock()
	resp := s.resp
	s.resp = nil
	s.mu.Unlock()
	s.cancel(errClosedCause)
	if resp != nil {
		resp.Body.Close()
	}
	return nil
}
