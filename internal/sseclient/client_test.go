package sseclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// script is a test server: each request gets the next of its responses,
// and the Last-Event-ID of every request is recorded.
type script struct {
	mu        sync.Mutex
	responses []func(w http.ResponseWriter, r *http.Request)
	ids       []string
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ids = append(s.ids, r.Header.Get("Last-Event-ID"))
	i := len(s.ids) - 1
	s.mu.Unlock()
	if i >= len(s.responses) {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.responses[i](w, r)
}

func (s *script) lastEventIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...)
}

// sends answers with a 200 event stream holding body, then ends it or,
// with hold, keeps it open until the client goes.
func sends(body string, hold bool) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		io.WriteString(w, body)
		w.(http.Flusher).Flush()
		if hold {
			<-r.Context().Done()
		}
	}
}

func next(tb testing.TB, s *Stream) Event {
	tb.Helper()
	ev, err := s.Next()
	if err != nil {
		tb.Fatalf("Next: %v", err)
	}
	return ev
}

func TestStreamReconnects(t *testing.T) {
	sc := &script{responses: []func(http.ResponseWriter, *http.Request){
		sends("retry: 5\n\nid: 1\nevent: put\ndata: a\n\n", false),
		sends("id: 2.0\nevent: put\ndata: b\n\nid: 2\ndata: c\n\n", false),
	}}
	srv := httptest.NewServer(sc)
	defer srv.Close()

	s, err := Connect(t.Context(), srv.URL, Options{Reconnect: true, LastEventID: "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []Event
	for range 3 {
		got = append(got, next(t, s))
	}
	want := []Event{
		{ID: "1", Type: "put", Data: "a", Retry: 5 * time.Millisecond},
		{ID: "2.0", Type: "put", Data: "b"},
		{ID: "2", Type: "message", Data: "c"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	// The third request gets 204: the stream stops for good.
	_, err = s.Next()
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNoContent {
		t.Fatalf("Next after 204: %v", err)
	}
	if diff := cmp.Diff([]string{"0", "1", "2"}, sc.lastEventIDs()); diff != "" {
		t.Errorf("Last-Event-ID sent (-want +got):\n%s", diff)
	}
	if n := s.Reconnects(); n != 1 {
		t.Errorf("Reconnects = %d, want 1", n)
	}
}

func TestStreamWithoutReconnect(t *testing.T) {
	sc := &script{responses: []func(http.ResponseWriter, *http.Request){sends("id: 1\ndata: a\n\ndata: cut", false)}}
	srv := httptest.NewServer(sc)
	defer srv.Close()
	s, err := Connect(t.Context(), srv.URL, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ev := next(t, s); ev.Data != "a" {
		t.Fatalf("event %+v", ev)
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next at end = %v, want io.EOF", err)
	}
	if len(sc.lastEventIDs()) != 1 {
		t.Errorf("reconnected without Reconnect")
	}
}

func TestStreamCut(t *testing.T) {
	sc := &script{responses: []func(http.ResponseWriter, *http.Request){
		sends("id: 7\ndata: a\n\n", true),
		sends("id: 8\ndata: b\n\n", true),
	}}
	srv := httptest.NewServer(sc)
	defer srv.Close()
	s, err := Connect(t.Context(), srv.URL, Options{Reconnect: true, ReconnectDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next(t, s)
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Cut()
	}()
	if ev := next(t, s); ev.ID != "8" {
		t.Fatalf("after cut: %+v", ev)
	}
	if diff := cmp.Diff([]string{"", "7"}, sc.lastEventIDs()); diff != "" {
		t.Errorf("Last-Event-ID sent (-want +got):\n%s", diff)
	}
}

func TestStreamClose(t *testing.T) {
	sc := &script{responses: []func(http.ResponseWriter, *http.Request){sends(": hello\n", true)}}
	srv := httptest.NewServer(sc)
	defer srv.Close()
	s, err := Connect(t.Context(), srv.URL, Options{Reconnect: true, ReconnectDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Close()
	}()
	if _, err := s.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next again = %v, want ErrClosed", err)
	}
}

func TestConnectRefused(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  int
		body    string
	}{
		{"problem", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"title":"bad id","status":400}`)
		}, 400, `{"title":"bad id","status":400}`},
		{"no content", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, 204, ""},
		{"not an event stream", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "data: x\n\n")
		}, 200, "data: x\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			_, err := Connect(t.Context(), srv.URL, Options{Reconnect: true})
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("Connect = %v, want *StatusError", err)
			}
			if se.StatusCode != tt.status || string(se.Body) != tt.body {
				t.Errorf("StatusError %d %q, want %d %q", se.StatusCode, se.Body, tt.status, tt.body)
			}
		})
	}
}

func TestStreamRetriesNetworkErrors(t *testing.T) {
	sc := &script{responses: []func(http.ResponseWriter, *http.Request){sends("id: 1\ndata: a\n\n", false)}}
	srv := httptest.NewServer(sc)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	s, err := Connect(ctx, srv.URL, Options{Reconnect: true, ReconnectDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	next(t, s)
	srv.Close() // every reconnection now fails to connect
	if _, err := s.Next(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want the context's deadline", err)
	}
}

func TestStreamHTTP2Cleartext(t *testing.T) {
	sc := &script{responses: []func(http.ResponseWriter, *http.Request){
		func(w http.ResponseWriter, r *http.Request) {
			sends(fmt.Sprintf("id: 1\ndata: %s\n\n", r.Proto), false)(w, r)
		},
	}}
	srv := httptest.NewUnstartedServer(sc)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	s, err := Connect(t.Context(), srv.URL, Options{Client: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ev := next(t, s); ev.Data != "HTTP/2.0" {
		t.Errorf("server saw %q, want HTTP/2.0", ev.Data)
	}
	if p := s.Response().ProtoMajor; p != 2 {
		t.Errorf("response protocol major %d", p)
	}
}

func TestStreamCutDropsBuffered(t *testing.T) {
	sc := &script{responses: []func(http.ResponseWriter, *http.Request){
		sends("id: 1\ndata: a\n\nid: 2\ndata: b\n\n", true),
		sends("id: 2\ndata: b again\n\n", true),
	}}
	srv := httptest.NewServer(sc)
	defer srv.Close()
	s, err := Connect(t.Context(), srv.URL, Options{Reconnect: true, ReconnectDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ev := next(t, s); ev.ID != "1" {
		t.Fatalf("first event %+v", ev)
	}
	s.Cut() // event 2 has arrived in the same read, but is lost with the cut
	if ev := next(t, s); ev.Data != "b again" {
		t.Fatalf("after cut: %+v", ev)
	}
	if diff := cmp.Diff([]string{"", "1"}, sc.lastEventIDs()); diff != "" {
		t.Errorf("Last-Event-ID sent (-want +got):\n%s", diff)
	}
}
