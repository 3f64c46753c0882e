package reliability

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/watchgate/watchgate/kv"
)

// storeState is the model's state: the whole keyspace and its revision.
// It is immutable: steps return a new state.
type storeState struct {
	rev  int64
	kvs  map[string]kvRec
	hash uint64
	// ranges caches prefixKeys; a state is used by one check at a time.
	ranges map[string][]kvRec
}

func newStoreState(rev int64, kvs map[string]kvRec) *storeState {
	// Order-independent: the sum of the keys' hashes.
	h := uint64(rev) * 0x9e3779b97f4a7c15
	for _, v := range kvs {
		f := fnv.New64a()
		f.Write([]byte(v.Key))
		f.Write([]byte{0})
		// Values are told apart by their first bytes (client and
		// sequence number); hashing all of a large one would cost more
		// than the check.
		f.Write([]byte(v.Value[:min(len(v.Value), 32)]))
		var b [24]byte
		binary.LittleEndian.PutUint64(b[0:], uint64(v.CreateRevision))
		binary.LittleEndian.PutUint64(b[8:], uint64(v.ModRevision))
		binary.LittleEndian.PutUint64(b[16:], uint64(v.Version))
		f.Write(b[:])
		h += f.Sum64()
	}
	return &storeState{rev: rev, kvs: kvs, hash: h}
}

// stateFromRange builds a state from a full read of the keyspace.
func stateFromRange(rev int64, recs []kvRec) *storeState {
	m := make(map[string]kvRec, len(recs))
	for _, r := range recs {
		m[r.Key] = r
	}
	return newStoreState(rev, m)
}

func (s *storeState) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.kvs)) {
		parts = append(parts, s.kvs[k].String())
	}
	return fmt.Sprintf("rev %d {%s}", s.rev, strings.Join(parts, ", "))
}

// prefixKeys returns the state's keys under prefix, sorted bytewise.
func (s *storeState) prefixKeys(prefix string) []kvRec {
	if r, ok := s.ranges[prefix]; ok {
		return r
	}
	out := []kvRec{}
	for k, v := range s.kvs {
		if strings.HasPrefix(k, prefix) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if s.ranges == nil {
		s.ranges = map[string][]kvRec{}
	}
	s.ranges[prefix] = out
	return out
}

// apply runs a transaction's write operations at revision rev on a copy of
// the keyspace. It reports whether anything was written.
func (s *storeState) apply(ops []txnOp, rev int64) (map[string]kvRec, bool) {
	m := maps.Clone(s.kvs)
	wrote := false
	for _, o := range ops {
		switch o.Type {
		case kv.OpPut:
			cur, ok := m[o.Key]
			n := kvRec{Key: o.Key, Value: o.Value, HasValue: true, CreateRevision: rev, ModRevision: rev, Version: 1}
			if ok {
				n.CreateRevision, n.Version = cur.CreateRevision, cur.Version+1
			}
			m[o.Key] = n
			wrote = true
		case kv.OpDelete:
			for k := range m {
				if k == o.Key || (o.Prefix && strings.HasPrefix(k, o.Key)) {
					delete(m, k)
					wrote = true
				}
			}
		}
	}
	return m, wrote
}

// countDeletes is how many keys ops delete from s (keys deleted by several
// operations count once per operation that finds them, as the store does).
func (s *storeState) countDeletes(ops []txnOp) int64 {
	m := maps.Clone(s.kvs)
	var n int64
	for _, o := range ops {
		switch o.Type {
		case kv.OpPut:
			m[o.Key] = kvRec{Key: o.Key}
		case kv.OpDelete:
			for k := range m {
				if k == o.Key || (o.Prefix && strings.HasPrefix(k, o.Key)) {
					delete(m, k)
					n++
				}
			}
		}
	}
	return n
}

// condHolds evaluates a PUT or DELETE precondition.
func (s *storeState) condHolds(in *opInput) bool {
	cur, ok := s.kvs[in.Key]
	switch in.Cond {
	case condIfMatch:
		return ok && cur.ModRevision == in.Match
	case condIfExists:
		return ok
	case condIfAbsent:
		return !ok
	}
	return true
}

// cmpsHold evaluates a transaction's compares.
func (s *storeState) cmpsHold(cmps []txnCmp) bool {
	for _, c := range cmps {
		cur := s.kvs[c.Key] // zero for a missing key, as etcd compares
		v := cur.ModRevision
		if c.Target == "version" {
			v = cur.Version
		}
		if v != c.Num {
			return false
		}
	}
	return true
}

// sameKV compares a response's kv with the model's; the value only when
// the response carries one.
func sameKV(got *kvRec, want kvRec) bool {
	return got.Key == want.Key && got.CreateRevision == want.CreateRevision && got.ModRevision == want.ModRevision &&
		got.Version == want.Version && (!got.HasValue || got.Value == want.Value)
}

func sameKVs(got, want []kvRec) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !sameKV(&got[i], want[i]) || !got[i].HasValue {
			return false
		}
	}
	return true
}

