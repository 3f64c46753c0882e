package sseclient

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func parseString(tb testing.TB, r io.Reader) ([]Event, error) {
	tb.Helper()
	p := NewParser(r)
	var evs []Event
	for {
		ev, err := p.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return evs, nil
			}
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func TestParser(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []Event
	}{
		// The examples of the HTML Standard, section 9.2.6.
		{"spec stock", "data: YHOO\ndata: +2\ndata: 10\n\n",
			[]Event{{Type: "message", Data: "YHOO\n+2\n10"}}},
		{"spec ids", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]Event{{ID: "1", Type: "message", Data: "first event"}, {ID: "", Type: "message", Data: "second event"}, {ID: "", Type: "message", Data: " third event"}}},
		{"spec empty data", "data\n\ndata\ndata\n\ndata:",
			[]Event{{Type: "message", Data: ""}, {Type: "message", Data: "\n"}}},
		{"spec space", "data:test\n\ndata: test\n\n",
			[]Event{{Type: "message", Data: "test"}, {Type: "message", Data: "test"}}},

		{"event type", "event: put\ndata: x\n\nevent: put\n\ndata: y\n\n",
			[]Event{{Type: "put", Data: "x"}, {Type: "message", Data: "y"}}},
		{"CRLF", "id: 1\r\nevent: e\r\ndata: a\r\ndata: b\r\n\r\n",
			[]Event{{ID: "1", Type: "e", Data: "a\nb"}}},
		{"CR", "id: 1\revent: e\rdata: a\rdata: b\r\r",
			[]Event{{ID: "1", Type: "e", Data: "a\nb"}}},
		{"LF CR is two line ends", "data: a\n\rdata: b\n\n",
			[]Event{{Type: "message", Data: "a"}, {Type: "message", Data: "b"}}},
		{"mixed", "data: a\r\n\rdata: b\n\r\n",
			[]Event{{Type: "message", Data: "a"}, {Type: "message", Data: "b"}}},
		{"BOM", "\uFEFFdata: a\n\n", []Event{{Type: "message", Data: "a"}}},
		{"only one BOM", "\uFEFF\uFEFFdata: a\n\ndata: b\n\n", []Event{{Type: "message", Data: "b"}}},
		{"BOM later is a character", "data: \uFEFFa\n\n", []Event{{Type: "message", Data: "\uFEFFa"}}},
		{"id with NUL ignored", "id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n",
			[]Event{{ID: "1", Type: "message", Data: "a"}, {ID: "1", Type: "message", Data: "b"}}},
		{"NUL in data", "data: a\x00b\n\n", []Event{{Type: "message", Data: "a\x00b"}}},
		{"id kept", "id: 5\ndata: a\n\ndata: b\n\n",
			[]Event{{ID: "5", Type: "message", Data: "a"}, {ID: "5", Type: "message", Data: "b"}}},
		{"id colon", "id: a:b\ndata: x\n\n", []Event{{ID: "a:b", Type: "message", Data: "x"}}},
		{"only one space stripped", "data:  x\n\n", []Event{{Type: "message", Data: " x"}}},
		{"field names are case-sensitive", "Data: x\nDATA: y\ndata: z\n\n", []Event{{Type: "message", Data: "z"}}},
		{"unknown field", "foo: bar\ndata: x\n\n", []Event{{Type: "message", Data: "x"}}},
		{"retry", "retry: 1500\ndata: x\n\n", []Event{{Type: "message", Data: "x", Retry: 1500 * time.Millisecond}}},
		{"retry not digits", "retry: 1500\nretry: 15x\nretry: -1\nretry:  2\nretry:\ndata: x\n\n",
			[]Event{{Type: "message", Data: "x", Retry: 1500 * time.Millisecond}}},
		{"retry overflow", "retry: 99999999999999999999999\ndata: x\n\n", []Event{{Type: "message", Data: "x"}}},
		{"comment", ": data: x\n\n", nil},
		{"no blank line at end", "data: a\n\ndata: b\n", []Event{{Type: "message", Data: "a"}}},
		{"no line end at end", "data: a\n\ndata: b", []Event{{Type: "message", Data: "a"}}},
		{"type reset without data", "event: e\n\ndata: x\n\n", []Event{{Type: "message", Data: "x"}}},

		// WHATWG UTF-8 decoding: one U+FFFD per maximal ill-formed subpart.
		{"truncated sequence", "data: a\xE2\x82b\n\n", []Event{{Type: "message", Data: "a\uFFFDb"}}},
		{"overlong", "data: \xC0\xAF\n\n", []Event{{Type: "message", Data: "\uFFFD\uFFFD"}}},
		{"E0 lower bound", "data: \xE0\x80\x80\n\n", []Event{{Type: "message", Data: "\uFFFD\uFFFD\uFFFD"}}},
		{"surrogate", "data: \xED\xA0\x80\n\n", []Event{{Type: "message", Data: "\uFFFD\uFFFD\uFFFD"}}},
		{"above U+10FFFF", "data: \xF4\x90\x80\x80\n\n", []Event{{Type: "message", Data: "\uFFFD\uFFFD\uFFFD\uFFFD"}}},
		{"truncated before LF", "data: \xF0\x9F\x98\n\n", []Event{{Type: "message", Data: "\uFFFD"}}},
		{"four bytes", "data: \xF0\x9F\x98\x80\n\n", []Event{{Type: "message", Data: "\U0001F600"}}},
		{"lone continuation", "data: \x80x\n\n", []Event{{Type: "message", Data: "\uFFFDx"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    io.Reader
			}{
				{"whole", strings.NewReader(tt.stream)},
				{"byte by byte", iotest.OneByteReader(strings.NewReader(tt.stream))},
			} {
				got, err := parseString(t, r.r)
				if err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("%s (-want +got):\n%s", r.name, diff)
				}
			}
		})
	}
}

