package kv

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

func TestEmptyStore(t *testing.T) {
	s := openStore(t, Options{})
	rev, compact := s.Revisions()
	if rev != 1 || compact != 1 {
		t.Fatalf("Revisions() = %d, %d; want 1, 1", rev, compact)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 1 || st.CompactRevision != 1 || st.Keys != 0 || st.DBSizeBytes <= 0 {
		t.Fatalf("Status() = %+v", st)
	}
	res := mustRange(t, s, RangeRequest{Key: []byte("a")})
	if diff := cmp.Diff(RangeResult{Rev: 1}, res, cmpOpts...); diff != "" {
		t.Fatalf("Range (-want +got):\n%s", diff)
	}
}

func TestPutVersions(t *testing.T) {
	s := openStore(t, Options{})
	ctx := context.Background()
	steps := []struct {
		name  string
		do    func() (TxnResponse, error)
		want  TxnResponse
		state *KeyValue // key "k" afterwards
	}{
		{
			name:  "create",
			do:    func() (TxnResponse, error) { return s.Put(ctx, []byte("k"), []byte("v1")) },
			want:  TxnResponse{Succeeded: true, Revision: 2, Responses: []OpResult{{Type: OpPut, KV: &KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 2, Version: 1}}}},
			state: kvp("k", "v1", 2, 2, 1),
		},
		{
			name: "update",
			do:   func() (TxnResponse, error) { return s.Put(ctx, []byte("k"), []byte("v2")) },
			want: TxnResponse{Succeeded: true, Revision: 3, Responses: []OpResult{{Type: OpPut,
				KV: &KeyValue{Key: []byte("k"), CreateRevision: 2, ModRevision: 3, Version: 2}, PrevKV: kvp("k", "v1", 2, 2, 1)}}},
			state: kvp("k", "v2", 2, 3, 2),
		},
		{
			name: "other key",
			do:   func() (TxnResponse, error) { return s.Put(ctx, []byte("other"), nil) },
			want: TxnResponse{Succeeded: true, Revision: 4, Responses: []OpResult{{Type: OpPut,
				KV: &KeyValue{Key: []byte("other"), CreateRevision: 4, ModRevision: 4, Version: 1}}}},
			state: kvp("k", "v2", 2, 3, 2),
		},
		{
			name: "delete",
			do:   func() (TxnResponse, error) { return s.Delete(ctx, []byte("k"), nil) },
			want: TxnResponse{Succeeded: true, Revision: 5, Responses: []OpResult{{Type: OpDelete, Deleted: 1,
				PrevKVs: []KeyValue{kv("k", "v2", 2, 3, 2)}}}},
		},
		{
			name: "delete missing writes nothing",
			do:   func() (TxnResponse, error) { return s.Delete(ctx, []byte("k"), nil) },
			want: TxnResponse{Succeeded: true, Revision: 5, Responses: []OpResult{{Type: OpDelete}}},
		},
		{
			name: "re-create gets a new create revision",
			do:   func() (TxnResponse, error) { return s.Put(ctx, []byte("k"), []byte("v3")) },
			want: TxnResponse{Succeeded: true, Revision: 6, Responses: []OpResult{{Type: OpPut,
				KV: &KeyValue{Key: []byte("k"), CreateRevision: 6, ModRevision: 6, Version: 1}}}},
			state: kvp("k", "v3", 6, 6, 1),
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := st.do()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(st.want, got, cmpOpts...); diff != "" {
				t.Fatalf("response (-want +got):\n%s", diff)
			}
			res := mustRange(t, s, RangeRequest{Key: []byte("k")})
			var want []KeyValue
			if st.state != nil {
				want = []KeyValue{*st.state}
			}
			if diff := cmp.Diff(want, res.KVs, cmpOpts...); diff != "" {
				t.Fatalf("state (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTxnCompare(t *testing.T) {
	s := openStore(t, Options{})
	mustPut(t, s, "a", "m")   // rev 2
	mustPut(t, s, "a", "m")   // rev 3: version 2, create 2, mod 3
	mustPut(t, s, "zero", "") // rev 4
	tests := []struct {
		name string
		cmp  Compare
		want bool
	}{
		{"version equal", Compare{Key: []byte("a"), Target: CompareVersion, Op: CompareEqual, Number: 2}, true},
		{"version not equal", Compare{Key: []byte("a"), Target: CompareVersion, Op: CompareNotEqual, Number: 2}, false},
		{"version less", Compare{Key: []byte("a"), Target: CompareVersion, Op: CompareLess, Number: 3}, true},
		{"version greater", Compare{Key: []byte("a"), Target: CompareVersion, Op: CompareGreater, Number: 2}, false},
		{"create equal", Compare{Key: []byte("a"), Target: CompareCreate, Op: CompareEqual, Number: 2}, true},
		{"mod equal", Compare{Key: []byte("a"), Target: CompareMod, Op: CompareEqual, Number: 3}, true},
		{"mod greater", Compare{Key: []byte("a"), Target: CompareMod, Op: CompareGreater, Number: 2}, true},
		{"mod less", Compare{Key: []byte("a"), Target: CompareMod, Op: CompareLess, Number: 3}, false},
		{"value equal", Compare{Key: []byte("a"), Target: CompareValue, Op: CompareEqual, Value: []byte("m")}, true},
		{"value less", Compare{Key: []byte("a"), Target: CompareValue, Op: CompareLess, Value: []byte("n")}, true},
		{"value greater", Compare{Key: []byte("a"), Target: CompareValue, Op: CompareGreater, Value: []byte("l")}, true},
		{"value not equal", Compare{Key: []byte("a"), Target: CompareValue, Op: CompareNotEqual, Value: []byte("m")}, false},
		{"empty value equal", Compare{Key: []byte("zero"), Target: CompareValue, Op: CompareEqual, Value: nil}, true},
		{"missing version 0", Compare{Key: []byte("nope"), Target: CompareVersion, Op: CompareEqual, Number: 0}, true},
		{"missing create 0", Compare{Key: []byte("nope"), Target: CompareCreate, Op: CompareEqual, Number: 0}, true},
		{"missing mod less", Compare{Key: []byte("nope"), Target: CompareMod, Op: CompareLess, Number: 1}, true},
		{"missing value equal fails", Compare{Key: []byte("nope"), Target: CompareValue, Op: CompareEqual, Value: nil}, false},
		{"missing value not equal fails", Compare{Key: []byte("nope"), Target: CompareValue, Op: CompareNotEqual, Value: []byte("x")}, false},
		{"missing value greater fails", Compare{Key: []byte("nope"), Target: CompareValue, Op: CompareGreater, Value: nil}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, write := range []bool{false, true} {
				// Through the read path (gets only) and the write path.
				txn := TxnRequest{
					Compare: []Compare{tt.cmp},
					Success: []Op{{Type: OpGet, Key: []byte("a")}},
					Failure: []Op{{Type: OpGet, Key: []byte("zero")}},
				}
				if write {
					txn.Success = append(txn.Success, Op{Type: OpDelete, Key: []byte("never-there")})
				}
				rev, _ := s.Revisions()
				resp, err := s.Txn(context.Background(), txn)
				if err != nil {
					t.Fatal(err)
				}
				if resp.Succeeded != tt.want {
					t.Fatalf("write path %v: Succeeded = %v, want %v", write, resp.Succeeded, tt.want)
				}
				wantKey := "zero"
				if tt.want {
					wantKey = "a"
				}
				rr := resp.Responses[0].Range
				if rr == nil || len(rr.KVs) != 1 || string(rr.KVs[0].Key) != wantKey || rr.Rev != rev || resp.Revision != rev {
					t.Fatalf("write path %v: response %+v, want %q at %d", write, resp, wantKey, rev)
				}
			}
		})
	}
	// Several compares: all must hold.
	resp, err := s.Txn(context.Background(), TxnRequest{Compare: []Compare{
		{Key: []byte("a"), Target: CompareVersion, Op: CompareEqual, Number: 2},
		{Key: []byte("a"), Target: CompareMod, Op: CompareEqual, Number: 2},
	}})
	if err != nil || resp.Succeeded {
		t.Fatalf("two compares, second false: %+v, %v", resp, err)
	}
}

func TestTxnSubRevisions(t *testing.T) {
	s := openStore(t, Options{})
	ctx := context.Background()
	mustPut(t, s, "r/1", "x") // 2
	mustPut(t, s, "r/2", "y") // 3
	mustPut(t, s, "r/3", "z") // 4
	var got []Batch
	_, cancel := s.Subscribe(func(bs []Batch) { got = append(got, bs...) })
	defer cancel()

	resp, err := s.Txn(ctx, TxnRequest{Success: []Op{
		{Type: OpPut, Key: []byte("a"), Value: []byte("1")},
		{Type: OpGet, Key: []byte("a")},
		{Type: OpPut, Key: []byte("a"), Value: []byte("2")},
		{Type: OpDelete, Key: []byte("r/"), End: PrefixEnd([]byte("r/"))},
		{Type: OpGet, Key: []byte("r/"), End: PrefixEnd([]byte("r/")), CountOnly: true},
		{Type: OpGet, Key: []byte("a")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := TxnResponse{Succeeded: true, Revision: 5, Responses: []OpResult{
		{Type: OpPut, KV: &KeyValue{Key: []byte("a"), CreateRevision: 5, ModRevision: 5, Version: 1}},
		{Type: OpGet, Range: &RangeResult{KVs: []KeyValue{kv("a", "1", 5, 5, 1)}, Count: 1, Rev: 5}},
		{Type: OpPut, KV: &KeyValue{Key: []byte("a"), CreateRevision: 5, ModRevision: 5, Version: 2}, PrevKV: kvp("a", "1", 5, 5, 1)},
		{Type: OpDelete, Deleted: 3, PrevKVs: []KeyValue{kv("r/1", "x", 2, 2, 1), kv("r/2", "y", 3, 3, 1), kv("r/3", "z", 4, 4, 1)}},
		{Type: OpGet, Range: &RangeResult{Rev: 5}},
		{Type: OpGet, Range: &RangeResult{KVs: []KeyValue{kv("a", "2", 5, 5, 2)}, Count: 1, Rev: 5}},
	}}
	if diff := cmp.Diff(want, resp, cmpOpts...); diff != "" {
		t.Fatalf("response (-want +got):\n%s", diff)
	}
	wantBatch := []Batch{{Revision: 5, Events: []Event{
		{Type: EventPut, KV: kv("a", "1", 5, 5, 1), Sub: 0},
		{Type: EventPut, KV: kv("a", "2", 5, 5, 2), Sub: 1, PrevKV: kvp("a", "1", 5, 5, 1)},
		{Type: EventDelete, KV: KeyValue{Key: []byte("r/1"), ModRevision: 5}, Sub: 2, PrevKV: kvp("r/1", "x", 2, 2, 1)},
		{Type: EventDelete, KV: KeyValue{Key: []byte("r/2"), ModRevision: 5}, Sub: 3, PrevKV: kvp("r/2", "y", 3, 3, 1)},
		{Type: EventDelete, KV: KeyValue{Key: []byte("r/3"), ModRevision: 5}, Sub: 4, PrevKV: kvp("r/3", "z", 4, 4, 1)},
	}}}
	if diff := cmp.Diff(wantBatch, got, cmpOpts...); diff != "" {
		t.Fatalf("subscriber (-want +got):\n%s", diff)
	}
	hist, next, err := s.History(ctx, 5, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantBatch, hist, cmpOpts...); diff != "" || next != 6 {
		t.Fatalf("History next %d (-want +got):\n%s", next, diff)
	}
	// The past is still readable: at 4 the r/ keys exist and a does not.
	res := mustRange(t, s, RangeRequest{Key: []byte{0}, End: []byte{0}, Rev: 4})
	if diff := cmp.Diff([]KeyValue{kv("r/1", "x", 2, 2, 1), kv("r/2", "y", 3, 3, 1), kv("r/3", "z", 4, 4, 1)}, res.KVs, cmpOpts...); diff != "" {
		t.Fatalf("Range at 4 (-want +got):\n%s", diff)
	}
	res = mustRange(t, s, RangeRequest{Key: []byte("a"), Rev: 5})
	if diff := cmp.Diff([]KeyValue{kv("a", "2", 5, 5, 2)}, res.KVs, cmpOpts...); diff != "" {
		t.Fatalf("Range a at 5 (-want +got):\n%s", diff)
	}

	// A transaction whose branch writes nothing creates no revision.
	resp, err = s.Txn(ctx, TxnRequest{
		Compare: []Compare{{Key: []byte("a"), Target: CompareVersion, Op: CompareEqual, Number: 99}},
		Success: []Op{{Type: OpPut, Key: []byte("b"), Value: []byte("x")}},
		Failure: []Op{{Type: OpDelete, Key: []byte("r/"), End: PrefixEnd([]byte("r/"))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Succeeded || resp.Revision != 5 || resp.Responses[0].Deleted != 0 {
		t.Fatalf("no-op txn: %+v", resp)
	}
	if rev, _ := s.Revisions(); rev != 5 || len(got) != 1 {
		t.Fatalf("no-op txn moved the revision to %d or notified (%d batches)", rev, len(got))
	}
}

func TestValidation(t *testing.T) {
	s := openStore(t, Options{MaxKeySize: 8, MaxValueSize: 16, MaxTxnOps: 2})
	ctx := context.Background()
	big := bytes.Repeat([]byte("k"), 9)
	tests := []struct {
		name string
		txn  TxnRequest
		want error
	}{
		{"empty put key", TxnRequest{Success: []Op{{Type: OpPut}}}, ErrEmptyKey},
		{"empty delete key", TxnRequest{Success: []Op{{Type: OpDelete}}}, ErrEmptyKey},
		{"put key too large", TxnRequest{Success: []Op{{Type: OpPut, Key: big}}}, ErrKeyTooLarge},
		{"get key too large", TxnRequest{Success: []Op{{Type: OpGet, Key: big}}}, ErrKeyTooLarge},
		{"range end too large", TxnRequest{Failure: []Op{{Type: OpDelete, Key: []byte("a"), End: big}}}, ErrKeyTooLarge},
		{"compare key too large", TxnRequest{Compare: []Compare{{Key: big}}}, ErrKeyTooLarge},
		{"value too large", TxnRequest{Success: []Op{{Type: OpPut, Key: []byte("a"), Value: make([]byte, 17)}}}, ErrValueTooLarge},
		{"too many ops", TxnRequest{Success: make([]Op, 3)}, ErrTooManyOps},
		{"too many failure ops", TxnRequest{Failure: make([]Op, 3)}, ErrTooManyOps},
		{"too many compares", TxnRequest{Compare: make([]Compare, 3)}, ErrTooManyOps},
		{"bad compare target", TxnRequest{Compare: []Compare{{Key: []byte("a"), Target: 9}}}, ErrInvalidCompare},
		{"bad compare op", TxnRequest{Compare: []Compare{{Key: []byte("a"), Op: 9}}}, ErrInvalidCompare},
		{"at the limits", TxnRequest{Success: []Op{{Type: OpPut, Key: big[:8], Value: make([]byte, 16)}, {Type: OpGet, Key: big[:8]}}}, nil},
		{"empty delete key with range", TxnRequest{Success: []Op{{Type: OpDelete, End: []byte("a")}}}, nil},
		{"get of the empty key", TxnRequest{Success: []Op{{Type: OpGet}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Txn(ctx, tt.txn)
			if !errIs(err, tt.want) {
				t.Fatalf("Txn: %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := s.Put(ctx, nil, nil); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("Put empty key: %v", err)
	}
	if _, err := s.Put(ctx, []byte("a"), make([]byte, 17)); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("Put large value: %v", err)
	}
	if _, err := s.Delete(ctx, big, nil); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("Delete large key: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(cctx, []byte("a"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with canceled context: %v", err)
	}
	if _, err := s.Range(cctx, RangeRequest{Key: []byte("a")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Range with canceled context: %v", err)
	}
}

func TestRange(t *testing.T) {
	s := openStore(t, Options{})
	for _, k := range []string{"a", "a\x00", "a\x00\x01", "a\x01", "ab", "b", "\xff", "\xff\xff"} {
		mustPut(t, s, k, "v"+k)
	}
	// revs 2..9; then overwrite a and delete b.
	mustPut(t, s, "a", "new")                                                   // 10
	if _, err := s.Delete(context.Background(), []byte("b"), nil); err != nil { // 11
		t.Fatal(err)
	}
	keys := func(kvs []KeyValue) []string {
		var out []string
		for _, kv := range kvs {
			out = append(out, string(kv.Key))
		}
		return out
	}
	tests := []struct {
		name      string
		req       RangeRequest
		wantKeys  []string
		wantCount int64
		wantMore  bool
		wantErr   error
	}{
		{name: "single", req: RangeRequest{Key: []byte("a")}, wantKeys: []string{"a"}, wantCount: 1},
		{name: "single missing", req: RangeRequest{Key: []byte("zz")}},
		{name: "single deleted", req: RangeRequest{Key: []byte("b")}},
		{name: "empty key", req: RangeRequest{}},
		{name: "prefix a", req: RangeRequest{Key: []byte("a"), End: PrefixEnd([]byte("a"))},
			wantKeys: []string{"a", "a\x00", "a\x00\x01", "a\x01", "ab"}, wantCount: 5},
		{name: "prefix a\\x00", req: RangeRequest{Key: []byte("a\x00"), End: PrefixEnd([]byte("a\x00"))},
			wantKeys: []string{"a\x00", "a\x00\x01"}, wantCount: 2},
		{name: "all", req: RangeRequest{End: []byte{0}},
			wantKeys: []string{"a", "a\x00", "a\x00\x01", "a\x01", "ab", "\xff", "\xff\xff"}, wantCount: 7},
		{name: "from key on", req: RangeRequest{Key: []byte("ab"), End: []byte{0}},
			wantKeys: []string{"ab", "\xff", "\xff\xff"}, wantCount: 3},
		{name: "prefix \\xff", req: RangeRequest{Key: []byte("\xff"), End: PrefixEnd([]byte("\xff"))},
			wantKeys: []string{"\xff", "\xff\xff"}, wantCount: 2},
		{name: "limit", req: RangeRequest{End: []byte{0}, Limit: 2},
			wantKeys: []string{"a", "a\x00"}, wantCount: 7, wantMore: true},
		{name: "limit not reached", req: RangeRequest{End: []byte{0}, Limit: 7},
			wantKeys: []string{"a", "a\x00", "a\x00\x01", "a\x01", "ab", "\xff", "\xff\xff"}, wantCount: 7},
		{name: "count only", req: RangeRequest{End: []byte{0}, CountOnly: true, Limit: 1}, wantCount: 7},
		{name: "end before key", req: RangeRequest{Key: []byte("b"), End: []byte("a")}},
		{name: "at 9", req: RangeRequest{Key: []byte("a"), End: []byte("c"), Rev: 9},
			wantKeys: []string{"a", "a\x00", "a\x00\x01", "a\x01", "ab", "b"}, wantCount: 6},
		{name: "at 9 limit", req: RangeRequest{Key: []byte("a"), End: []byte("c"), Rev: 9, Limit: 3},
			wantKeys: []string{"a", "a\x00", "a\x00\x01"}, wantCount: 6, wantMore: true},
		{name: "at 4", req: RangeRequest{End: []byte{0}, Rev: 4},
			wantKeys: []string{"a", "a\x00", "a\x00\x01"}, wantCount: 3},
		{name: "at 4 prefix a\\x00", req: RangeRequest{Key: []byte("a\x00"), End: PrefixEnd([]byte("a\x00")), Rev: 4},
			wantKeys: []string{"a\x00", "a\x00\x01"}, wantCount: 2},
		{name: "at 1", req: RangeRequest{End: []byte{0}, Rev: 1}},
		{name: "at 10 single", req: RangeRequest{Key: []byte("b"), Rev: 10}, wantKeys: []string{"b"}, wantCount: 1},
		{name: "future", req: RangeRequest{Key: []byte("a"), Rev: 12}, wantErr: ErrFutureRev},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, keysOnly := range []bool{false, true} {
				req := tt.req
				req.KeysOnly = keysOnly
				res, err := s.Range(context.Background(), req)
				if !errIs(err, tt.wantErr) {
					t.Fatalf("Range: %v, want %v", err, tt.wantErr)
				}
				if err != nil {
					return
				}
				if diff := cmp.Diff(tt.wantKeys, keys(res.KVs), cmpOpts...); diff != "" {
					t.Fatalf("keys (-want +got):\n%s", diff)
				}
				if res.Count != tt.wantCount || res.More != tt.wantMore {
					t.Fatalf("Count %d More %v, want %d %v", res.Count, res.More, tt.wantCount, tt.wantMore)
				}
				wantRev := req.Rev
				if wantRev == 0 {
					wantRev = 11
				}
				if res.Rev != wantRev {
					t.Fatalf("Rev %d, want %d", res.Rev, wantRev)
				}
				for _, kv := range res.KVs {
					if keysOnly != (kv.Value == nil) {
						t.Fatalf("keysOnly %v, value %q", keysOnly, kv.Value)
					}
				}
			}
		})
	}
	// Values at a past revision are the values then.
	res := mustRange(t, s, RangeRequest{Key: []byte("a"), Rev: 9})
	if diff := cmp.Diff([]KeyValue{kv("a", "va", 2, 2, 1)}, res.KVs, cmpOpts...); diff != "" {
		t.Fatalf("a at 9 (-want +got):\n%s", diff)
	}
}

func TestHistory(t *testing.T) {
	s := openStore(t, Options{})
	ctx := context.Background()
	mustPut(t, s, "a", "1")                           // 2
	if _, err := s.Txn(ctx, TxnRequest{Success: []Op{ // 3: three events
		{Type: OpPut, Key: []byte("b"), Value: []byte("1")},
		{Type: OpPut, Key: []byte("c"), Value: []byte("1")},
		{Type: OpPut, Key: []byte("a"), Value: []byte("2")},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, []byte("a"), nil); err != nil { // 4
		t.Fatal(err)
	}
	revs := func(bs []Batch) (out []int64) {
		for _, b := range bs {
			out = append(out, b.Revision)
			for _, e := range b.Events {
				if e.Revision() != b.Revision {
					t.Fatalf("event of %d in batch %d", e.Revision(), b.Revision)
				}
			}
		}
		return out
	}
	tests := []struct {
		name      string
		from, to  int64
		max       int
		wantRevs  []int64
		wantNext  int64
		wantErr   error
		wantTotal int
	}{
		{name: "all", from: 1, wantRevs: []int64{2, 3, 4}, wantNext: 5, wantTotal: 5},
		{name: "from 0", from: 0, wantRevs: []int64{2, 3, 4}, wantNext: 5, wantTotal: 5},
		{name: "to 3", from: 2, to: 3, wantRevs: []int64{2, 3}, wantNext: 4, wantTotal: 4},
		{name: "max 1", from: 2, max: 1, wantRevs: []int64{2}, wantNext: 3, wantTotal: 1},
		{name: "max 2 keeps revision whole", from: 2, max: 2, wantRevs: []int64{2, 3}, wantNext: 4, wantTotal: 4},
		{name: "max 1 large revision", from: 3, max: 1, wantRevs: []int64{3}, wantNext: 4, wantTotal: 3},
		{name: "to beyond current", from: 4, to: 100, wantRevs: []int64{4}, wantNext: 5, wantTotal: 1},
		{name: "from beyond current", from: 7, wantNext: 7},
		{name: "from current+1", from: 5, wantNext: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, next, err := s.History(ctx, tt.from, tt.to, tt.max)
			if !errIs(err, tt.wantErr) {
				t.Fatalf("History: %v, want %v", err, tt.wantErr)
			}
			total := 0
			for _, b := range bs {
				total += len(b.Events)
			}
			if diff := cmp.Diff(tt.wantRevs, revs(bs), cmpOpts...); diff != "" || next != tt.wantNext || total != tt.wantTotal {
				t.Fatalf("next %d (want %d), %d events (want %d), revisions (-want +got):\n%s", next, tt.wantNext, total, tt.wantTotal, diff)
			}
		})
	}
	bs, _, err := s.History(ctx, 4, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []Batch{{Revision: 4, Events: []Event{{Type: EventDelete, KV: KeyValue{Key: []byte("a"), ModRevision: 4}, PrevKV: kvp("a", "2", 2, 3, 2)}}}}
	if diff := cmp.Diff(want, bs, cmpOpts...); diff != "" {
		t.Fatalf("delete event (-want +got):\n%s", diff)
	}
	if err := s.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.History(ctx, 2, 0, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("History below compact: %v", err)
	}
	bs, next, err := s.History(ctx, 3, 0, 0)
	if err != nil || len(bs) != 2 || next != 5 {
		t.Fatalf("History at compact: %d batches, next %d, %v", len(bs), next, err)
	}
}

func TestCompact(t *testing.T) {
	s := openStore(t, Options{compactChunk: 3})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		mustPut(t, s, "a", string(rune('0'+i))) // 2..6
	}
	mustPut(t, s, "b", "x")                                    // 7
	if _, err := s.Delete(ctx, []byte("b"), nil); err != nil { // 8
		t.Fatal(err)
	}
	mustPut(t, s, "c", "x")                                    // 9
	if _, err := s.Delete(ctx, []byte("c"), nil); err != nil { // 10
		t.Fatal(err)
	}
	mustPut(t, s, "d", "x") // 11
	tests := []struct {
		name string
		rev  int64
		want error
	}{
		{"future", 12, ErrFutureRev},
		{"one", 1, ErrAlreadyCompacted},
		{"to 4", 4, nil},
		{"again", 4, ErrAlreadyCompacted},
		{"below", 3, ErrAlreadyCompacted},
		{"to 9", 9, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Compact(ctx, tt.rev); !errIs(err, tt.want) {
				t.Fatalf("Compact(%d): %v, want %v", tt.rev, err, tt.want)
			}
		})
	}
	if _, compact := s.Revisions(); compact != 9 {
		t.Fatalf("compact revision %d", compact)
	}
	if _, err := s.Range(ctx, RangeRequest{Key: []byte("a"), Rev: 8}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Range below compact: %v", err)
	}
	waitCompacted(t, s)
	checkInvariants(t, s)
	// At 9: a=4 (rev 6), c=x (rev 9), b deleted. At 10: c deleted.
	for _, tc := range []struct {
		rev  int64
		want []KeyValue
	}{
		{9, []KeyValue{kv("a", "4", 2, 6, 5), kv("c", "x", 9, 9, 1)}},
		{10, []KeyValue{kv("a", "4", 2, 6, 5)}},
		{11, []KeyValue{kv("a", "4", 2, 6, 5), kv("d", "x", 11, 11, 1)}},
	} {
		res := mustRange(t, s, RangeRequest{End: []byte{0}, Rev: tc.rev})
		if diff := cmp.Diff(tc.want, res.KVs, cmpOpts...); diff != "" {
			t.Fatalf("at %d (-want +got):\n%s", tc.rev, diff)
		}
	}
	// What is left: a@6, c@9 (History needs revision 9), c's tombstone at
	// 10 and d@11.
	var left []int64
	if err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).ForEach(func(k, _ []byte) error {
			r, _ := parseRevKey(k)
			left = append(left, r)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{6, 9, 10, 11}, left); diff != "" {
		t.Fatalf("history left (-want +got):\n%s", diff)
	}
	bs, _, err := s.History(ctx, 9, 0, 0)
	if err != nil || len(bs) != 3 || bs[0].Revision != 9 {
		t.Fatalf("History from compact: %+v, %v", bs, err)
	}
	// A key written twice in the revision that becomes the compact
	// revision keeps both events for History.
	if _, err := s.Txn(ctx, TxnRequest{Success: []Op{ // 12
		{Type: OpPut, Key: []byte("e"), Value: []byte("1")},
		{Type: OpPut, Key: []byte("e"), Value: []byte("2")},
		{Type: OpDelete, Key: []byte("e")},
		{Type: OpPut, Key: []byte("e"), Value: []byte("3")},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, 12); err != nil {
		t.Fatal(err)
	}
	waitCompacted(t, s)
	bs, _, err = s.History(ctx, 12, 12, 0)
	if err != nil || len(bs) != 1 || len(bs[0].Events) != 4 {
		t.Fatalf("History at the compact revision: %+v, %v", bs, err)
	}
	res := mustRange(t, s, RangeRequest{Key: []byte("e"), Rev: 12})
	if diff := cmp.Diff([]KeyValue{kv("e", "3", 12, 12, 1)}, res.KVs, cmpOpts...); diff != "" {
		t.Fatalf("e at 12 (-want +got):\n%s", diff)
	}
	// A put after compaction carries the kept previous version.
	resp := mustPut(t, s, "a", "5") // 13
	if diff := cmp.Diff(kvp("a", "4", 2, 6, 5), resp.Responses[0].PrevKV, cmpOpts...); diff != "" {
		t.Fatalf("PrevKV after compaction (-want +got):\n%s", diff)
	}
}