// revisionDelta is how much an answered request moved the revision: 1 for
// a write that changed something, 0 for the rest. The answer's revision
// must be the state's plus it, which rejects most candidate orders at once.
func revisionDelta(in *opInput, out *opOutput) int64 {
	switch in.Kind {
	case opPut:
		if out.Status == 200 || out.Status == 201 {
			return 1
		}
	case opDelete, opDeleteRange:
		if out.Status == 200 && out.Deleted > 0 {
			return 1
		}
	case opTxn:
		for _, o := range in.Success {
			if out.Succeeded && (o.Type == kv.OpPut || out.Deleted > 0) {
				return 1
			}
		}
	}
	return 0
}

// step is the sequential specification of the store.
func step(s *storeState, in *opInput, out *opOutput) (bool, *storeState) {
	if !out.Unknown && out.Rev != s.rev+revisionDelta(in, out) {
		return false, s
	}
	switch in.Kind {
	case opPut:
		ops := []txnOp{{Type: kv.OpPut, Key: in.Key, Value: in.Value}}
		holds := s.condHolds(in)
		if out.Unknown {
			if !holds {
				return true, s
			}
			m, _ := s.apply(ops, s.rev+1)
			return true, newStoreState(s.rev+1, m)
		}
		if out.Status == 412 {
			cur, ok := s.kvs[in.Key]
			return !holds && out.Rev == s.rev && (out.KV == nil) == !ok && (out.KV == nil || sameKV(out.KV, cur)), s
		}
		_, existed := s.kvs[in.Key]
		if !holds || out.Rev != s.rev+1 || (out.Status == 201) == existed {
			return false, s
		}
		m, _ := s.apply(ops, s.rev+1)
		if out.KV == nil || !sameKV(out.KV, m[in.Key]) {
			return false, s
		}
		return true, newStoreState(s.rev+1, m)

	case opDelete, opDeleteRange:
		ops := []txnOp{{Type: kv.OpDelete, Key: in.Key, Prefix: in.Kind == opDeleteRange}}
		holds := s.condHolds(in)
		n := s.countDeletes(ops)
		if out.Unknown {
			if !holds || n == 0 {
				return true, s
			}
			m, _ := s.apply(ops, s.rev+1)
			return true, newStoreState(s.rev+1, m)
		}
		switch out.Status {
		case 412:
			cur, ok := s.kvs[in.Key]
			return !holds && out.Rev == s.rev && (out.KV == nil) == !ok && (out.KV == nil || sameKV(out.KV, cur)), s
		case 404:
			return holds && n == 0 && in.Kind == opDelete && out.Rev == s.rev, s
		}
		if !holds || out.Deleted != n {
			return false, s
		}
		if n == 0 {
			return in.Kind == opDeleteRange && out.Rev == s.rev, s
		}
		if out.Rev != s.rev+1 {
			return false, s
		}
		m, _ := s.apply(ops, s.rev+1)
		return true, newStoreState(s.rev+1, m)

	case opTxn:
		holds := s.cmpsHold(in.Cmps)
		if out.Unknown {
			if !holds {
				return true, s
			}
			m, wrote := s.apply(in.Success, s.rev+1)
			if !wrote {
				return true, s
			}
			return true, newStoreState(s.rev+1, m)
		}
		if out.Succeeded != holds {
			return false, s
		}
		if !holds {
			// The failure branch only reads.
			if out.Rev != s.rev || len(out.Gets) != len(in.Failure) {
				return false, s
			}
			for i, o := range in.Failure {
				want := []kvRec{}
				if cur, ok := s.kvs[o.Key]; ok {
					want = append(want, cur)
				}
				if !sameKVs(out.Gets[i], want) {
					return false, s
				}
			}
			return true, s
		}
		if out.Deleted != s.countDeletes(in.Success) {
			return false, s
		}
		m, wrote := s.apply(in.Success, s.rev+1)
		if !wrote {
			return out.Rev == s.rev, s
		}
		if out.Rev != s.rev+1 {
			return false, s
		}
		return true, newStoreState(s.rev+1, m)

	case opGet:
		if out.Unknown {
			return true, s // a read whose answer is lost changes nothing
		}
		cur, ok := s.kvs[in.Key]
		if out.Rev != s.rev {
			return false, s
		}
		if out.Status == 404 {
			return !ok, s
		}
		return ok && out.KV != nil && out.KV.HasValue && sameKV(out.KV, cur), s

	case opRange:
		if out.Unknown {
			return true, s
		}
		return out.Rev == s.rev && sameKVs(out.KVs, s.prefixKeys(in.Key)), s
	}
	return false, s
}

