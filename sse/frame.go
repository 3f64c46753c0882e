package sse

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendFrame appends one event to dst in the text/event-stream format: an
// "id:" line when id is not empty, an "event:" line when event is not
// empty, one "data:" line per line of data and the blank line that makes a
// client dispatch the event.
//
// data is split at every CRLF, LF and CR, so a client joins the lines back
// with LF: data holding CR or CRLF reaches it with LF instead, and nothing in
// data can start a field or an event. Empty data is sent as one empty
// "data:" line, which a client dispatches with empty data.
//
// id and event must be valid UTF-8 without CR, LF or NUL, and data valid
// UTF-8; otherwise AppendFrame returns dst unchanged and ErrInvalidField or
// ErrInvalidData. An empty id leaves the client's last event id as it was
// (this API never clears it).
func AppendFrame(dst []byte, id, event string, data []byte) ([]byte, error) {
	if !validField(id) || !validField(event) {
		return dst, ErrInvalidField
	}
	if !utf8.Valid(data) {
		return dst, ErrInvalidData
	}
	return appendFrame(dst, id, event, data), nil
}

// appendFrame is AppendFrame for values known to be valid: ids this package
// formats, constant event names, and JSON from kvjson, which is UTF-8 by
// construction. data is still split at line breaks.
func appendFrame[I ~string | ~[]byte](dst []byte, id I, event string, data []byte) []byte {
	if len(id) > 0 {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	if event != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, event...)
		dst = append(dst, '\n')
	}
	dst = appendDataLines(dst, data)
	return append(dst, '\n')
}

// appendDataLines appends one "data: " line per line of data, each ended
// by LF.
func appendDataLines(dst, data []byte) []byte {
	for {
		dst = append(dst, "data: "...)
		i := indexLineBreak(data)
		if i < 0 {
			dst = append(dst, data...)
			return append(dst, '\n')
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

// indexLineBreak returns the index of the first CR or LF in b, or -1.
// Two IndexByte calls beat IndexAny: both run vectorised.
func indexLineBreak(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	end := len(b)
	if i >= 0 {
		end = i
	}
	if j := bytes.IndexByte(b[:end], '\r'); j >= 0 {
		return j
	}
	return i
}

// validField reports whether v can be written as an id or event value:
// valid UTF-8 holding no CR, LF or NUL.
func validField(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return utf8.ValidString(v)
}

// AppendComment appends text as comment lines (": text"), which clients
// ignore; a stream uses them as heartbeats. Each line of text (split at
// CRLF, LF and CR) becomes its own comment line, so text cannot start a
// field or an event.
func AppendComment(dst []byte, text string) []byte {
	for {
		dst = append(dst, ':')
		i := indexLineBreakString(text)
		line := text
		if i >= 0 {
			line = text[:i]
		}
		if line != "" {
			dst = append(dst, ' ')
			dst = append(dst, line...)
		}
		dst = append(dst, '\n')
		if i < 0 {
			return dst
		}
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
}

func indexLineBreakString(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			return i
		}
	}
	return -1
}

// AppendRetry appends a "retry:" field setting the client's reconnection
// time to d, in whole milliseconds (a negative d is sent as 0), followed by
// a blank line so it stands alone before the first event.
func AppendRetry(dst []byte, d time.Duration) []byte {
	ms := d.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, ms, 10)
	return append(dst, '\n', '\n')
}
