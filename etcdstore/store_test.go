package etcdstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/watchgate/watchgate/etcdstore"
	"github.com/watchgate/watchgate/etcdstore/etcdtest"
	"github.com/watchgate/watchgate/kv"
)

// Shorthands for building requests.
func b(s string) []byte { return []byte(s) }

func putOp(k, v string) kv.Op { return kv.Op{Type: kv.OpPut, Key: b(k), Value: b(v)} }
func getOp(k string) kv.Op    { return kv.Op{Type: kv.OpGet, Key: b(k)} }
func delOp(k, end string) kv.Op {
	op := kv.Op{Type: kv.OpDelete, Key: b(k)}
	if end != "" {
		op.End = b(end)
	}
	return op
}
func cmpNum(k string, t kv.CompareTarget, op kv.CompareOp, n int64) kv.Compare {
	return kv.Compare{Key: b(k), Target: t, Op: op, Number: n}
}
func cmpVal(k string, op kv.CompareOp, v string) kv.Compare {
	return kv.Compare{Key: b(k), Target: kv.CompareValue, Op: op, Value: b(v)}
}

// modelTxns is a sequence of transactions run on the etcd store and on the
// kv store: every kind of operation, compare target and operator, both
// branches, ranges, prefixes, and the empty key where kv allows it.
var modelTxns = []kv.TxnRequest{
	{Success: []kv.Op{putOp("a", "1")}},
	{Success: []kv.Op{putOp("a", "2")}},
	{Success: []kv.Op{putOp("b", "x"), putOp("c/1", "c1"), putOp("c/2", "c2"), getOp("a")}},
	{Success: []kv.Op{putOp("bin\x00\xff", "\x00\x01\xfe")}},
	// Compares on every target and operator.
	{Compare: []kv.Compare{cmpNum("a", kv.CompareMod, kv.CompareEqual, 3)}, Success: []kv.Op{putOp("a", "mod-eq")}, Failure: []kv.Op{getOp("a")}},
	{Compare: []kv.Compare{cmpNum("a", kv.CompareMod, kv.CompareEqual, 2)}, Success: []kv.Op{putOp("a", "no")}, Failure: []kv.Op{getOp("a")}},
	{Compare: []kv.Compare{cmpNum("a", kv.CompareVersion, kv.CompareGreater, 1), cmpNum("b", kv.CompareCreate, kv.CompareLess, 100)},
		Success: []kv.Op{putOp("d", "ver-gt")}},
	{Compare: []kv.Compare{cmpNum("nope", kv.CompareVersion, kv.CompareEqual, 0)}, Success: []kv.Op{putOp("nope", "created")}},
	{Compare: []kv.Compare{cmpNum("nope", kv.CompareVersion, kv.CompareEqual, 0)}, Success: []kv.Op{putOp("nope", "twice")},
		Failure: []kv.Op{getOp("nope")}},
	{Compare: []kv.Compare{cmpVal("b", kv.CompareEqual, "x")}, Success: []kv.Op{putOp("b", "y")}},
	{Compare: []kv.Compare{cmpVal("b", kv.CompareNotEqual, "y")}, Success: []kv.Op{putOp("b", "no")}, Failure: []kv.Op{putOp("e", "val-ne-failed")}},
	{Compare: []kv.Compare{cmpVal("b", kv.CompareLess, "z"), cmpVal("b", kv.CompareGreater, "a")}, Success: []kv.Op{putOp("f", "val-range")}},
	// A value compare on a missing key is false, whatever the operator.
	{Compare: []kv.Compare{cmpVal("missing", kv.CompareNotEqual, "q")}, Success: []kv.Op{putOp("g", "no")}, Failure: []kv.Op{getOp("missing")}},
	{Compare: []kv.Compare{cmpNum("a", kv.CompareMod, kv.CompareNotEqual, 0)}, Success: []kv.Op{putOp("g", "mod-ne")}},
	// Compares on the empty key (decided without etcd).
	{Compare: []kv.Compare{cmpNum("", kv.CompareVersion, kv.CompareEqual, 0)}, Success: []kv.Op{putOp("h", "empty-true")}},
	{Compare: []kv.Compare{cmpNum("", kv.CompareVersion, kv.CompareGreater, 0)}, Success: []kv.Op{putOp("h", "no")}, Failure: []kv.Op{getOp("h")}},
	{Compare: []kv.Compare{cmpVal("", kv.CompareEqual, "")}, Success: []kv.Op{putOp("h", "no")}, Failure: []kv.Op{putOp("h", "empty-val-false")}},
	// Gets of every shape, inside a writing transaction (they see its writes).
	{Success: []kv.Op{
		putOp("c/3", "c3"),
		{Type: kv.OpGet, Key: b("c/"), End: kv.PrefixEnd(b("c/"))},
		{Type: kv.OpGet, Key: b("c/"), End: kv.PrefixEnd(b("c/")), Limit: 2},
		{Type: kv.OpGet, Key: b("c/"), End: kv.PrefixEnd(b("c/")), KeysOnly: true},
		{Type: kv.OpGet, Key: b("c/"), End: kv.PrefixEnd(b("c/")), CountOnly: true},
		{Type: kv.OpGet, Key: b(""), End: []byte{0}, Limit: 3},
		{Type: kv.OpGet, Key: b("")},
	}},
	// A read-only transaction creates no revision.
	{Success: []kv.Op{getOp("a"), {Type: kv.OpGet, Key: b("b"), End: b("d")}}},
	// Deletes: a range, a single key, a missing key (no revision), several
	// in one transaction (one revision, sub-revisions in order).
	{Success: []kv.Op{delOp("c/", string(kv.PrefixEnd(b("c/"))))}},
	{Success: []kv.Op{delOp("b", "")}},
	{Success: []kv.Op{delOp("zzz", "")}},
	{Success: []kv.Op{putOp("x1", "1"), putOp("x2", "2"), delOp("a", ""), putOp("b", "again"), getOp("b")}},
	{Success: []kv.Op{delOp("", "x2")}},
	{Success: []kv.Op{putOp("big", strings.Repeat("v", 2<<10))}},
	{Success: []kv.Op{delOp("", "\x00")}},
	{Success: []kv.Op{putOp("after-all", "1")}},
}