// storeModel is the porcupine model of the whole store; init is the state
// at the start of the checked history.
func storeModel(init *storeState) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(state, input, output any) (bool, any) {
			return step(state.(*storeState), input.(*opInput), output.(*opOutput))
		},
		Equal: func(a, b any) bool {
			x, y := a.(*storeState), b.(*storeState)
			if x == y {
				return true
			}
			if x.hash != y.hash || x.rev != y.rev || len(x.kvs) != len(y.kvs) {
				return false
			}
			for k, v := range x.kvs {
				if w, ok := y.kvs[k]; !ok || v != w {
					return false
				}
			}
			return true
		},
		Hash: func(state any) uint64 { return state.(*storeState).hash },
		DescribeOperation: func(input, output any) string {
			in, ok1 := input.(*opInput)
			out, ok2 := output.(*opOutput)
			if !ok1 || !ok2 {
				return fmt.Sprint(input, " -> ", output)
			}
			return describeInput(in) + " -> " + describeOutput(out)
		},
		DescribeState: func(state any) string {
			if s, ok := state.(*storeState); ok {
				return s.String()
			}
			return fmt.Sprint(state)
		},
	}
}

// toPorcupine converts recorded operations; one whose answer was lost
// returns at "infinity", after every other operation.
func toPorcupine(ops []*op) []porcupine.Operation {
	var end int64
	for _, o := range ops {
		end = max(end, o.Call, o.Return)
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		ret := o.Return
		if ret < 0 {
			// The answer was lost (its outcome may since have been
			// settled from the history): it returns after everything.
			ret = end + 1
		}
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: &o.In, Call: o.Call, Output: &o.Out, Return: ret})
	}
	return out
}

// linearizability is the verdict on one epoch's operations.
type linearizability struct {
	result porcupine.CheckResult
	// When the history is not linearizable: the state after the longest
	// linearizable prefix found, the last operations of that prefix, the
	// first operation that cannot follow it, and the operations running
	// around it: the shortest history that shows the failure.
	state   *storeState
	prefix  []*op
	culprit *op
	around  []*op
	info    porcupine.LinearizationInfo
}

// checkLinearizable checks ops, which start from init.
func checkLinearizable(init *storeState, ops []*op, timeout time.Duration) linearizability {
	model := storeModel(init)
	res, info := porcupine.CheckOperationsVerbose(model, toPorcupine(ops), timeout)
	l := linearizability{result: res, info: info}
	if res != porcupine.Illegal {
		return l
	}
	// The longest partial linearization found: ids are indexes in ops.
	var best []int
	for _, part := range info.PartialLinearizations() {
		for _, lin := range part {
			if len(lin) > len(best) {
				best = lin
			}
		}
	}
	done := make(map[int]bool, len(best))
	state := init
	for _, id := range best {
		done[id] = true
		_, state = step(state, &ops[id].In, &ops[id].Out)
	}
	l.state = state
	for _, id := range best[max(0, len(best)-8):] {
		l.prefix = append(l.prefix, ops[id])
	}
	// The culprit: the first operation, by call, that is not linearized.
	for i, o := range ops {
		if done[i] {
			continue
		}
		if l.culprit == nil || o.Call < l.culprit.Call {
			l.culprit = o
		}
	}
	if l.culprit != nil {
		from := l.culprit.Call - int64(50*time.Millisecond)
		to := l.culprit.Return
		if to < 0 {
			to = l.culprit.Call + int64(50*time.Millisecond)
		}
		for i, o := range ops {
			if o == l.culprit || done[i] && o.Return >= 0 && o.Return < from {
				continue
			}
			if o.Call <= to && (o.Return < 0 || o.Return >= from) {
				l.around = append(l.around, o)
			}
		}
		slices.SortFunc(l.around, func(a, b *op) int { return int(a.Call - b.Call) })
		if len(l.around) > 30 {
			l.around = l.around[:30]
		}
	}
	return l
}

