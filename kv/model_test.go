package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// model is a plain in-memory implementation of the store's semantics: the
// whole keyspace at every revision and every revision's events.
type model struct {
	states  []map[string]KeyValue // states[r] is the keyspace at revision r (r >= 1)
	batches []Batch               // batches[r-2] is revision r
	compact int64
}

func newModel() *model {
	return &model{states: []map[string]KeyValue{nil, {}}, compact: 1}
}

func (m *model) rev() int64 { return int64(len(m.states) - 1) }

// modelRange selects from state st as RangeRequest does.
func modelRange(st map[string]KeyValue, key, end []byte, limit int64, keysOnly, countOnly bool) RangeResult {
	var keys []string
	for k := range st {
		kb := []byte(k)
		switch {
		case len(end) == 0:
			if len(key) > 0 && bytes.Equal(kb, key) {
				keys = append(keys, k)
			}
		case len(end) == 1 && end[0] == 0:
			if bytes.Compare(kb, key) >= 0 {
				keys = append(keys, k)
			}
		default:
			if bytes.Compare(kb, key) >= 0 && bytes.Compare(kb, end) < 0 {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	res := RangeResult{Count: int64(len(keys))}
	if countOnly {
		return res
	}
	for _, k := range keys {
		if limit > 0 && int64(len(res.KVs)) == limit {
			res.More = true
			break
		}
		kv := st[k]
		if keysOnly {
			kv.Value = nil
		}
		res.KVs = append(res.KVs, kv)
	}
	return res
}

func modelCompare(st map[string]KeyValue, c Compare) bool {
	kv, ok := st[string(c.Key)]
	var r int
	switch c.Target {
	case CompareValue:
		if !ok {
			return false
		}
		r = bytes.Compare(kv.Value, c.Value)
	case CompareVersion:
		r = cmpInt(kv.Version, c.Number)
	case CompareCreate:
		r = cmpInt(kv.CreateRevision, c.Number)
	case CompareMod:
		r = cmpInt(kv.ModRevision, c.Number)
	}
	switch c.Op {
	case CompareEqual:
		return r == 0
	case CompareNotEqual:
		return r != 0
	case CompareLess:
		return r < 0
	default:
		return r > 0
	}
}

// apply runs t on the state at base and returns the response, the events
// and the new state (nil when nothing was written).
func modelApply(st map[string]KeyValue, base int64, t TxnRequest) (TxnResponse, []Event, map[string]KeyValue) {
	next := make(map[string]KeyValue, len(st))
	for k, v := range st {
		next[k] = v
	}
	rev := base + 1
	ok := true
	for _, c := range t.Compare {
		ok = ok && modelCompare(st, c)
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	resp := TxnResponse{Succeeded: ok}
	var events []Event
	for _, op := range ops {
		switch op.Type {
		case OpGet:
			rr := modelRange(next, op.Key, op.End, op.Limit, op.KeysOnly, op.CountOnly)
			resp.Responses = append(resp.Responses, OpResult{Type: OpGet, Range: &rr})
		case OpPut:
			nkv := KeyValue{Key: op.Key, Value: op.Value, CreateRevision: rev, ModRevision: rev, Version: 1}
			var prev *KeyValue
			if p, found := next[string(op.Key)]; found {
				prev = &p
				nkv.CreateRevision, nkv.Version = p.CreateRevision, p.Version+1
			}
			next[string(op.Key)] = nkv
			events = append(events, Event{Type: EventPut, KV: nkv, Sub: int32(len(events)), PrevKV: prev})
			res := nkv
			res.Value = nil
			resp.Responses = append(resp.Responses, OpResult{Type: OpPut, KV: &res, PrevKV: prev})
		case OpDelete:
			rr := modelRange(next, op.Key, op.End, 0, false, false)
			for i := range rr.KVs {
				p := rr.KVs[i]
				delete(next, string(p.Key))
				events = append(events, Event{Type: EventDelete, KV: KeyValue{Key: p.Key, ModRevision: rev}, Sub: int32(len(events)), PrevKV: &p})
			}
			resp.Responses = append(resp.Responses, OpResult{Type: OpDelete, Deleted: int64(len(rr.KVs)), PrevKVs: rr.KVs})
		}
	}
	resp.Revision = base
	if len(events) > 0 {
		resp.Revision = rev
	} else {
		next = nil
	}
	for _, r := range resp.Responses {
		if r.Range != nil {
			r.Range.Rev = resp.Revision
		}
	}
	return resp, events, next
}

func (m *model) txn(t TxnRequest) TxnResponse {
	resp, events, next := modelApply(m.states[m.rev()], m.rev(), t)
	if next != nil {
		m.batches = append(m.batches, Batch{Revision: resp.Revision, Events: events})
		m.states = append(m.states, next)
	}
	return resp
}

func (m *model) rangeReq(r RangeRequest) (RangeResult, error) {
	rev := r.Rev
	if rev == 0 {
		rev = m.rev()
	}
	if rev > m.rev() {
		return RangeResult{}, ErrFutureRev
	}
	if rev < m.compact {
		return RangeResult{}, ErrCompacted
	}
	res := modelRange(m.states[rev], r.Key, r.End, r.Limit, r.KeysOnly, r.CountOnly)
	res.Rev = rev
	return res, nil
}

func (m *model) history(from, to int64, maxEvents int) ([]Batch, int64, error) {
	if from < 1 {
		from = 1
	}
	if from < m.compact {
		return nil, 0, ErrCompacted
	}
	if to <= 0 || to > m.rev() {
		to = m.rev()
	}
	if from > to {
		return nil, from, nil
	}
	var out []Batch
	n := 0
	for r := max(from, 2); r <= to; r++ {
		if maxEvents > 0 && n >= maxEvents {
			return out, r, nil
		}
		b := m.batches[r-2]
		out = append(out, b)
		n += len(b.Events)
	}
	return out, to + 1, nil
}

// gen makes random requests over a small keyspace whose keys contain 0x00,
// 0x01 and 0xff bytes, so that escaping and prefix ends are exercised.
type gen struct {
	r *rand.Rand
}

func (g gen) key() []byte {
	alphabet := []byte{0x00, 0x01, 'a', 'b', 0xff}
	k := make([]byte, 1+g.r.IntN(3))
	for i := range k {
		k[i] = alphabet[g.r.IntN(len(alphabet))]
	}
	return k
}

func (g gen) value() []byte {
	v := make([]byte, g.r.IntN(7))
	for i := range v {
		v[i] = byte('a' + g.r.IntN(3))
	}
	return v
}

// keyRange returns a Key and End: a single key, a prefix, [k1, k2), every
// key from k, or everything.
func (g gen) keyRange() ([]byte, []byte) {
	switch g.r.IntN(5) {
	case 0:
		return g.key(), nil
	case 1:
		k := g.key()
		return k, PrefixEnd(k)
	case 2:
		return g.key(), g.key()
	case 3:
		return g.key(), []byte{0}
	default:
		return nil, []byte{0}
	}
}

func (g gen) op(writes bool) Op {
	t := OpGet
	if writes {
		t = OpType(g.r.IntN(3))
	}
	switch t {
	case OpPut:
		return Op{Type: OpPut, Key: g.key(), Value: g.value()}
	case OpDelete:
		k, e := g.keyRange()
		if len(k) == 0 && len(e) == 0 {
			k = g.key()
		}
		return Op{Type: OpDelete, Key: k, End: e}
	default:
		k, e := g.keyRange()
		return Op{Type: OpGet, Key: k, End: e, Limit: int64(g.r.IntN(4)), KeysOnly: g.r.IntN(4) == 0, CountOnly: g.r.IntN(6) == 0}
	}
}

func (g gen) txn(rev int64, writes bool) TxnRequest {
	var t TxnRequest
	for i := g.r.IntN(3); i > 0; i-- {
		c := Compare{Key: g.key(), Target: CompareTarget(g.r.IntN(4)), Op: CompareOp(g.r.IntN(4))}
		switch c.Target {
		case CompareValue:
			c.Value = g.value()
		case CompareVersion:
			c.Number = int64(g.r.IntN(4))
		default:
			c.Number = rev - int64(g.r.IntN(10))
		}
		t.Compare = append(t.Compare, c)
	}
	for i := g.r.IntN(4); i > 0; i-- {
		t.Success = append(t.Success, g.op(writes))
	}
	for i := g.r.IntN(3); i > 0; i-- {
		t.Failure = append(t.Failure, g.op(writes))
	}
	return t
}

// feed collects what a subscriber receives.
type feed struct {
	mu      sync.Mutex
	batches []Batch
}

func (f *feed) add(bs []Batch) {
	f.mu.Lock()
	f.batches = append(f.batches, bs...) // copies the slice, keeps the events
	f.mu.Unlock()
}

// TestModel runs thousands of random operations against the store and the
// model and compares every answer, reads at random past revisions, History
// from random revisions, and at the end the subscriber feed.
func TestModel(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	g := gen{r: rand.New(rand.NewPCG(seed, 1))}
	dir := t.TempDir()
	opts := Options{NoSync: true, compactChunk: 7}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { checkAndClose(t, s) }()
	m := newModel()
	var f feed
	rev, cancel := s.Subscribe(f.add)
	if rev != 1 {
		t.Fatalf("Subscribe at %d", rev)
	}
	ctx := context.Background()
	check := func(step int, what string, want, got any, wantErr, gotErr error) {
		t.Helper()
		if !errIs(gotErr, wantErr) {
			t.Fatalf("step %d %s: error %v, want %v", step, what, gotErr, wantErr)
		}
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Fatalf("step %d %s (-want +got):\n%s", step, what, diff)
		}
	}
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	for step := 0; step < steps; step++ {
		switch p := g.r.IntN(100); {
		case p < 30:
			k, v := g.key(), g.value()
			got, err := s.Put(ctx, k, v)
			want := m.txn(TxnRequest{Success: []Op{{Type: OpPut, Key: k, Value: v}}})
			check(step, fmt.Sprintf("Put(%q)", k), want, got, nil, err)
		case p < 40:
			k, e := g.keyRange()
			if len(k) == 0 && len(e) == 0 {
				k = g.key()
			}
			got, err := s.Delete(ctx, k, e)
			want := m.txn(TxnRequest{Success: []Op{{Type: OpDelete, Key: k, End: e}}})
			check(step, fmt.Sprintf("Delete(%q, %q)", k, e), want, got, nil, err)
		case p < 60:
			txn := g.txn(m.rev(), g.r.IntN(5) != 0)
			got, err := s.Txn(ctx, txn)
			want := m.txn(txn)
			check(step, fmt.Sprintf("Txn(%+v)", txn), want, got, nil, err)
		case p < 82:
			k, e := g.keyRange()
			req := RangeRequest{Key: k, End: e, Limit: int64(g.r.IntN(4)), KeysOnly: g.r.IntN(4) == 0, CountOnly: g.r.IntN(8) == 0}
			if g.r.IntN(3) != 0 {
				req.Rev = m.compact - 2 + g.r.Int64N(m.rev()-m.compact+4)
			}
			got, err := s.Range(ctx, req)
			want, wantErr := m.rangeReq(req)
			check(step, fmt.Sprintf("Range(%+v)", req), want, got, wantErr, err)
		case p < 92:
			from := m.compact - 1 + g.r.Int64N(m.rev()-m.compact+3)
			to := int64(0)
			if g.r.IntN(2) == 0 {
				to = from + g.r.Int64N(20)
			}
			maxEvents := g.r.IntN(6)
			got, gotNext, err := s.History(ctx, from, to, maxEvents)
			want, wantNext, wantErr := m.history(from, to, maxEvents)
			check(step, fmt.Sprintf("History(%d, %d, %d)", from, to, maxEvents), want, got, wantErr, err)
			if gotNext != wantNext {
				t.Fatalf("step %d: History(%d, %d, %d) next %d, want %d", step, from, to, maxEvents, gotNext, wantNext)
			}
		case p < 94:
			// Mostly modest steps, so that a long history stays readable.
			c := m.compact - 1 + g.r.Int64N((m.rev()-m.compact)/3+3)
			if g.r.IntN(10) == 0 {
				c = m.compact - 1 + g.r.Int64N(m.rev()-m.compact+3)
			}
			err := s.Compact(ctx, c)
			var wantErr error
			switch {
			case c > m.rev():
				wantErr = ErrFutureRev
			case c <= m.compact:
				wantErr = ErrAlreadyCompacted
			default:
				m.compact = c
			}
			check(step, fmt.Sprintf("Compact(%d)", c), nil, nil, wantErr, err)
		case p < 99:
			st, err := s.Status()
			if err != nil {
				t.Fatal(err)
			}
			want := Status{Revision: m.rev(), CompactRevision: m.compact, Keys: int64(len(m.states[m.rev()])), DBSizeBytes: st.DBSizeBytes}
			check(step, "Status", want, st, nil, nil)
		default:
			// Reopen: everything survives, the feed goes on.
			cancel()
			checkAndClose(t, s)
			if s, err = Open(dir, opts); err != nil {
				t.Fatal(err)
			}
			rev, cancel = s.Subscribe(f.add)
			if rev != m.rev() {
				t.Fatalf("step %d: reopened at %d, model at %d", step, rev, m.rev())
			}
		}
	}
	cancel()
	if diff := cmp.Diff(m.batches, f.batches, cmpOpts...); diff != "" {
		t.Fatalf("subscriber feed (-want +got):\n%s", diff)
	}
	t.Logf("%d steps, revision %d, compact revision %d", steps, m.rev(), m.compact)
}

// TestModelConcurrent runs random transactions from several goroutines,
// with readers and compactions alongside, and checks the result is
// serializable in revision order: replaying the subscriber feed gives the
// keyspace at every revision; every transaction's response is what it gives
// on the keyspace just before its revision (or at it, when it wrote
// nothing), with exactly the events of its revision; every read matches the
// keyspace at its revision; History matches the feed.
func TestModelConcurrent(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	s := openStore(t, Options{NoSync: true, compactChunk: 5})
	var f feed
	if rev, _ := s.Subscribe(f.add); rev != 1 {
		t.Fatalf("Subscribe at %d", rev)
	}
	ctx := context.Background()
	type done struct {
		txn  TxnRequest
		resp TxnResponse
	}
	type read struct {
		req RangeRequest
		res RangeResult
	}
	const workers, perWorker = 6, 150
	var (
		mu     sync.Mutex
		txns   []done
		reads  []read
		wg     sync.WaitGroup
		hists  [][]Batch
		hfroms []int64
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := gen{r: rand.New(rand.NewPCG(seed, uint64(w)))}
			for i := 0; i < perWorker; i++ {
				rev, compact := s.Revisions()
				switch p := g.r.IntN(10); {
				case p < 6:
					txn := g.txn(rev, true)
					resp, err := s.Txn(ctx, txn)
					if err != nil {
						t.Errorf("Txn: %v", err)
						return
					}
					mu.Lock()
					txns = append(txns, done{txn, resp})
					mu.Unlock()
				case p < 8:
					k, e := g.keyRange()
					req := RangeRequest{Key: k, End: e, Limit: int64(g.r.IntN(3)), Rev: compact + g.r.Int64N(rev-compact+1)}
					res, err := s.Range(ctx, req)
					if errors.Is(err, ErrCompacted) {
						continue // a compaction overtook the read
					}
					if err != nil {
						t.Errorf("Range: %v", err)
						return
					}
					mu.Lock()
					reads = append(reads, read{req, res})
					mu.Unlock()
				case p < 9:
					from := compact + g.r.Int64N(rev-compact+1)
					bs, _, err := s.History(ctx, from, rev, 0)
					if errors.Is(err, ErrCompacted) {
						continue
					}
					if err != nil {
						t.Errorf("History: %v", err)
						return
					}
					mu.Lock()
					hists = append(hists, bs)
					hfroms = append(hfroms, from)
					mu.Unlock()
				default:
					if rev > 20 && g.r.IntN(3) == 0 {
						err := s.Compact(ctx, rev-10)
						if err != nil && !errors.Is(err, ErrAlreadyCompacted) {
							t.Errorf("Compact: %v", err)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	end, _ := s.Revisions()
	f.mu.Lock()
	defer f.mu.Unlock()
	// Replay the feed into per-revision states.
	states := []map[string]KeyValue{nil, {}}
	byRev := map[int64][]Event{}
	for i, b := range f.batches {
		if b.Revision != int64(i)+2 {
			t.Fatalf("feed batch %d has revision %d", i, b.Revision)
		}
		st := map[string]KeyValue{}
		for k, v := range states[len(states)-1] {
			st[k] = v
		}
		for j, e := range b.Events {
			if e.Sub != int32(j) || e.KV.ModRevision != b.Revision {
				t.Fatalf("revision %d event %d: sub %d mod %d", b.Revision, j, e.Sub, e.KV.ModRevision)
			}
			if e.Type == EventPut {
				st[string(e.KV.Key)] = e.KV
			} else {
				delete(st, string(e.KV.Key))
			}
		}
		states = append(states, st)
		byRev[b.Revision] = b.Events
	}
	if int64(len(states)-1) != end {
		t.Fatalf("feed ends at %d, store at %d", len(states)-1, end)
	}
	seen := map[int64]bool{}
	for _, d := range txns {
		base := d.resp.Revision
		wrote := false
		if ev := byRev[base]; ev != nil && !seen[base] {
			// The revision of this transaction, if it wrote: check both
			// readings; exactly one must fit.
			want, events, next := modelApply(states[base-1], base-1, d.txn)
			if next != nil && cmp.Equal(want, d.resp, cmpOpts...) {
				if diff := cmp.Diff(events, ev, cmpOpts...); diff != "" {
					t.Fatalf("events of revision %d (-want +got):\n%s", base, diff)
				}
				seen[base] = true
				wrote = true
			}
		}
		if !wrote {
			want, _, next := modelApply(states[base], base, d.txn)
			if next != nil {
				t.Fatalf("transaction at %d wrote but its response matches no revision: %+v", base, d.resp)
			}
			if diff := cmp.Diff(want, d.resp, cmpOpts...); diff != "" {
				t.Fatalf("read-only transaction at %d (-want +got):\n%s", base, diff)
			}
		}
	}
	if len(seen) != int(end-1) {
		t.Fatalf("%d revisions matched to transactions, %d committed", len(seen), end-1)
	}
	for _, r := range reads {
		want := modelRange(states[r.req.Rev], r.req.Key, r.req.End, r.req.Limit, r.req.KeysOnly, r.req.CountOnly)
		want.Rev = r.req.Rev
		if diff := cmp.Diff(want, r.res, cmpOpts...); diff != "" {
			t.Fatalf("Range(%+v) (-want +got):\n%s", r.req, diff)
		}
	}
	for i, bs := range hists {
		from := max(hfroms[i], 2)
		if len(bs) > 0 {
			if diff := cmp.Diff(f.batches[from-2:from-2+int64(len(bs))], bs, cmpOpts...); diff != "" {
				t.Fatalf("History from %d (-want +got):\n%s", from, diff)
			}
		}
	}
	_, compact := s.Revisions()
	bs, _, err := s.History(ctx, compact, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.batches[max(compact, 2)-2:], bs, cmpOpts...); diff != "" {
		t.Fatalf("History from compact %d (-want +got):\n%s", compact, diff)
	}
	t.Logf("%d transactions, %d reads, %d history reads, revision %d", len(txns), len(reads), len(hists), end)
}