// TestStoreMatchesKV runs the same transactions on the etcd store and on
// the kv store (a real bbolt file) and compares every response, the commit
// feed, the history and reads at every revision: revisions, versions, sub
// revisions and prev_kv must be the same.
func TestStoreMatchesKV(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	es := openStore(t, c, testOptions(c))
	ks, err := kv.Open(t.TempDir(), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	ctx := ctxT(t)

	if rev, compact := es.Revisions(); rev != 1 || compact != 1 {
		t.Fatalf("fresh cluster: Revisions() = %d, %d; want 1, 1", rev, compact)
	}
	efeed := subscribe(t, es)
	kfeed := subscribe(t, ks)
	for i, txn := range modelTxns {
		want, err := ks.Txn(ctx, txn)
		if err != nil {
			t.Fatalf("txn %d on kv: %v", i, err)
		}
		got, err := es.Txn(ctx, txn)
		if err != nil {
			t.Fatalf("txn %d on etcd: %v", i, err)
		}
		if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
			t.Errorf("txn %d response (-kv +etcd):\n%s", i, diff)
		}
		// The write is in the feed by the time Txn returns.
		if rev, _ := es.Revisions(); rev != got.Revision {
			t.Errorf("txn %d: Revisions() = %d after Txn returned revision %d", i, rev, got.Revision)
		}
	}
	last, _ := ks.Revisions()
	if diff := cmp.Diff(kfeed.waitFor(t, last), efeed.waitFor(t, last), cmpOpts); diff != "" {
		t.Errorf("commit feed (-kv +etcd):\n%s", diff)
	}

	t.Run("history", func(t *testing.T) {
		for _, tc := range []struct{ from, to, max int64 }{
			{1, 0, 0}, {2, 0, 0}, {3, 7, 0}, {5, 5, 0}, {1, 0, 3}, {4, 0, 1}, {last, last, 1},
			{last + 1, 0, 0}, {9, 4, 0}, {1, last + 10, 0},
		} {
			t.Run(fmt.Sprintf("%d-%d-%d", tc.from, tc.to, tc.max), func(t *testing.T) {
				ctx := ctxT(t)
				wb, wn, werr := ks.History(ctx, tc.from, tc.to, int(tc.max))
				gb, gn, gerr := es.History(ctx, tc.from, tc.to, int(tc.max))
				if werr != nil || gerr != nil {
					t.Fatalf("History: kv %v, etcd %v", werr, gerr)
				}
				if gn != wn {
					t.Errorf("next = %d, kv says %d", gn, wn)
				}
				if diff := cmp.Diff(wb, gb, cmpOpts); diff != "" {
					t.Errorf("batches (-kv +etcd):\n%s", diff)
				}
			})
		}
	})

	t.Run("range", func(t *testing.T) {
		ctx := ctxT(t)
		reqs := []kv.RangeRequest{
			{Key: b("a")},
			{Key: b("")},
			{Key: b(""), End: []byte{0}},
			{Key: b(""), End: []byte{0}, Limit: 2},
			{Key: b(""), End: []byte{0}, KeysOnly: true},
			{Key: b(""), End: []byte{0}, CountOnly: true},
			{Key: b("b"), End: b("x")},
			{Key: b("c/"), End: kv.PrefixEnd(b("c/"))},
			{Key: b("x"), End: b("b")},
		}
		for rev := int64(0); rev <= last; rev++ {
			for _, r := range reqs {
				r.Rev = rev
				want, werr := ks.Range(ctx, r)
				got, gerr := es.Range(ctx, r)
				if werr != nil || gerr != nil {
					t.Fatalf("Range(%+v): kv %v, etcd %v", r, werr, gerr)
				}
				if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
					t.Errorf("Range(%+v) (-kv +etcd):\n%s", r, diff)
				}
			}
		}
		if _, err := es.Range(ctx, kv.RangeRequest{Key: b("a"), Rev: last + 1}); !errors.Is(err, kv.ErrFutureRev) {
			t.Errorf("Range at a future revision: %v, want kv.ErrFutureRev", err)
		}
	})

	t.Run("status", func(t *testing.T) {
		want, err := ks.Status()
		if err != nil {
			t.Fatal(err)
		}
		got, err := es.Status()
		if err != nil {
			t.Fatal(err)
		}
		if got.Revision != want.Revision || got.CompactRevision != want.CompactRevision || got.Keys != want.Keys {
			t.Errorf("Status() = %+v, kv says %+v", got, want)
		}
		if got.DBSizeBytes <= 0 {
			t.Errorf("Status().DBSizeBytes = %d", got.DBSizeBytes)
		}
	})
}

