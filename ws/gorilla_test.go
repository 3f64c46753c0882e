package ws

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gorilla "github.com/gorilla/websocket"
)

// TestGorillaClient exchanges the protocol's messages with a second,
// independent client implementation.
func TestGorillaClient(t *testing.T) {
	ts := newTestServer(t, Options{})
	d := gorilla.Dialer{Subprotocols: []string{"chat", Subprotocol}, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(ts.url, http.Header{"Origin": {ts.srv.URL}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	if c.Subprotocol() != Subprotocol || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("subprotocol %q, status %d", c.Subprotocol(), resp.StatusCode)
	}
	send := func(msg string) {
		t.Helper()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(gorilla.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() Message {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, b, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ != gorilla.TextMessage {
			t.Fatalf("message type %d", typ)
		}
		m, err := decodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	rev0, _ := ts.store.Revisions()
	send(`{"op":"ping"}`)
	send(`{"op":"watch","id":"g","key":"a","range_end":"c","events":["put"]}`)
	// A watch without rev starts when the server registers it: the writes
	// come after its created, or they could precede it.
	var got []Message
	got = append(got, recv(), recv())
	r1 := ts.put(t, "b", "1")
	if _, err := ts.store.Delete(t.Context(), []byte("b"), nil); err != nil {
		t.Fatal(err)
	}
	r3 := ts.put(t, "b", "2")
	send(`{"op":"progress"}`)
	send(`{"op":"cancel","id":"g"}`)
	send(`{"op":"watch","id":"g","key":""}`)
	want := []Message{
		{Type: TypePong},
		{Type: TypeCreated, ID: "g", Revision: rev0},
		{Type: TypeEvents, ID: "g", Revision: r1, Events: []Event{{Type: "put", KV: kvjsonKV("b", "1", r1, r1, 1)}}},
		{Type: TypeEvents, ID: "g", Revision: r3, Events: []Event{{Type: "put", KV: kvjsonKV("b", "2", r3, r3, 1)}}},
		{Type: TypeProgress, Revision: r3},
		{Type: TypeCanceled, ID: "g", Reason: "canceled"},
		{Type: TypeError, ID: "g", Error: &Problem{Type: ProblemTypePrefix + "invalid-range", Title: "Invalid key or range", Status: 400,
			Detail: `the empty key is allowed only with "prefix" (every key) or "range_end"`}},
	}
	for len(got) < len(want) {
		got = append(got, recv())
	}
	if diff := cmp.Diff(want, got, ignoreErr); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// Resume after a reconnect, with the same messages.
	c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.Close()
	r4 := ts.put(t, "b", "3")
	c, _, err = d.Dial(ts.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send(fmt.Sprintf(`{"op":"watch","id":"g","key":"b","rev":%d}`, r3+1))
	if m := recv(); m.Type != TypeCreated {
		t.Fatalf("got %+v", m)
	}
	if m := recv(); m.Type != TypeEvents || m.Revision != r4 || *m.Events[0].KV.Value != "3" {
		t.Fatalf("resumed watch got %+v", m)
	}

	// Shutdown reaches this client as 1001.
	go ts.h.Shutdown(t.Context())
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = c.ReadMessage()
	if !gorilla.IsCloseError(err, gorilla.CloseGoingAway) {
		t.Errorf("after Shutdown: %v, want close 1001", err)
	}
}
