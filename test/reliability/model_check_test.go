package reliability

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/watchgate/watchgate/kv"
)

// TestModelCatchesViolations runs the linearizability check on small
// hand-made histories: the correct ones must pass and each broken one must
// fail, so that a passing run means something.
func TestModelCatchesViolations(t *testing.T) {
	init := newStoreState(1, map[string]kvRec{})
	put := func(c int, call, ret int64, key, value string, status int, rev, create, version int64) *op {
		return &op{Client: c, Call: call, Return: ret, In: opInput{Kind: opPut, Key: key, Value: value},
			Out: opOutput{Status: status, Rev: rev, KV: &kvRec{Key: key, CreateRevision: create, ModRevision: rev, Version: version}}}
	}
	get := func(c int, call, ret int64, key, value string, rev, mod, create, version int64) *op {
		o := &op{Client: c, Call: call, Return: ret, In: opInput{Kind: opGet, Key: key}, Out: opOutput{Status: 404, Rev: rev}}
		if value != "" {
			o.Out.Status = 200
			o.Out.KV = &kvRec{Key: key, Value: value, HasValue: true, CreateRevision: create, ModRevision: mod, Version: version}
		}
		return o
	}
	unknown := func(o *op) *op {
		o.Return, o.Out = -1, opOutput{Unknown: true}
		return o
	}
	cas := func(c int, call, ret int64, key, value string, match int64, status int, rev int64) *op {
		o := &op{Client: c, Call: call, Return: ret, In: opInput{Kind: opPut, Key: key, Value: value, Cond: condIfMatch, Match: match},
			Out: opOutput{Status: status, Rev: rev}}
		if status == 200 {
			o.Out.KV = &kvRec{Key: key, CreateRevision: 2, ModRevision: rev, Version: rev - 1}
		}
		return o
	}
	tests := []struct {
		name string
		ops  []*op
		ok   bool
	}{
		{"sequential", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			get(1, 20, 30, "a", "1", 2, 2, 2, 1),
			put(0, 40, 50, "a", "2", 200, 3, 2, 2),
			get(1, 60, 70, "a", "2", 3, 3, 2, 2),
		}, true},
		{"concurrent read sees either", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			put(0, 20, 50, "a", "2", 200, 3, 2, 2),
			get(1, 25, 30, "a", "1", 2, 2, 2, 1),
			get(2, 26, 31, "a", "2", 3, 3, 2, 2),
		}, true},
		{"stale read", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			put(0, 20, 30, "a", "2", 200, 3, 2, 2),
			get(1, 40, 50, "a", "1", 2, 2, 2, 1),
		}, false},
		{"read of a lost write", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			get(1, 20, 30, "a", "", 1, 0, 0, 0),
		}, false},
		{"revision reused", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			put(1, 20, 30, "b", "1", 201, 2, 2, 1),
		}, false},
		{"revision skipped", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			put(1, 20, 30, "b", "1", 201, 4, 4, 1),
		}, false},
		{"unknown write seen later", []*op{
			unknown(put(0, 0, 10, "a", "1", 0, 0, 0, 0)),
			get(1, 20, 30, "a", "1", 2, 2, 2, 1),
		}, true},
		{"unknown write never seen", []*op{
			unknown(put(0, 0, 10, "a", "1", 0, 0, 0, 0)),
			get(1, 20, 30, "a", "", 1, 0, 0, 0),
		}, true},
		{"unknown write seen, then gone", []*op{
			unknown(put(0, 0, 10, "a", "1", 0, 0, 0, 0)),
			get(1, 20, 30, "a", "1", 2, 2, 2, 1),
			get(1, 40, 50, "a", "", 2, 0, 0, 0),
		}, false},
		{"compare-and-swap", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			cas(0, 20, 30, "a", "2", 2, 200, 3),
			func() *op {
				o := cas(1, 40, 50, "a", "3", 2, 412, 3)
				o.Out.KV = &kvRec{Key: "a", Value: "2", HasValue: true, CreateRevision: 2, ModRevision: 3, Version: 2}
				return o
			}(),
		}, true},
		{"failed swap shows a stale kv", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			cas(0, 20, 30, "a", "2", 2, 200, 3),
			func() *op {
				o := cas(1, 40, 50, "a", "3", 2, 412, 3)
				o.Out.KV = &kvRec{Key: "a", Value: "1", HasValue: true, CreateRevision: 2, ModRevision: 2, Version: 1}
				return o
			}(),
		}, false},
		{"two swaps from one version", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			cas(0, 20, 30, "a", "2", 2, 200, 3),
			cas(1, 20, 30, "a", "3", 2, 200, 4),
		}, false},
		{"transaction is atomic", []*op{
			{Client: 0, Call: 0, Return: 10, In: opInput{Kind: opTxn,
				Success: []txnOp{{Type: kv.OpPut, Key: "a", Value: "1"}, {Type: kv.OpPut, Key: "b", Value: "1"}}},
				Out: opOutput{Status: 200, Rev: 2, Succeeded: true}},
			get(1, 5, 7, "a", "1", 2, 2, 2, 1),
			get(1, 8, 9, "b", "", 1, 0, 0, 0),
		}, false},
		{"range sees a whole revision", []*op{
			{Client: 0, Call: 0, Return: 10, In: opInput{Kind: opTxn,
				Success: []txnOp{{Type: kv.OpPut, Key: "a", Value: "1"}, {Type: kv.OpPut, Key: "b", Value: "1"}}},
				Out: opOutput{Status: 200, Rev: 2, Succeeded: true}},
			{Client: 1, Call: 5, Return: 8, In: opInput{Kind: opRange, Key: ""}, Out: opOutput{Status: 200, Rev: 2, KVs: []kvRec{
				{Key: "a", Value: "1", HasValue: true, CreateRevision: 2, ModRevision: 2, Version: 1},
				{Key: "b", Value: "1", HasValue: true, CreateRevision: 2, ModRevision: 2, Version: 1}}}},
		}, true},
		{"delete", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			{Client: 0, Call: 20, Return: 30, In: opInput{Kind: opDelete, Key: "a"}, Out: opOutput{Status: 200, Rev: 3, Deleted: 1}},
			{Client: 1, Call: 40, Return: 50, In: opInput{Kind: opDelete, Key: "a"}, Out: opOutput{Status: 404, Rev: 3}},
			put(0, 60, 70, "a", "2", 201, 4, 4, 1),
		}, true},
		{"version not reset by delete", []*op{
			put(0, 0, 10, "a", "1", 201, 2, 2, 1),
			{Client: 0, Call: 20, Return: 30, In: opInput{Kind: opDelete, Key: "a"}, Out: opOutput{Status: 200, Rev: 3, Deleted: 1}},
			put(0, 60, 70, "a", "2", 200, 4, 2, 2),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checkLinearizable(init, tt.ops, 10*time.Second)
			switch {
			case res.result == porcupine.Unknown:
				t.Fatal("check timed out")
			case tt.ok && res.result != porcupine.Ok:
				t.Fatalf("linearizable history rejected:\n%s", res)
			case !tt.ok && res.result != porcupine.Illegal:
				t.Fatal("broken history accepted")
			case !tt.ok && !strings.Contains(res.String(), "cannot follow"):
				t.Fatalf("failure does not name the operation that cannot follow:\n%s", res)
			}
		})
	}
}

