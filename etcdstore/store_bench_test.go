package etcdstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/kv"
)

// BenchmarkStore measures the gateway against a local three-member cluster
// (fsync on, loopback): a put through the store (acknowledged by etcd and
// delivered by the gateway's feed) against the same put with the bare etcd
// client, and history reads through a watch.
func BenchmarkStore(b *testing.B) {
	c := etcdtest.Start(b, etcdtest.Options{})
	s := openStore(b, c, testOptions(c))
	cli := c.Client()
	ctx := context.Background()
	value := []byte("0123456789abcdef0123456789abcdef")

	b.Run("put", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := s.Put(ctx, fmt.Appendf(nil, "put/%d", i%1000), value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put-bare-client", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := cli.Put(ctx, fmt.Sprintf("bare/%d", i%1000), string(value)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("put-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Put(ctx, fmt.Appendf(nil, "par/%d", n.Add(1)%1000), value); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("range-prefix-100", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := s.Range(ctx, kv.RangeRequest{Key: []byte("put/"), End: kv.PrefixEnd([]byte("put/")), Limit: 100})
			if err != nil || len(res.KVs) != 100 {
				b.Fatalf("Range: %d kvs, %v", len(res.KVs), err)
			}
		}
	})
	rev, _ := s.Revisions()
	b.Run("history-1000-revisions", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bs, _, err := s.History(ctx, rev-999, rev, 0)
			if err != nil || len(bs) != 1000 {
				b.Fatalf("History: %d revisions, %v", len(bs), err)
			}
		}
	})
}