func TestTxnErrors(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	s := openStore(t, c, etcdstore.Options{Endpoints: c.Endpoints(), MaxKeySize: 8, MaxValueSize: 16, MaxTxnOps: 3})
	ctx := ctxT(t)
	put(t, s, "k", "v")
	for _, tc := range []struct {
		name string
		txn  kv.TxnRequest
		want error
	}{
		{"put twice", kv.TxnRequest{Success: []kv.Op{putOp("a", "1"), putOp("a", "2")}}, etcdstore.ErrDuplicateKey},
		{"put in deleted range", kv.TxnRequest{Success: []kv.Op{delOp("a", "c"), putOp("b", "2")}}, etcdstore.ErrDuplicateKey},
		{"put twice in failure", kv.TxnRequest{Compare: []kv.Compare{cmpNum("k", kv.CompareVersion, kv.CompareEqual, 9)},
			Failure: []kv.Op{putOp("a", "1"), putOp("a", "2")}}, etcdstore.ErrDuplicateKey},
		{"too many ops", kv.TxnRequest{Success: []kv.Op{getOp("a"), getOp("b"), getOp("c"), getOp("d")}}, kv.ErrTooManyOps},
		{"too many compares", kv.TxnRequest{Compare: make([]kv.Compare, 4)}, kv.ErrTooManyOps},
		{"key too large", kv.TxnRequest{Success: []kv.Op{putOp("123456789", "v")}}, kv.ErrKeyTooLarge},
		{"value too large", kv.TxnRequest{Success: []kv.Op{putOp("k", strings.Repeat("v", 17))}}, kv.ErrValueTooLarge},
		{"empty put", kv.TxnRequest{Success: []kv.Op{putOp("", "v")}}, kv.ErrEmptyKey},
		{"empty delete", kv.TxnRequest{Success: []kv.Op{delOp("", "")}}, kv.ErrEmptyKey},
		{"bad compare target", kv.TxnRequest{Compare: []kv.Compare{{Key: b("k"), Target: 9}}}, kv.ErrInvalidCompare},
		{"bad compare op", kv.TxnRequest{Compare: []kv.Compare{{Key: b("k"), Op: 9}}}, kv.ErrInvalidCompare},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := s.Revisions()
			_, err := s.Txn(ctx, tc.txn)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Txn: %v, want %v", err, tc.want)
			}
			if cur, err := currentRevision(ctx, s); err != nil || cur != before {
				t.Errorf("etcd at revision %d (%v) after a refused transaction, want %d", cur, err, before)
			}
		})
	}
	if _, err := s.Txn(ctx, kv.TxnRequest{Success: []kv.Op{{Type: 9, Key: b("k")}}}); err == nil {
		t.Error("Txn with an unknown operation type: no error")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Put(canceled, b("k"), b("v")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context: %v", err)
	}
}

