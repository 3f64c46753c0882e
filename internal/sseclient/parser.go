// Package sseclient is a Server-Sent Events client for tests and tools: a
// parser that follows the WHATWG HTML Standard's "interpreting an event
// stream" algorithm step by step, and a Stream that connects with any
// *http.Client and reconnects with Last-Event-ID as a browser's
// EventSource does.
//
// The parser shares no code with the server's encoder (package sse), so
// each checks the other.
package sseclient

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Event is one dispatched event, as an EventSource's MessageEvent shows it.
type Event struct {
	// ID is the last event id of the stream when the event was
	// dispatched: set by this event's "id:" field or kept from an earlier
	// one (MessageEvent.lastEventId).
	ID string
	// Type is the "event:" field, or "message" when there was none.
	Type string
	// Data is the "data:" lines joined with LF.
	Data string
	// Retry is the reconnection time set by the last valid "retry:" field
	// so far, 0 when there was none.
	Retry time.Duration
}

// Parser reads events from a text/event-stream body. It is not safe for
// concurrent use.
type Parser struct {
	dec *decoder
	// started is set once the first code point has been read, after which
	// a U+FEFF is no longer a BOM.
	started bool
	// afterCR is set after a line ended by CR: a LF right after it belongs
	// to the same line break. Remembering it, rather than peeking, keeps a
	// CR-ended line from waiting for the next byte.
	afterCR bool
	line    []byte

	data        strings.Builder
	eventType   string
	lastIDBuf   string
	lastEventID string
	retry       time.Duration
}

// NewParser returns a parser of r with empty buffers.
func NewParser(r io.Reader) *Parser {
	return &Parser{dec: newDecoder(r)}
}

// SetLastEventID sets the last event ID buffer, as a reconnecting
// EventSource keeps the id it had (Chromium and Firefox carry it over to
// the new connection's parser).
func (p *Parser) SetLastEventID(id string) {
	p.lastIDBuf = id
	p.lastEventID = id
}

// LastEventID is the id a reconnection sends as Last-Event-ID: the last
// event ID buffer as of the last dispatch.
func (p *Parser) LastEventID() string { return p.lastEventID }

// Retry is the reconnection time set by the stream, 0 when none was set.
func (p *Parser) Retry() time.Duration { return p.retry }

// Next returns the next dispatched event. At the end of the stream it
// returns io.EOF and discards an event not ended by a blank line; a read
// error is returned as is.
func (p *Parser) Next() (Event, error) {
	for {
		line, err := p.readLine()
		if err != nil {
			return Event{}, err
		}
		if ev, ok := p.processLine(line); ok {
			return ev, nil
		}
	}
}

// readLine returns the next line without its end of line (CRLF, LF or
// CR), re-encoded as UTF-8. A line cut off by the end of the stream is not
// a line: the pending data is discarded.
func (p *Parser) readLine() (string, error) {
	p.line = p.line[:0]
	for {
		r, err := p.dec.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", io.EOF
			}
			return "", err
		}
		if !p.started {
			p.started = true
			// "One leading U+FEFF BYTE ORDER MARK character must be
			// ignored if any are present."
			if r == '\uFEFF' {
				continue
			}
		}
		afterCR := p.afterCR
		p.afterCR = false
		switch r {
		case '\n':
			if afterCR {
				continue // the LF of a CRLF
			}
			return string(p.line), nil
		case '\r':
			p.afterCR = true
			return string(p.line), nil
		}
		p.line = utf8.AppendRune(p.line, r)
	}
}

// processLine applies one line to the buffers and reports the event it
// dispatched, if any.
func (p *Parser) processLine(line string) (Event, bool) {
	// "If the line is empty (a blank line): Dispatch the event."
	if line == "" {
		return p.dispatch()
	}
	// "If the line starts with a U+003A COLON character (:): Ignore the
	// line."
	if line[0] == ':' {
		return Event{}, false
	}
	field, value := line, ""
	// "If the line contains a U+003A COLON character (:): collect the
	// characters on the line before the first colon as field, after it as
	// value; if value starts with a U+0020 SPACE character, remove it."
	// "Otherwise, the string is not empty but does not contain a colon:
	// the whole line is the field name and the value is empty."
	if i := strings.IndexByte(line, ':'); i >= 0 {
		field, value = line[:i], line[i+1:]
		value = strings.TrimPrefix(value, " ")
	}
	p.processField(field, value)
	return Event{}, false
}

// processField is the standard's "process the field".
func (p *Parser) processField(field, value string) {
	switch field {
	case "event":
		p.eventType = value
	case "data":
		p.data.WriteString(value)
		p.data.WriteByte('\n')
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.lastIDBuf = value
		}
	case "retry":
		if value == "" || strings.TrimLeft(value, "0123456789") != "" {
			return
		}
		ms, err := strconv.ParseInt(value, 10, 64)
		if err != nil || ms > int64(time.Duration(1<<63-1)/time.Millisecond) {
			return // too large to be a duration: ignore
		}
		p.retry = time.Duration(ms) * time.Millisecond
	}
	// Any other field is ignored.
}

// dispatch is the standard's "dispatch the event".
func (p *Parser) dispatch() (Event, bool) {
	// 1. The last event ID string becomes the last event ID buffer, which
	// is not reset.
	p.lastEventID = p.lastIDBuf
	// 2. Empty data buffer: reset the buffers, dispatch nothing.
	if p.data.Len() == 0 {
		p.eventType = ""
		return Event{}, false
	}
	// 3. Remove one trailing LF.
	data := strings.TrimSuffix(p.data.String(), "\n")
	// 4-6. The event's type is "message" unless the type buffer is set.
	ev := Event{ID: p.lastEventID, Type: "message", Data: data, Retry: p.retry}
	if p.eventType != "" {
		ev.Type = p.eventType
	}
	// 7. Reset the data and type buffers.
	p.data.Reset()
	p.eventType = ""
	return ev, true
}
