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
// queue's array is grown again by the burst. cpu-ns/delivery is the
// process's CPU time, steadier than the wall time on a shared machine.
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
				deliver := hotDeliverer(h)
				b.ReportAllocs()
				cpu0 := processCPU(b)
				for b.Loop() {
					deliver()
					if mode == "after-idle" {
						buf = nil
					}
					buf = s.Drain(buf[:0])
					if len(buf) != watches {
						b.Fatalf("%d responses, want %d", len(buf), watches)
					}
					clear(buf)
				}
				d := float64(b.N * watches)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/d, "ns/delivery")
				b.ReportMetric(float64(processCPU(b)-cpu0)/d, "cpu-ns/delivery")
			})
		}
	}
}

// BenchmarkStreamDeliver measures one write to 1,000 streams of one
// watch each (SSE streams), the hub's side: the commit handed to the hub,
// one response queued on each stream, each stream drained. "keep" drains
// into the stream's previous array (each transport keeps one while
// idle); "release" drains with Drain(nil) and gives the array back with
// Release (an idle transport keeps none).
func BenchmarkStreamDeliver(b *testing.B) {
	const streams = 1000
	for _, mode := range []string{"keep", "release"} {
		b.Run(fmt.Sprintf("streams=%d/%s", streams, mode), func(b *testing.B) {
			st := openStore(b, kv.Options{})
			h := newHub(b, st, Options{})
			ss := make([]*Stream, streams)
			bufs := make([][]Response, streams)
			for i := range ss {
				ss[i] = newStream(b, h, StreamOptions{})
				watch(b, ss[i], WatchRequest{ID: "w", Key: []byte("hot")})
				bufs[i] = ss[i].Drain(nil)
				clear(bufs[i])
			}
			deliver := hotDeliverer(h)
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				deliver()
				for i, s := range ss {
					var got []Response
					if mode == "keep" {
						got = s.Drain(bufs[i][:0])
					} else {
						got = s.Drain(nil)
					}
					if len(got) != 1 {
						b.Fatalf("%d responses, want 1", len(got))
					}
					if mode == "keep" {
						clear(got)
						bufs[i] = got
					} else {
						releaseResponses(s, got)
					}
				}
			}
			d := float64(b.N * streams)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/d, "ns/delivery")
			b.ReportMetric(float64(processCPU(b)-cpu0)/d, "cpu-ns/delivery")
		})
	}
}

// hotDeliverer returns a function that hands h one commit of the key
// "hot" at the next revision, as the store's feed does.
func hotDeliverer(h *Hub) func() {
	batch := []kv.Batch{{Events: make([]kv.Event, 1)}}
	rev := h.Revision()
	return func() {
		rev++
		batch[0].Revision = rev
		batch[0].Events[0] = kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("hot"), Value: []byte("v"), CreateRevision: 2, ModRevision: rev, Version: 2}}
		h.notify(batch)
	}
}

// releaseResponses gives a drained array back.
func releaseResponses(s *Stream, rs []Response) { s.Release(rs) }
