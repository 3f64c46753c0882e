package etcdstore

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkBatches measures turning one watch response of 1000 events (500
// revisions of two events) into kv batches.
func BenchmarkBatches(b *testing.B) {
	evs := make([]*clientv3.Event, 1000)
	for i := range evs {
		rev := int64(i/2 + 2)
		evs[i] = &clientv3.Event{Type: mvccpb.PUT,
			Kv:     &mvccpb.KeyValue{Key: fmt.Appendf(nil, "key/%d", i), Value: []byte("value"), CreateRevision: 2, ModRevision: rev, Version: 3},
			PrevKv: &mvccpb.KeyValue{Key: fmt.Appendf(nil, "key/%d", i), Value: []byte("old"), CreateRevision: 2, ModRevision: rev - 1, Version: 2}}
	}
	b.ReportAllocs()
	for b.Loop() {
		if bs, err := batches(evs); err != nil || len(bs) != 500 {
			b.Fatal(len(bs), err)
		}
	}
}
