package etcdstore

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/watchgate/watchgate/kv"
)

// etcdRange maps a kv key range to etcd's: etcd refuses the empty key, so
// a range that starts at the empty key starts at "\x00" instead (the same
// keys, since the empty key can hold nothing). none reports a range of the
// single empty key, which selects nothing.
func etcdRange(key, end []byte) (k string, opts []clientv3.OpOption, none bool) {
	if len(end) == 0 {
		if len(key) == 0 {
			return "", nil, true
		}
		return string(key), nil, false
	}
	if len(key) == 0 {
		key = []byte{0}
	}
	// []byte{0} is etcd's "every key from key on", as in kv.
	return string(key), []clientv3.OpOption{clientv3.WithRange(string(end))}, false
}

// keyValue converts an etcd key-value. The slices are shared, not copied:
// they belong to a decoded message nobody else holds or modifies.
func keyValue(p *mvccpb.KeyValue) kv.KeyValue {
	return kv.KeyValue{
		Key:            p.Key,
		Value:          p.Value,
		CreateRevision: p.CreateRevision,
		ModRevision:    p.ModRevision,
		Version:        p.Version,
	}
}

func keyValuePtr(p *mvccpb.KeyValue) *kv.KeyValue {
	if p == nil {
		return nil
	}
	k := keyValue(p)
	return &k
}

func keyValues(ps []*mvccpb.KeyValue) []kv.KeyValue {
	if len(ps) == 0 {
		return nil
	}
	out := make([]kv.KeyValue, len(ps))
	for i, p := range ps {
		out[i] = keyValue(p)
	}
	return out
}

// batches groups etcd watch events, which come in revision order, into one
// kv.Batch per revision, numbering each revision's events 0, 1, 2, ... in
// the order etcd gives them (its sub-revision order).
func batches(evs []*clientv3.Event) ([]kv.Batch, error) {
	var out []kv.Batch
	for _, e := range evs {
		if e.Kv == nil {
			return nil, fmt.Errorf("etcdstore: watch event without a key-value")
		}
		rev := e.Kv.ModRevision
		if n := len(out); n == 0 || out[n-1].Revision != rev {
			if n > 0 && rev < out[n-1].Revision {
				return nil, fmt.Errorf("etcdstore: watch events out of order: revision %d after %d", rev, out[n-1].Revision)
			}
			out = append(out, kv.Batch{Revision: rev})
		}
		b := &out[len(out)-1]
		ev := kv.Event{KV: keyValue(e.Kv), Sub: int32(len(b.Events)), PrevKV: keyValuePtr(e.PrevKv)}
		if e.Type == mvccpb.DELETE {
			ev.Type = kv.EventDelete
			ev.KV = kv.KeyValue{Key: e.Kv.Key, ModRevision: rev}
		}
		b.Events = append(b.Events, ev)
	}
	return out, nil
}

// compareOps are etcd's spellings of kv's compare operators.
var compareOps = [...]string{kv.CompareEqual: "=", kv.CompareNotEqual: "!=", kv.CompareLess: "<", kv.CompareGreater: ">"}

// etcdCompares maps kv compares to etcd's. A compare on the empty key,
// which etcd refuses, is decided here as kv decides it (a missing key:
// version, create and mod revision 0, every value compare false): a true
// one is dropped, a false one makes the whole condition false.
func etcdCompares(cs []kv.Compare) (out []clientv3.Cmp, alwaysFalse bool) {
	for i := range cs {
		c := &cs[i]
		if len(c.Key) == 0 {
			if !missingKeyHolds(c) {
				return nil, true
			}
			continue
		}
		k := string(c.Key)
		op := compareOps[c.Op]
		switch c.Target {
		case kv.CompareVersion:
			out = append(out, clientv3.Compare(clientv3.Version(k), op, c.Number))
		case kv.CompareCreate:
			out = append(out, clientv3.Compare(clientv3.CreateRevision(k), op, c.Number))
		case kv.CompareMod:
			out = append(out, clientv3.Compare(clientv3.ModRevision(k), op, c.Number))
		case kv.CompareValue:
			out = append(out, clientv3.Compare(clientv3.Value(k), op, string(c.Value)))
		}
	}
	return out, false
}

// missingKeyHolds evaluates a compare on a key that does not exist.
func missingKeyHolds(c *kv.Compare) bool {
	if c.Target == kv.CompareValue {
		return false
	}
	switch c.Op {
	case kv.CompareEqual:
		return c.Number == 0
	case kv.CompareNotEqual:
		return c.Number != 0
	case kv.CompareLess:
		return 0 < c.Number
	default:
		return 0 > c.Number
	}
}

// etcdOps maps a branch of kv operations to etcd's. Puts and deletes ask
// for the previous key-values, which the kv results carry. A get of the
// single empty key, which etcd refuses and which selects nothing, is not
// sent: its index in idx is -1; idx[i] is otherwise the index of ops[i] in
// out.
func etcdOps(ops []kv.Op) (out []clientv3.Op, idx []int) {
	out = make([]clientv3.Op, 0, len(ops))
	idx = make([]int, len(ops))
	for i := range ops {
		op := &ops[i]
		k, ropts, none := etcdRange(op.Key, op.End)
		if none {
			idx[i] = -1
			continue
		}
		idx[i] = len(out)
		switch op.Type {
		case kv.OpGet:
			if op.Limit > 0 {
				ropts = append(ropts, clientv3.WithLimit(op.Limit))
			}
			if op.KeysOnly {
				ropts = append(ropts, clientv3.WithKeysOnly())
			}
			if op.CountOnly {
				ropts = append(ropts, clientv3.WithCountOnly())
			}
			out = append(out, clientv3.OpGet(k, ropts...))
		case kv.OpPut:
			out = append(out, clientv3.OpPut(k, string(op.Value), clientv3.WithPrevKV()))
		case kv.OpDelete:
			out = append(out, clientv3.OpDelete(k, append(ropts, clientv3.WithPrevKV())...))
		}
	}
	return out, idx
}