// String formats a failure.
func (l linearizability) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  longest linearizable prefix ends in state %s\n  with:\n", l.state)
	for _, o := range l.prefix {
		fmt.Fprintf(&b, "    %s\n", o)
	}
	fmt.Fprintf(&b, "  first operation that cannot follow:\n    %s\n  operations around it:\n", l.culprit)
	for _, o := range l.around {
		fmt.Fprintf(&b, "    %s\n", o)
	}
	return b.String()
}

// resolveUnknown settles, from the history, the outcome of the requests
// whose answers were lost, which would otherwise make the search
// exponential: a request that may or may not have happened can be placed
// anywhere. Every value is written by one request only, so a put or a
// transaction with puts happened exactly when its values are in the
// history, at that revision; a delete happened when an otherwise
// unexplained revision of its epoch (from..to) deletes exactly its keys
// and no other unknown delete could have made it. A request found not to
// have happened is dropped, as is a read-only one. claimed holds the
// revisions the answered requests made; resolved ones are added. The
// deletes that remain ambiguous stay unknown.
func resolveUnknown(ops []*op, batches []kv.Batch, values map[string]*kv.Event, claimed map[int64]bool, from, to int64) []*op {
	out := make([]*op, 0, len(ops))
	var deletes []*op
	for _, o := range ops {
		if !o.Out.Unknown {
			out = append(out, o)
			continue
		}
		switch o.In.Kind {
		case opPut, opTxn:
			vals := putValues(&o.In)
			e, ok := values[vals[0]]
			if !ok {
				continue // it did not happen
			}
			rev := e.KV.ModRevision
			c := *o
			c.Out = opOutput{Status: 200, Rev: rev}
			switch o.In.Kind {
			case opPut:
				if e.KV.Version == 1 {
					c.Out.Status = 201
				}
				c.Out.KV = &kvRec{Key: string(e.KV.Key), CreateRevision: e.KV.CreateRevision, ModRevision: rev, Version: e.KV.Version}
			case opTxn:
				c.Out.Succeeded = true
				if b, ok := findBatch(batches, rev); ok {
					for _, ev := range b.Events {
						if ev.Type == kv.EventDelete {
							c.Out.Deleted++
						}
					}
				}
			}
			claimed[rev] = true
			out = append(out, &c)
		case opDelete, opDeleteRange:
			deletes = append(deletes, o)
		}
	}
	// Candidate revisions of each unknown delete.
	cands := map[*op][]int64{}
	users := map[int64]int{}
	for _, o := range deletes {
		for i := sortSearchBatches(batches, from+1); i < len(batches) && batches[i].Revision <= to; i++ {
			b := batches[i]
			if claimed[b.Revision] || !deletesOnly(b, &o.In) {
				continue
			}
			cands[o] = append(cands[o], b.Revision)
			users[b.Revision]++
		}
	}
	for _, o := range deletes {
		cs := cands[o]
		switch {
		case len(cs) == 0:
			continue // it did not happen
		case len(cs) == 1 && users[cs[0]] == 1:
			b, _ := findBatch(batches, cs[0])
			c := *o
			c.Out = opOutput{Status: 200, Rev: cs[0], Deleted: int64(len(b.Events))}
			claimed[cs[0]] = true
			out = append(out, &c)
		default:
			out = append(out, o)
		}
	}
	return out
}

// deletesOnly reports whether batch b is nothing but deletes of the keys
// that in selects.
func deletesOnly(b kv.Batch, in *opInput) bool {
	if in.Kind == opDelete && len(b.Events) != 1 {
		return false
	}
	for _, e := range b.Events {
		k := string(e.KV.Key)
		if e.Type != kv.EventDelete || (k != in.Key && !(in.Kind == opDeleteRange && strings.HasPrefix(k, in.Key))) {
			return false
		}
	}
	return true
}

func findBatch(batches []kv.Batch, rev int64) (kv.Batch, bool) {
	i := sortSearchBatches(batches, rev)
	if i < len(batches) && batches[i].Revision == rev {
		return batches[i], true
	}
	return kv.Batch{}, false
}