// TestResolveUnknown checks how requests whose answers were lost are
// settled from the history.
func TestResolveUnknown(t *testing.T) {
	batches := []kv.Batch{
		{Revision: 2, Events: []kv.Event{{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("a"), Value: []byte("v1"), CreateRevision: 2, ModRevision: 2, Version: 1}}}},
		{Revision: 3, Events: []kv.Event{{Type: kv.EventDelete, KV: kv.KeyValue{Key: []byte("a"), ModRevision: 3}}}},
	}
	values, err := valueIndex(batches)
	if err != nil {
		t.Fatal(err)
	}
	lost := func(in opInput) *op { return &op{Return: -1, In: in, Out: opOutput{Unknown: true}} }
	ops := []*op{
		lost(opInput{Kind: opPut, Key: "a", Value: "v1"}),
		lost(opInput{Kind: opPut, Key: "a", Value: "never"}),
		lost(opInput{Kind: opDelete, Key: "a"}),
		lost(opInput{Kind: opDelete, Key: "b"}),
	}
	got := resolveUnknown(ops, batches, values, map[int64]bool{}, 1, 3)
	if len(got) != 2 {
		t.Fatalf("%d requests kept, want the put of v1 and the delete of a", len(got))
	}
	if o := got[0]; o.Out.Unknown || o.Out.Rev != 2 || o.Out.Status != 201 || o.In.Value != "v1" {
		t.Fatalf("put settled as %s", o)
	}
	if o := got[1]; o.Out.Unknown || o.Out.Rev != 3 || o.Out.Deleted != 1 || o.In.Key != "a" {
		t.Fatalf("delete settled as %s", o)
	}
}