// currentRevision asks etcd (not the gateway) for its revision.
func currentRevision(ctx context.Context, s *etcdstore.Store) (int64, error) {
	resp, err := s.Client().Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// TestCompaction compacts through the store and through another client,
// and checks what reads, history, Revisions and Compact say afterwards.
func TestCompaction(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	opts := testOptions(c)
	opts.HealthInterval = time.Hour // compactions must be learned from answers alone
	s := openStore(t, c, opts)
	ctx := ctxT(t)
	for i := range 20 {
		put(t, s, fmt.Sprintf("k%d", i%4), fmt.Sprint(i))
	}
	// Revisions 2..21.
	if err := s.Compact(ctx, 99); !errors.Is(err, kv.ErrFutureRev) {
		t.Errorf("Compact(99): %v, want kv.ErrFutureRev", err)
	}
	if err := s.Compact(ctx, 1); !errors.Is(err, kv.ErrAlreadyCompacted) {
		t.Errorf("Compact(1): %v, want kv.ErrAlreadyCompacted", err)
	}
	if err := s.Compact(ctx, 8); err != nil {
		t.Fatalf("Compact(8): %v", err)
	}
	// etcd's compaction at 8 may drop events of revision 8 (its deletes):
	// the compact revision shown is 9.
	if _, compact := s.Revisions(); compact != 9 {
		t.Errorf("compact revision %d after Compact(8), want 9", compact)
	}
	for _, rev := range []int64{8, 9} {
		if err := s.Compact(ctx, rev); !errors.Is(err, kv.ErrAlreadyCompacted) {
			t.Errorf("Compact(%d) after Compact(8): %v, want kv.ErrAlreadyCompacted", rev, err)
		}
	}
	if _, err := s.Range(ctx, kv.RangeRequest{Key: b("k1"), Rev: 8}); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("Range at 8: %v, want kv.ErrCompacted", err)
	}
	if res, err := s.Range(ctx, kv.RangeRequest{Key: b("k1"), Rev: 9}); err != nil || res.Count != 1 || res.Rev != 9 {
		t.Errorf("Range at 9 = %+v, %v", res, err)
	}
	if _, _, err := s.History(ctx, 8, 0, 0); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("History from 8: %v, want kv.ErrCompacted", err)
	}
	if bs, next, err := s.History(ctx, 9, 0, 0); err != nil || next != 22 || len(bs) != 13 {
		t.Errorf("History from 9: %d batches, next %d, %v; want 13, 22", len(bs), next, err)
	}

	// Compacted by someone else: the gateway learns it from etcd's answers.
	cli := c.Client()
	if _, err := cli.Compact(ctx, 12); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.History(ctx, 10, 0, 0); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("History from 10 after a compaction at 12 elsewhere: %v, want kv.ErrCompacted", err)
	}
	if _, compact := s.Revisions(); compact != 13 {
		t.Errorf("compact revision %d after History met the compaction at 12", compact)
	}
	if _, err := cli.Compact(ctx, 15); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Range(ctx, kv.RangeRequest{Key: b("k1"), Rev: 13}); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("Range at 13 after a compaction at 15 elsewhere: %v, want kv.ErrCompacted", err)
	}
	if _, compact := s.Revisions(); compact != 16 {
		t.Errorf("compact revision %d after Range met the compaction at 15", compact)
	}
	if _, err := cli.Compact(ctx, 17); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(ctx, 17); !errors.Is(err, kv.ErrAlreadyCompacted) {
		t.Errorf("Compact(17) after a compaction at 17 elsewhere: %v, want kv.ErrAlreadyCompacted", err)
	}
	if _, compact := s.Revisions(); compact != 18 {
		t.Errorf("compact revision %d after Compact met the compaction at 17", compact)
	}

	// A new gateway finds the compact revision by itself.
	s2 := openStore(t, c, testOptions(c))
	if rev, compact := s2.Revisions(); rev != 21 || compact != 18 {
		t.Errorf("new gateway: Revisions() = %d, %d; want 21, 18", rev, compact)
	}
	// And the probe of a running one learns a compaction made elsewhere.
	if _, err := cli.Compact(ctx, 19); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, compact := s2.Revisions(); compact == 20 {
			break
		}
		if time.Now().After(deadline) {
			_, compact := s2.Revisions()
			t.Fatalf("probe: compact revision %d 10s after a compaction at 19 elsewhere", compact)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSnapshotStatusCheck covers the administrative calls.
func TestSnapshotStatusCheck(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	s := openStore(t, c, testOptions(c))
	ctx := ctxT(t)
	for i := range 10 {
		put(t, s, fmt.Sprintf("key/%d", i), strings.Repeat("x", 1000))
	}
	if _, err := s.Delete(ctx, b("key/3"), nil); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 12 || st.CompactRevision != 1 || st.Keys != 9 || st.DBSizeBytes < 10000 {
		t.Errorf("Status() = %+v; want revision 12, compact 1, 9 keys, >= 10000 bytes", st)
	}

	var buf bytes.Buffer
	rev, n, err := s.WriteSnapshot(&buf)
	if err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	if rev != 12 || n != int64(buf.Len()) || n < 10000+sha256.Size {
		t.Errorf("WriteSnapshot = revision %d, %d bytes (%d written)", rev, n, buf.Len())
	}
	// etcd's format: the bbolt file, then its SHA-256.
	data := buf.Bytes()
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if h := sha256.Sum256(body); !bytes.Equal(h[:], sum) {
		t.Error("snapshot does not end with the SHA-256 of its body")
	}
	if !bytes.Contains(body, []byte("key/9")) {
		t.Error("snapshot does not hold key/9")
	}

	if err := s.Check(); err != nil {
		t.Errorf("Check on a healthy cluster: %v", err)
	}
	// A follower, so that the cluster answers at once.
	down := (c.Leader() + 1) % c.Size()
	c.Kill(down)
	name := c.Member(down).Name
	if err := s.Check(); err == nil || !strings.Contains(err.Error(), "member "+name) {
		t.Errorf("Check with member %s down: %v, want an error naming it", name, err)
	}
	c.Restart(down)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Ready":  s.Ready(),
		"Check":  s.Check(),
		"Status": func() error { _, err := s.Status(); return err }(),
		"Range":  func() error { _, err := s.Range(ctx, kv.RangeRequest{Key: b("k")}); return err }(),
		"Put":    func() error { _, err := s.Put(ctx, b("k"), b("v")); return err }(),
		"History": func() error {
			_, _, err := s.History(ctx, 1, 0, 0)
			return err
		}(),
		"Compact": s.Compact(ctx, 5),
	} {
		if !errors.Is(err, kv.ErrClosed) {
			t.Errorf("%s after Close: %v, want kv.ErrClosed", name, err)
		}
	}
}

