package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

func TestSubscribe(t *testing.T) {
	s := openStore(t, Options{})
	mustPut(t, s, "a", "1") // 2
	var mu sync.Mutex
	var got []int64
	rev, cancel := s.Subscribe(func(bs []Batch) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bs {
			got = append(got, b.Revision)
		}
	})
	if rev != 2 {
		t.Fatalf("Subscribe returned %d, want 2", rev)
	}
	mustPut(t, s, "a", "2") // 3
	mustPut(t, s, "b", "1") // 4
	cancel()
	cancel()                // idempotent
	mustPut(t, s, "c", "1") // 5
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]int64{3, 4}, got); diff != "" {
		t.Fatalf("revisions seen (-want +got):\n%s", diff)
	}
}

// TestSubscribeConcurrent subscribes while writers commit and checks that
// every subscriber sees exactly the revisions after the one Subscribe
// returned, each once, in order.
func TestSubscribeConcurrent(t *testing.T) {
	s := openStore(t, Options{NoSync: true})
	ctx := context.Background()
	const writers, perWriter = 8, 100
	type sub struct {
		mu     sync.Mutex
		start  int64
		seen   []int64
		cancel func()
	}
	var subs []*sub
	var subsMu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				if _, err := s.Put(ctx, []byte(fmt.Sprintf("w%d", w)), []byte{byte(i)}); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					sb := &sub{}
					sb.mu.Lock()
					sb.start, sb.cancel = s.Subscribe(func(bs []Batch) {
						sb.mu.Lock()
						defer sb.mu.Unlock()
						for _, b := range bs {
							sb.seen = append(sb.seen, b.Revision)
						}
					})
					sb.mu.Unlock()
					subsMu.Lock()
					subs = append(subs, sb)
					subsMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	end, _ := s.Revisions()
	for _, sb := range subs {
		sb.cancel()
		sb.mu.Lock()
		for i, r := range sb.seen {
			if r != sb.start+1+int64(i) {
				t.Fatalf("subscriber from %d saw %v", sb.start, sb.seen)
			}
		}
		if int64(len(sb.seen)) != end-sb.start {
			t.Fatalf("subscriber from %d saw %d revisions, want %d", sb.start, len(sb.seen), end-sb.start)
		}
		sb.mu.Unlock()
	}
}

func TestClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a", "1")
	// Writers racing with Close either commit or get ErrClosed.
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				_, err := s.Put(context.Background(), []byte(fmt.Sprintf("k%d", i)), []byte("v"))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	checks := map[string]error{}
	_, checks["Put"] = s.Put(ctx, []byte("a"), nil)
	_, checks["Delete"] = s.Delete(ctx, []byte("a"), nil)
	_, checks["Txn"] = s.Txn(ctx, TxnRequest{Success: []Op{{Type: OpGet, Key: []byte("a")}}})
	_, checks["Range"] = s.Range(ctx, RangeRequest{Key: []byte("a")})
	_, _, checks["History"] = s.History(ctx, 1, 0, 0)
	checks["Compact"] = s.Compact(ctx, 2)
	_, _, checks["WriteSnapshot"] = s.WriteSnapshot(&bytes.Buffer{})
	_, checks["Status"] = s.Status()
	checks["Check"] = s.Check()
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "2")
	mustPut(t, s, "a", "3")
	if _, err := s.Delete(context.Background(), []byte("b"), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	want := mustRange(t, s, RangeRequest{End: []byte{0}})
	wantHist, _, err := s.History(context.Background(), 3, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkAndClose(t, s)

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, s)
	if rev, compact := s.Revisions(); rev != 5 || compact != 3 {
		t.Fatalf("after reopen: revision %d, compact %d", rev, compact)
	}
	if diff := cmp.Diff(want, mustRange(t, s, RangeRequest{End: []byte{0}}), cmpOpts...); diff != "" {
		t.Fatalf("state after reopen (-want +got):\n%s", diff)
	}
	gotHist, _, err := s.History(context.Background(), 3, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantHist, gotHist, cmpOpts...); diff != "" {
		t.Fatalf("history after reopen (-want +got):\n%s", diff)
	}
	if resp := mustPut(t, s, "c", "4"); resp.Revision != 6 {
		t.Fatalf("first write after reopen at %d, want 6", resp.Revision)
	}
	if st, err := s.Status(); err != nil || st.Keys != 2 {
		t.Fatalf("Status %+v, %v", st, err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, []byte("not a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open of a garbage file succeeded")
	}
	// A bbolt file of another format version.
	dir = t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		v := make([]byte, 8)
		putUint64(v, 99)
		return b.Put(metaFormat, v)
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(dir, Options{}); err == nil {
		s.Close()
		t.Fatal("Open of format 99 succeeded")
	}
	// A directory that cannot be created.
	if s, err := Open(filepath.Join(path, "sub"), Options{}); err == nil {
		s.Close()
		t.Fatal("Open under a file succeeded")
	}
}

func TestSnapshot(t *testing.T) {
	s := openStore(t, Options{})
	for i := 0; i < 50; i++ {
		mustPut(t, s, fmt.Sprintf("k%02d", i%10), fmt.Sprint(i))
	}
	if err := s.Compact(context.Background(), 20); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rev, n, err := s.WriteSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if rev != 51 || n != int64(buf.Len()) {
		t.Fatalf("WriteSnapshot = %d, %d (buffer %d)", rev, n, buf.Len())
	}
	mustPut(t, s, "after", "snapshot")

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, r)
	if got, compact := r.Revisions(); got != 51 || compact != 20 {
		t.Fatalf("restored revision %d, compact %d", got, compact)
	}
	want := mustRange(t, s, RangeRequest{End: []byte{0}, Rev: 51})
	if diff := cmp.Diff(want, mustRange(t, r, RangeRequest{End: []byte{0}}), cmpOpts...); diff != "" {
		t.Fatalf("restored state (-want +got):\n%s", diff)
	}
	for _, rev := range []int64{20, 35} {
		want := mustRange(t, s, RangeRequest{End: []byte{0}, Rev: rev})
		if diff := cmp.Diff(want, mustRange(t, r, RangeRequest{End: []byte{0}, Rev: rev}), cmpOpts...); diff != "" {
			t.Fatalf("restored state at %d (-want +got):\n%s", rev, diff)
		}
	}
}

