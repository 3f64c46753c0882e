package etcdstore

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/watchgate/watchgate/kv"
)

func TestBatches(t *testing.T) {
	put := func(k string, rev, create, ver int64, prev *mvccpb.KeyValue) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(k), Value: []byte("v"),
			CreateRevision: create, ModRevision: rev, Version: ver}, PrevKv: prev}
	}
	del := func(k string, rev int64, prev *mvccpb.KeyValue) *clientv3.Event {
		return &clientv3.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(k), ModRevision: rev}, PrevKv: prev}
	}
	prevA := &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("old"), CreateRevision: 2, ModRevision: 2, Version: 1}
	got, err := batches([]*clientv3.Event{
		put("a", 3, 2, 2, prevA),
		put("b", 4, 4, 1, nil), del("a", 4, prevA), put("c", 4, 4, 1, nil),
		del("b", 6, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	pa := &kv.KeyValue{Key: []byte("a"), Value: []byte("old"), CreateRevision: 2, ModRevision: 2, Version: 1}
	want := []kv.Batch{
		{Revision: 3, Events: []kv.Event{{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("a"), Value: []byte("v"), CreateRevision: 2, ModRevision: 3, Version: 2}, PrevKV: pa}}},
		{Revision: 4, Events: []kv.Event{
			{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("b"), Value: []byte("v"), CreateRevision: 4, ModRevision: 4, Version: 1}},
			{Type: kv.EventDelete, KV: kv.KeyValue{Key: []byte("a"), ModRevision: 4}, Sub: 1, PrevKV: pa},
			{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("c"), Value: []byte("v"), CreateRevision: 4, ModRevision: 4, Version: 1}, Sub: 2},
		}},
		{Revision: 6, Events: []kv.Event{{Type: kv.EventDelete, KV: kv.KeyValue{Key: []byte("b"), ModRevision: 6}}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
	if _, err := batches([]*clientv3.Event{put("a", 5, 5, 1, nil), put("b", 4, 4, 1, nil)}); err == nil {
		t.Error("events out of order: no error")
	}
	if _, err := batches([]*clientv3.Event{{Type: mvccpb.PUT}}); err == nil {
		t.Error("event without a key-value: no error")
	}
	if got, err := batches(nil); err != nil || got != nil {
		t.Errorf("batches(nil) = %v, %v", got, err)
	}
}

// TestMissingKeyHolds checks the compares decided without etcd against
// etcd's rule, which kv follows: a missing key has version, create and mod
// revision 0, and fails every value compare.
func TestMissingKeyHolds(t *testing.T) {
	for _, tc := range []struct {
		target kv.CompareTarget
		op     kv.CompareOp
		n      int64
		want   bool
	}{
		{kv.CompareVersion, kv.CompareEqual, 0, true},
		{kv.CompareVersion, kv.CompareEqual, 1, false},
		{kv.CompareCreate, kv.CompareNotEqual, 0, false},
		{kv.CompareCreate, kv.CompareNotEqual, 3, true},
		{kv.CompareMod, kv.CompareLess, 1, true},
		{kv.CompareMod, kv.CompareLess, 0, false},
		{kv.CompareMod, kv.CompareGreater, -1, true},
		{kv.CompareVersion, kv.CompareGreater, 0, false},
		{kv.CompareValue, kv.CompareEqual, 0, false},
		{kv.CompareValue, kv.CompareNotEqual, 0, false},
		{kv.CompareValue, kv.CompareLess, 0, false},
		{kv.CompareValue, kv.CompareGreater, 0, false},
	} {
		c := kv.Compare{Target: tc.target, Op: tc.op, Number: tc.n}
		if got := missingKeyHolds(&c); got != tc.want {
			t.Errorf("missingKeyHolds(target %d, op %d, %d) = %v, want %v", tc.target, tc.op, tc.n, got, tc.want)
		}
	}
	cmps, never := etcdCompares([]kv.Compare{{Key: []byte("a"), Target: kv.CompareMod, Op: kv.CompareGreater, Number: 1},
		{Target: kv.CompareVersion, Op: kv.CompareEqual}})
	if never || len(cmps) != 1 {
		t.Errorf("a true compare on the empty key: %d compares sent, never %v; want 1, false", len(cmps), never)
	}
	if _, never := etcdCompares([]kv.Compare{{Target: kv.CompareValue}}); !never {
		t.Error("a value compare on the empty key does not make the condition false")
	}
}

func TestEtcdOpsSkipsEmptyKeyGet(t *testing.T) {
	ops, idx := etcdOps([]kv.Op{
		{Type: kv.OpGet},
		{Type: kv.OpPut, Key: []byte("a"), Value: []byte("1")},
		{Type: kv.OpGet, End: []byte{0}},
		{Type: kv.OpDelete, Key: []byte("a"), End: []byte("b")},
	})
	if diff := cmp.Diff([]int{-1, 0, 1, 2}, idx); diff != "" || len(ops) != 3 {
		t.Errorf("%d ops, indexes (-want +got):\n%s", len(ops), diff)
	}
	if k := string(ops[1].KeyBytes()); k != "\x00" || string(ops[1].RangeBytes()) != "\x00" {
		t.Errorf("get of every key sent as [%q, %q)", k, ops[1].RangeBytes())
	}
}