// TestHistoryAtCompactRevision: etcd's compaction at C drops the deletes
// made at C, so neither the history nor a read is served from C: the
// compact revision shown is C+1, whether the compaction went through this
// gateway or elsewhere (then History finds it out after its read).
func TestHistoryAtCompactRevision(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	opts := testOptions(c)
	opts.HealthInterval = time.Hour // compactions must be learned from answers alone
	s := openStore(t, c, opts)
	ctx := ctxT(t)
	put(t, s, "k", "v")                                   // 2
	if _, err := s.Delete(ctx, b("k"), nil); err != nil { // 3: a delete only
		t.Fatal(err)
	}
	put(t, s, "j", "v")                                   // 4
	put(t, s, "k", "w")                                   // 5
	if _, err := s.Delete(ctx, b("j"), nil); err != nil { // 6
		t.Fatal(err)
	}
	put(t, s, "j", "x") // 7

	// Elsewhere, at 3: the gateway does not know of it when it reads.
	if _, err := c.Client().Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if bs, _, err := s.History(ctx, 3, 0, 0); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("History from 3 after etcd compacted at 3: %d batches (first %+v), %v; want kv.ErrCompacted", len(bs), bs, err)
	}
	if _, compact := s.Revisions(); compact != 4 {
		t.Errorf("compact revision %d after History met etcd's compaction at 3, want 4", compact)
	}
	if bs, next, err := s.History(ctx, 4, 0, 0); err != nil || next != 8 || len(bs) != 4 || bs[0].Revision != 4 {
		t.Errorf("History from 4: %+v, next %d, %v; want revisions 4..7", bs, next, err)
	}

	// Through the gateway, at 6 (a delete only): 6 is gone, 7 is served.
	if err := s.Compact(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if _, compact := s.Revisions(); compact != 7 {
		t.Errorf("compact revision %d after Compact(6), want 7", compact)
	}
	if _, _, err := s.History(ctx, 6, 0, 0); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("History from 6 after Compact(6): %v, want kv.ErrCompacted", err)
	}
	if _, err := s.Range(ctx, kv.RangeRequest{Key: b("j"), Rev: 6}); !errors.Is(err, kv.ErrCompacted) {
		t.Errorf("Range at 6 after Compact(6): %v, want kv.ErrCompacted", err)
	}
	if bs, next, err := s.History(ctx, 7, 0, 0); err != nil || next != 8 || len(bs) != 1 || len(bs[0].Events) != 1 {
		t.Errorf("History from 7: %+v, next %d, %v; want revision 7", bs, next, err)
	}
}