// TestCompactResume leaves a compaction half done, as a crash between two
// compaction transactions would, and checks that reopening finishes it.
func TestCompactResume(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{compactChunk: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		mustPut(t, s, fmt.Sprintf("k%d", i%4), fmt.Sprint(i))
		if i%7 == 0 {
			if _, err := s.Delete(context.Background(), []byte("k1"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := mustRange(t, s, RangeRequest{End: []byte{0}, Rev: 30})
	// Set the compact revision the way Compact does, without waking the
	// compactor, then run two chunks by hand.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := make([]byte, 8)
		putUint64(b, 30)
		return tx.Bucket(bucketMeta).Put(metaCompact, b)
	}); err != nil {
		t.Fatal(err)
	}
	s.compact.Store(30)
	for i := 0; i < 2; i++ {
		if done, err := s.compactChunk(); err != nil || done {
			t.Fatalf("chunk %d: done %v, %v", i, done, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !compactionUnfinished(t, dir) {
		t.Fatal("compaction finished already")
	}
	s, err = Open(dir, Options{compactChunk: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, s)
	waitCompacted(t, s)
	checkInvariants(t, s)
	if diff := cmp.Diff(want, mustRange(t, s, RangeRequest{End: []byte{0}, Rev: 30}), cmpOpts...); diff != "" {
		t.Fatalf("state at 30 (-want +got):\n%s", diff)
	}
	// Moving the target while a scan is under way.
	if err := s.Compact(context.Background(), 35); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(context.Background(), 40); err != nil {
		t.Fatal(err)
	}
	waitCompacted(t, s)
}

func TestRetainRevisions(t *testing.T) {
	s := openStore(t, Options{RetainRevisions: 10, retainInterval: 5 * time.Millisecond})
	for i := 0; i < 30; i++ {
		mustPut(t, s, "k", fmt.Sprint(i))
	}
	waitFor(t, func() bool { _, c := s.Revisions(); return c == 22 })
	if _, err := s.Range(context.Background(), RangeRequest{Key: []byte("k"), Rev: 22}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Range(context.Background(), RangeRequest{Key: []byte("k"), Rev: 21}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("read below retention: %v", err)
	}
}

func TestRetainDuration(t *testing.T) {
	s := openStore(t, Options{RetainDuration: 500 * time.Millisecond, retainInterval: 5 * time.Millisecond})
	for i := 0; i < 5; i++ {
		mustPut(t, s, "old", fmt.Sprint(i)) // 2..6
	}
	time.Sleep(550 * time.Millisecond)
	// Everything is older than the window: only the current state is kept.
	waitFor(t, func() bool { _, c := s.Revisions(); return c == 6 })
	mustPut(t, s, "new", "1") // 7
	mustPut(t, s, "new", "2") // 8
	// Revision 7 is recent: it stays readable for about 500ms.
	if _, err := s.Range(context.Background(), RangeRequest{Key: []byte("new"), Rev: 7}); err != nil {
		t.Fatalf("read inside the window: %v", err)
	}
	waitFor(t, func() bool { _, c := s.Revisions(); return c == 8 })
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestCorruptRecords(t *testing.T) {
	// Decoders return errors, never panic, on any truncation.
	var rec eventRecord
	full := appendEvent(nil, EventPut, []byte("key"), 2, 3, []byte("value"), &KeyValue{CreateRevision: 2, ModRevision: 4, Version: 2, Value: []byte("old")})
	if err := decodeEvent(full, &rec, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(full); i++ {
		if err := decodeEvent(full[:i], &rec, false); err == nil {
			t.Fatalf("truncated record of %d bytes decoded", i)
		}
	}
	bad := append([]byte{}, full...)
	bad[0] = 7
	if err := decodeEvent(bad, &rec, false); err == nil {
		t.Fatal("bad type decoded")
	}
	if _, _, _, _, err := decodeCurrent([]byte{0xff}); err == nil {
		t.Fatal("bad current record decoded")
	}
}

// TestFailedGroup makes bbolt refuse a write (a key over bbolt's own limit,
// let through by raising the store's limit past its cap): the request
// fails, the revision does not move, nothing is published, and the store
// goes on working.
func TestFailedGroup(t *testing.T) {
	s := openStore(t, Options{MaxKeySize: 40000})
	if s.opts.MaxKeySize != maxKeySizeCap {
		t.Fatalf("MaxKeySize %d, want the cap %d", s.opts.MaxKeySize, maxKeySizeCap)
	}
	s.opts.MaxKeySize = 40000
	mustPut(t, s, "a", "1")
	published := 0
	_, cancel := s.Subscribe(func(bs []Batch) { published += len(bs) })
	defer cancel()
	_, err := s.Txn(context.Background(), TxnRequest{Success: []Op{
		{Type: OpPut, Key: []byte("b"), Value: []byte("2")},
		{Type: OpPut, Key: bytes.Repeat([]byte("x"), 33000)},
	}})
	if err == nil {
		t.Fatal("write of a 33000-byte key succeeded")
	}
	if rev, _ := s.Revisions(); rev != 2 || published != 0 {
		t.Fatalf("after the failed write: revision %d, %d batches published", rev, published)
	}
	if res := mustRange(t, s, RangeRequest{Key: []byte("b")}); res.Count != 0 || res.Rev != 2 {
		t.Fatalf("failed write is visible: %+v", res)
	}
	if resp := mustPut(t, s, "b", "3"); resp.Revision != 3 || published != 1 {
		t.Fatalf("next write at %d, %d batches published", resp.Revision, published)
	}
}
