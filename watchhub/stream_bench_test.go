package watchhub

import (
	"fmt"
	"testing"

	"github.com/watchgate/watchgate/kv"
)

// BenchmarkStreamBurst measures the hub's side of one write to every
// watch of a stream (a WebSocket with many watches of one key): the
// commit handed to the hub, the responses queued, the queue drained.
// "steady" drains into the array of the previous drain, as a busy
// transport does; "after-idle" hands back no array, as a transport that
// gave its array up after being idle (ws shrinks after a second), so the
// queue's array is grown again by the burst.
func BenchmarkStreamBurst(b *testing.B) {
	for _, watches := range []int{1000, 10_000} {
		for _, mode := range []string{"steady", "after-idle"} {
			b.Run(fmt.Sprintf("watches=%d/%s", watches, mode), func(b *testing.B) {
				st := openStore(b, kv.Options{})
				h := newHub(b, st, Options{})
				s := newStream(b, h, StreamOptions{MaxQueueResponses: 2 * watches, MaxQueueBytes: 1 << 30})
				for i := range watches {
					watch(b, s, WatchRequest{ID: fmt.Sprint(i), Key: []byte("hot")})
				}
				var buf []Response
				buf = s.Drain(buf[:0])
				clear(buf)
				batch := []kv.Batch{{Events: make([]kv.Event, 1)}}
				rev := h.Revision()
				b.ReportAllocs()
				for b.Loop() {
					rev++
					batch[0].Revision = rev
					batch[0].Events[0] = kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("hot"), Value: []byte("v"), CreateRevision: 2, ModRevision: rev, Version: 2}}
					h.notify(batch)
					if mode == "after-idle" {
						buf = nil
					}
					buf = s.Drain(buf[:0])
					if len(buf) != watches {
						b.Fatalf("%d responses, want %d", len(buf), watches)
					}
					clear(buf)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*watches), "ns/delivery")
			})
		}
	}
}
