package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/internal/sseclient"
)

func TestAppendFrame(t *testing.T) {
	tests := []struct {
		name      string
		id, event string
		data      string
		want      string
		wantErr   error
	}{
		{"full", "42", "put", `{"a":1}`, "id: 42\nevent: put\ndata: {\"a\":1}\n\n", nil},
		{"no id", "", "reset", `{}`, "event: reset\ndata: {}\n\n", nil},
		{"no event", "7", "", "x", "id: 7\ndata: x\n\n", nil},
		{"empty data", "", "", "", "data: \n\n", nil},
		{"LF", "", "e", "a\nb", "event: e\ndata: a\ndata: b\n\n", nil},
		{"CRLF", "", "e", "a\r\nb", "event: e\ndata: a\ndata: b\n\n", nil},
		{"CR", "", "e", "a\rb", "event: e\ndata: a\ndata: b\n\n", nil},
		{"LFCR is two breaks", "", "e", "a\n\rb", "event: e\ndata: a\ndata: \ndata: b\n\n", nil},
		{"trailing LF", "", "e", "a\n", "event: e\ndata: a\ndata: \n\n", nil},
		{"injection in data", "", "e", "x\n\nid: 666\nevent: evil\ndata: y", "event: e\ndata: x\ndata: \ndata: id: 666\ndata: event: evil\ndata: data: y\n\n", nil},
		{"NUL in data", "", "e", "a\x00b", "event: e\ndata: a\x00b\n\n", nil},
		{"leading space kept", "", "e", " a", "event: e\ndata:  a\n\n", nil},
		{"LF in id", "1\nevent: evil", "e", "x", "", ErrInvalidField},
		{"CR in id", "1\r", "e", "x", "", ErrInvalidField},
		{"NUL in id", "1\x00", "e", "x", "", ErrInvalidField},
		{"LF in event", "1", "put\ndata: evil", "x", "", ErrInvalidField},
		{"CR in event", "1", "put\r", "x", "", ErrInvalidField},
		{"NUL in event", "1", "p\x00", "x", "", ErrInvalidField},
		{"invalid UTF-8 id", "\xff", "e", "x", "", ErrInvalidField},
		{"invalid UTF-8 data", "", "e", "\xc3\x28", "", ErrInvalidData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("previous\n")
			got, err := AppendFrame(prefix, tt.id, tt.event, []byte(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff("previous\n"+tt.want, string(got)); diff != "" {
				t.Errorf("AppendFrame (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendComment(t *testing.T) {
	tests := []struct{ text, want string }{
		{"", ":\n"},
		{"keep-alive", ": keep-alive\n"},
		{"a\nb", ": a\n: b\n"},
		{"a\r\ndata: evil\rc", ": a\n: data: evil\n: c\n"},
		{"a\n", ": a\n:\n"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, string(AppendComment(nil, tt.text))); diff != "" {
			t.Errorf("AppendComment(%q) (-want +got):\n%s", tt.text, diff)
		}
	}
}

func TestAppendRetry(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{1500 * time.Millisecond, "retry: 1500\n\n"},
		{1500*time.Millisecond + 999*time.Microsecond, "retry: 1500\n\n"},
		{0, "retry: 0\n\n"},
		{-time.Second, "retry: 0\n\n"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, string(AppendRetry(nil, tt.d))); diff != "" {
			t.Errorf("AppendRetry(%v) (-want +got):\n%s", tt.d, diff)
		}
	}
}

// wantEvent is what a client must see for a frame that AppendFrame
// accepted: the last id given so far, the type ("message" when none) and
// the data with every line break turned into LF.
func wantEvent(lastID *string, id, event string, data []byte, retry time.Duration) sseclient.Event {
	if id != "" {
		*lastID = id
	}
	typ := event
	if typ == "" {
		typ = "message"
	}
	d := strings.ReplaceAll(string(data), "\r\n", "\n")
	d = strings.ReplaceAll(d, "\r", "\n")
	return sseclient.Event{ID: *lastID, Type: typ, Data: d, Retry: retry}
}

func parseAll(tb testing.TB, stream []byte) []sseclient.Event {
	tb.Helper()
	p := sseclient.NewParser(bytes.NewReader(stream))
	var evs []sseclient.Event
	for {
		ev, err := p.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			tb.Fatalf("parse %q: %v", stream, err)
		}
		evs = append(evs, ev)
	}
}

// FuzzAppendFrame encodes a stream of a retry field, two frames and a
// comment between them, parses it back with sseclient's parser (the WHATWG
// algorithm, written independently) and checks that exactly the accepted
// frames come out, with their id, type and data, whatever the input.
func FuzzAppendFrame(f *testing.F) {
	f.Add(uint16(1500), "42", "put", []byte(`{"k":"v"}`), "hb", "43.1", "delete", []byte("a\r\nb\rc\nd"))
	f.Add(uint16(0), "", "", []byte(""), "", "", "", []byte("\n"))
	f.Add(uint16(3), "1\nevent: x", "e", []byte("x"), "a\nid: 9", "\x00", "e\r", []byte("\xff"))
	f.Add(uint16(7), " id", " event", []byte(" data:\x00"), "\r\n", "id:x", "data", []byte("\uFEFFbom\n\n"))
	f.Fuzz(func(t *testing.T, retryMS uint16, id1, ev1 string, data1 []byte, comment, id2, ev2 string, data2 []byte) {
		retry := time.Duration(retryMS) * time.Millisecond
		stream := AppendRetry(nil, retry)
		var want []sseclient.Event
		lastID := ""
		frames := []struct {
			id, ev string
			data   []byte
		}{{id1, ev1, data1}, {id2, ev2, data2}}
		for i, fr := range frames {
			if i == 1 {
				stream = AppendComment(stream, comment)
			}
			before := len(stream)
			var err error
			stream, err = AppendFrame(stream, fr.id, fr.ev, fr.data)
			if err != nil {
				if len(stream) != before {
					t.Fatalf("frame %d: error %v but %d bytes written", i, err, len(stream)-before)
				}
				if fieldOK(fr.id) && fieldOK(fr.ev) && utf8.Valid(fr.data) {
					t.Fatalf("frame %d rejected: %v", i, err)
				}
				continue
			}
			if !fieldOK(fr.id) || !fieldOK(fr.ev) || !utf8.Valid(fr.data) {
				t.Fatalf("frame %d with id %q event %q data %q accepted", i, fr.id, fr.ev, fr.data)
			}
			want = append(want, wantEvent(&lastID, fr.id, fr.ev, fr.data, retry))
		}
		got := parseAll(t, stream)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("stream %q (-want +got):\n%s", stream, diff)
		}
	})
}

// fieldOK is the rule AppendFrame must apply to ids and event names,
// restated independently of its code.
func fieldOK(s string) bool { return !strings.ContainsAny(s, "\r\n\x00") && utf8.ValidString(s) }

// TestFramesGolden pins the bytes of frames whose data tries to inject
// fields, and of comments and retry.
func TestFramesGolden(t *testing.T) {
	var out []byte
	out = AppendRetry(out, 2500*time.Millisecond)
	out = AppendComment(out, "heartbeat\r\nid: 1")
	for _, data := range []string{"plain", "two\nlines", "crlf\r\nand cr\rend", "\n\nid: 666\nevent: evil\ndata: x\n\n", ""} {
		var err error
		if out, err = AppendFrame(out, "7.1", "put", []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "frames.golden", out)
}
