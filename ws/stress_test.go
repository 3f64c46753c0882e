package ws

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/watchhub"
)

// TestStress runs clients that watch, cancel and close at random while
// keys are written, under -race, and checks the per-watch protocol on
// every socket: created before anything else, nothing between an end and
// the next created, events in revision order, and that every socket and
// stream is gone afterwards (goleak checks the goroutines).
func TestStress(t *testing.T) {
	ts := newTestServer(t, Options{ProgressInterval: 20 * time.Millisecond, Stream: streamOptionsSmall})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	stopWrites := make(chan struct{})
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		for i := 0; ; i++ {
			select {
			case <-stopWrites:
				return
			default:
			}
			if _, err := ts.store.Put(ctx, fmt.Appendf(nil, "k/%d", i%20), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Errorf("put: %v", err)
				return
			}
		}
	}()

	var wg sync.WaitGroup
	for cl := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := stressClient(ctx, ts, uint64(cl)); err != nil {
				t.Errorf("client %d: %v", cl, err)
			}
		}()
	}
	wg.Wait()
	close(stopWrites)
	writer.Wait()
	waitFor(t, "every socket to close", func() bool { return ts.h.Connections() == 0 })
	waitFor(t, "every stream to close", func() bool { return ts.hub.Stats().Streams == 0 })
}

// stressClient runs a few connections that each send 200 random ops,
// reading concurrently, and checks what it reads.
func stressClient(ctx context.Context, ts *testServer, seed uint64) error {
	rnd := rand.New(rand.NewPCG(seed, 1))
	for conn := range 3 {
		c, _, err := websocket.Dial(ctx, ts.url, &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			return err
		}
		c.SetReadLimit(-1)
		readErr := make(chan error, 1)
		go func() { readErr <- checkStream(ctx, c) }()
		for range 200 {
			id := fmt.Sprintf("w%d", rnd.IntN(8))
			var msg string
			switch rnd.IntN(5) {
			case 0, 1:
				msg = fmt.Sprintf(`{"op":"watch","id":%q,"key":"k/","prefix":true,"prev_kv":%t}`, id, rnd.IntN(2) == 0)
			case 2:
				rev, _ := ts.store.Revisions()
				msg = fmt.Sprintf(`{"op":"watch","id":%q,"key":"k/%d","rev":%d}`, id, rnd.IntN(20), max(1, rev-int64(rnd.IntN(50))))
			case 3:
				msg = fmt.Sprintf(`{"op":"cancel","id":%q}`, id)
			default:
				msg = []string{`{"op":"progress"}`, `{"op":"ping"}`, `{"op":"watch"}`}[rnd.IntN(3)]
			}
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				return err
			}
		}
		if conn == 2 {
			c.CloseNow() // abruptly
		} else {
			c.Close(websocket.StatusNormalClosure, "")
		}
		if err := <-readErr; err != nil {
			return err
		}
	}
	return nil
}

// checkStream reads until the connection ends and checks the per-watch
// protocol.
func checkStream(ctx context.Context, c *websocket.Conn) error {
	type state struct {
		active bool
		rev    int64
	}
	watches := map[string]*state{}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			return nil // closed
		}
		m, err := decodeMessage(b)
		if err != nil {
			return err
		}
		w := watches[m.ID]
		switch m.Type {
		case TypeCreated:
			if w != nil && w.active {
				return fmt.Errorf("created %s while active", m.ID)
			}
			watches[m.ID] = &state{active: true}
		case TypeEvents:
			if w == nil || !w.active {
				return fmt.Errorf("events for inactive watch %s", m.ID)
			}
			for _, e := range m.Events {
				if e.KV.ModRevision < w.rev || e.KV.ModRevision > m.Revision {
					return fmt.Errorf("watch %s: event at %d after %d, in a message completing %d", m.ID, e.KV.ModRevision, w.rev, m.Revision)
				}
				w.rev = e.KV.ModRevision
			}
			w.rev = max(w.rev, m.Revision)
		case TypeCanceled, TypeCompacted:
			if w == nil || !w.active {
				return fmt.Errorf("%s for inactive watch %s", m.Type, m.ID)
			}
			w.active = false
		case TypeError:
			if m.Error == nil || m.Error.Status < 400 || m.Error.Status > 499 {
				return fmt.Errorf("error %s", b)
			}
		case TypeProgress, TypePong:
		default:
			return fmt.Errorf("unexpected %s", b)
		}
	}
}

// streamOptionsSmall makes the hub's queue tiny, so that victims and
// catch-up from history happen all the time.
var streamOptionsSmall = watchhub.StreamOptions{MaxQueueResponses: 4, MaxQueueBytes: 4096, MaxPendingBytes: 8192}
