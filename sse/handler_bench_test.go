package sse

import (
	"context"
	"fmt"
	"testing"

	"github.com/watchgate/watchgate/internal/sseclient"
	"github.com/watchgate/watchgate/kv"
)

// BenchmarkFanout measures one write reaching n SSE streams on one HTTP/2
// connection, end to end on loopback: store commit (without fsync), hub,
// encoding, write and flush, client parse. One op is one write received
// by every stream.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			e := newEnvStore(b, Options{}, kv.Options{NoSync: true})
			got := make([]chan struct{}, n)
			for i := range got {
				got[i] = make(chan struct{}, 1024)
				s := connect(b, e.h2, e.url("bench/", "prefix=true"), sseclient.Options{})
				go func() {
					for {
						if _, err := s.Next(); err != nil {
							return
						}
						got[i] <- struct{}{}
					}
				}()
			}
			value := make([]byte, 100)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := e.store.Put(ctx, []byte("bench/k"), value); err != nil {
					b.Fatal(err)
				}
				for _, c := range got {
					<-c
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
