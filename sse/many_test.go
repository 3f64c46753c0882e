package sse

import (
	"fmt"
	"sync"
	"testing"

	"github.com/watchgate/watchgate/internal/sseclient"
)

// TestManyStreamsOneConnection opens 1,000 watch streams over one HTTP/2
// connection and checks that one write reaches every one of them.
func TestManyStreamsOneConnection(t *testing.T) {
	e := newEnv(t, Options{})
	const n = 1000
	streams := make([]*sseclient.Stream, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range streams {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			url := e.url("m/x", "")
			if i%2 == 1 {
				url = e.url("m/", "prefix=true")
			}
			streams[i] = connect(t, e.h2, url, sseclient.Options{})
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if got := e.conns.Load(); got != 1 {
		t.Errorf("%d connections for %d streams, want 1", got, n)
	}
	if got := e.h.Streams(); got != n {
		t.Errorf("Streams() = %d, want %d", got, n)
	}
	rev := e.put(t, "m/x", "hello")
	errs := make(chan error, n)
	for _, s := range streams {
		go func() {
			ev, err := s.Next()
			if err == nil && (ev.ID != fmt.Sprint(rev) || ev.Type != "put") {
				err = fmt.Errorf("got %+v", ev)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if r := streams[0].Response(); r.ProtoMajor != 2 {
		t.Errorf("protocol %s", r.Proto)
	}
}
