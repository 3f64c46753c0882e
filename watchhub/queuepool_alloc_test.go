//go:build !race

// The race detector makes sync.Pool drop some of what it is given, so
// allocations are counted without it.

package watchhub

import (
	"testing"

	"github.com/watchgate/watchgate/kv"
)

// TestDeliveryAllocs checks that a steady flow of one event to each of
// many single-watch streams allocates no queue array per stream: neither
// for a transport that releases every drained array (and so holds none
// while idle) nor for one that drains into its previous array.
func TestDeliveryAllocs(t *testing.T) {
	const streams = 200
	tests := []struct {
		name  string
		drain func(s *Stream, buf []Response) []Response // returns what the transport keeps
	}{
		{"release", func(s *Stream, buf []Response) []Response {
			got := s.Drain(nil)
			if len(got) != 1 {
				t.Fatalf("%d responses", len(got))
			}
			s.Release(got)
			return nil
		}},
		{"keep", func(s *Stream, buf []Response) []Response {
			got := s.Drain(buf[:0])
			if len(got) != 1 {
				t.Fatalf("%d responses", len(got))
			}
			clear(got)
			return got
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t, kv.Options{})
			h := newHub(t, st, Options{})
			ss := make([]*Stream, streams)
			bufs := make([][]Response, streams)
			for i := range ss {
				ss[i] = hotStream(t, h, 1)
			}
			batch := []kv.Batch{{Events: make([]kv.Event, 1)}}
			rev := h.Revision()
			deliver := func() {
				rev++
				batch[0].Revision = rev
				batch[0].Events[0] = kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("hot"), Value: []byte("v"), CreateRevision: 2, ModRevision: rev, Version: 2}}
				h.notify(batch)
				for i, s := range ss {
					bufs[i] = tt.drain(s, bufs[i])
				}
			}
			allocs := testing.AllocsPerRun(50, deliver)
			// notify's own (the commit's events and their wrappers) and the
			// pools' bookkeeping, far from one a stream.
			if allocs > streams/10 {
				t.Fatalf("%.1f allocations for one event to %d streams", allocs, streams)
			}
			for i, s := range ss {
				if c := queueCapacity(s); c != 0 {
					t.Fatalf("stream %d: idle queue holds an array of %d", i, c)
				}
			}
			t.Logf("%.1f allocations a delivery to %d streams", allocs, streams)
		})
	}
}