func TestParserTruncatedAtEOF(t *testing.T) {
	// A sequence cut by the end of the stream is U+FFFD, but the line is
	// not ended, so nothing is dispatched.
	got, err := parseString(t, strings.NewReader("data: a\n\ndata: \xE2\x82"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Event{{Type: "message", Data: "a"}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParserReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("id: 3\ndata: a\n\ndata: b"), iotest.ErrReader(boom))
	p := NewParser(r)
	if ev, err := p.Next(); err != nil || ev.Data != "a" {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	if _, err := p.Next(); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if _, err := p.Next(); !errors.Is(err, boom) {
		t.Fatalf("second error %v, want boom again", err)
	}
	if p.LastEventID() != "3" {
		t.Errorf("LastEventID %q", p.LastEventID())
	}
}

func TestParserSetLastEventID(t *testing.T) {
	p := NewParser(strings.NewReader("data: a\n\n"))
	p.SetLastEventID("41")
	ev, err := p.Next()
	if err != nil || ev.ID != "41" {
		t.Fatalf("event %+v, %v; want id 41 carried over", ev, err)
	}
}

// chunkReader returns its data in the chunk sizes of sizes, cycling.
type chunkReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = int(c.sizes[c.i%len(c.sizes)])%16 + 1
		c.i++
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzParser checks that the parser never panics and that how the stream
// is cut into reads never changes the events (a CR at the end of one read
// and a LF at the start of the next are one line end).
func FuzzParser(f *testing.F) {
	f.Add([]byte("id: 1\r\ndata: a\r\rdata: b\n\n"), []byte{0, 3})
	f.Add([]byte("\xEF\xBB\xBFretry: 10\ndata: \xF0\x9F\x98\n\n"), []byte{1})
	f.Add([]byte("data\n\ndata\ndata\n\ndata:"), []byte{})
	f.Fuzz(func(t *testing.T, stream, sizes []byte) {
		whole, err := parseString(t, strings.NewReader(string(stream)))
		if err != nil {
			t.Fatal(err)
		}
		chunked, err := parseString(t, &chunkReader{data: stream, sizes: sizes})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(whole, chunked); diff != "" {
			t.Fatalf("chunking changed the events (-whole +chunked):\n%s", diff)
		}
		for _, ev := range whole {
			if strings.ContainsRune(ev.ID, 0) || strings.ContainsAny(ev.ID, "\r\n") {
				t.Fatalf("id %q holds NUL or a line end", ev.ID)
			}
			if strings.ContainsRune(ev.Data, '\r') || ev.Type == "" {
				t.Fatalf("event %+v", ev)
			}
		}
	})
}
