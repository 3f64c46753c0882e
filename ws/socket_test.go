package ws

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// pipeSocket is a socket whose write path writes into one end of a
// net.Pipe, and a raw client on the other end.
func pipeSocket(tb testing.TB, opts Options) (*socket, *rawClient) {
	tb.Helper()
	server, client := net.Pipe()
	tb.Cleanup(func() { server.Close(); client.Close() })
	opts.setDefaults()
	s := &socket{
		h:    &Handler{opts: opts, log: zerolog.Nop()},
		cork: &corkConn{Conn: server, writeTimeout: 5 * time.Second},
		log:  zerolog.Nop(),
	}
	return s, &rawClient{conn: client, br: bufio.NewReader(client)}
}

// writeAndRead writes r in a corked batch and returns the messages the
// client reads, decoded.
func writeAndRead(tb testing.TB, s *socket, c *rawClient, rs ...watchhub.Response) []Message {
	tb.Helper()
	errc := make(chan error, 1)
	go func() {
		s.cork.cork()
		var err error
		for i := range rs {
			if err = s.writeResponse(&rs[i]); err != nil {
				break
			}
		}
		if err2 := s.cork.uncork(); err == nil {
			err = err2
		}
		s.cork.Conn.Close()
		errc <- err
	}()
	var got []Message
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		b, err := c.read()
		if err != nil {
			break
		}
		m, err := decodeMessage(b)
		if err != nil {
			tb.Fatal(err)
		}
		got = append(got, m)
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	return got
}

func hubEvent(rev int64, key, value string) *watchhub.Event {
	return &watchhub.Event{Event: &kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte(key), Value: []byte(value), CreateRevision: rev, ModRevision: rev, Version: 1}}}
}

func TestWriteEventsSplit(t *testing.T) {
	evs := []*watchhub.Event{
		hubEvent(10, "a", "1"), hubEvent(10, "b", "1"),
		hubEvent(11, "c", "1"),
		hubEvent(12, "d", "1"), hubEvent(12, "e", "1"), hubEvent(12, "f", "1"),
	}
	one := len(evs[0].JSON(false)) + 1
	tests := []struct {
		name  string
		limit int
		kind  watchhub.Kind
		want  [][2]int64 // per message: revision, number of events
	}{
		{"all in one", 1 << 20, watchhub.KindEvents, [][2]int64{{15, 6}}},
		{"one revision a message", one, watchhub.KindEvents, [][2]int64{{10, 2}, {11, 1}, {15, 3}}},
		{"two revisions fit", 3 * one, watchhub.KindEvents, [][2]int64{{11, 3}, {15, 3}}},
		{"snapshot splits anywhere, at its revision", 2 * one, watchhub.KindSnapshot, [][2]int64{{15, 2}, {15, 2}, {15, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := pipeSocket(t, Options{MaxEventsMessage: tt.limit})
			msgs := writeAndRead(t, s, c, watchhub.Response{Kind: tt.kind, WatchID: "w", Revision: 15, Events: evs})
			var got [][2]int64
			var keys string
			for _, m := range msgs {
				if m.Type != TypeEvents || m.ID != "w" {
					t.Fatalf("message %+v", m)
				}
				got = append(got, [2]int64{m.Revision, int64(len(m.Events))})
				for _, e := range m.Events {
					keys += *e.KV.Key
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if keys != "abcdef" {
				t.Errorf("events %q, want abcdef in order", keys)
			}
		})
	}
}

func TestWriteResponseKinds(t *testing.T) {
	s, c := pipeSocket(t, Options{})
	got := writeAndRead(t, s, c,
		watchhub.Response{Kind: watchhub.KindCreated, WatchID: "w", Revision: 3},
		watchhub.Response{Kind: watchhub.KindWatchProgress, WatchID: "w", Revision: 4}, // never asked for: not sent
		watchhub.Response{Kind: watchhub.KindProgress, Revision: 4},
		watchhub.Response{Kind: watchhub.KindReset, WatchID: "w", Revision: 5},
		watchhub.Response{Kind: watchhub.KindSynced, WatchID: "w", Revision: 5},
		watchhub.Response{Kind: watchhub.KindCompacted, WatchID: "w", Revision: 9, CompactRevision: 7},
		watchhub.Response{Kind: watchhub.KindCanceled, WatchID: "w", Revision: 9, Reason: "canceled"},
		watchhub.Response{Kind: watchhub.KindError, WatchID: "w", Revision: 9, Err: errors.New("disk on fire")},
	)
	want := []Message{
		{Type: TypeCreated, ID: "w", Revision: 3},
		{Type: TypeProgress, Revision: 4},
		{Type: TypeReset, ID: "w", Revision: 5},
		{Type: TypeSynced, ID: "w", Revision: 5},
		{Type: TypeCompacted, ID: "w", Revision: 9, CompactRevision: 7},
		{Type: TypeCanceled, ID: "w", Reason: "canceled"},
		{Type: TypeError, ID: "w", Error: &Problem{Type: ProblemTypePrefix + "watch-failed", Title: "Watch failed", Status: 503,
			Detail: "the server could not serve this watch; watch again from the last revision received + 1"}},
	}
	if diff := cmp.Diff(want, got, ignoreErr); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestCorkConnClose: once the library has written a close frame, no data
// frame follows it.
func TestCorkConnClose(t *testing.T) {
	s, c := pipeSocket(t, Options{})
	done := make(chan error, 1)
	go func() {
		if err := s.cork.writeText([]byte(`{"type":"pong"}`)); err != nil {
			done <- err
			return
		}
		if _, err := s.cork.Write([]byte{0x88, 2, 0x03, 0xe9}); err != nil { // close 1001
			done <- err
			return
		}
		done <- s.cork.writeText([]byte(`{"type":"pong"}`))
	}()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := c.read(); err != nil || string(m) != `{"type":"pong"}` {
		t.Fatalf("read %q, %v", m, err)
	}
	if _, err := c.read(); err == nil || err.Error() != fmt.Sprintf("closed: %x", []byte{0x03, 0xe9}) {
		t.Fatalf("read after close: %v", err)
	}
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("data frame after close: %v, want net.ErrClosed", err)
	}
}
