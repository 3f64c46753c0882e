package kv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// holdPublish holds the commit lock, so that the committer stops after
// committing its next group to the file and before publishing it. release
// lets it go on.
func holdPublish(tb testing.TB, s *Store) (release func()) {
	tb.Helper()
	s.mu.Lock()
	var done bool
	release = func() {
		if !done {
			done = true
			s.mu.Unlock()
		}
	}
	tb.Cleanup(release)
	return release
}

// waitFileRev waits until the bbolt file's committed revision is rev.
func waitFileRev(tb testing.TB, s *Store, rev int64) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var cur int64
		err := s.view(func(tx *bolt.Tx) error {
			var err error
			cur, _, err = readRevs(tx)
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
		if cur == rev {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("file revision %d, want %d", cur, rev)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadsShowPublishedRevision holds a group commit between its bbolt
// commit and its publication: every read meanwhile shows the published
// revision, not the group's.
func TestReadsShowPublishedRevision(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Options{})
	mustPut(t, s, "a", "1") // rev 2
	mustPut(t, s, "c", "1") // rev 3
	release := holdPublish(t, s)
	written := make(chan error, 1)
	go func() {
		_, err := s.Txn(ctx, TxnRequest{Success: []Op{
			{Type: OpPut, Key: []byte("a"), Value: []byte("2")},
			{Type: OpPut, Key: []byte("b"), Value: []byte("1")},
			{Type: OpDelete, Key: []byte("c")},
			{Type: OpPut, Key: []byte("d"), Value: []byte("1")},
		}})
		written <- err
	}()
	waitFileRev(t, s, 4)
	if rev, _ := s.Revisions(); rev != 3 {
		t.Fatalf("Revisions() = %d while the group is held, want 3", rev)
	}

	all := RangeRequest{Key: []byte{0}, End: []byte{0}}
	for _, tc := range []struct {
		name string
		req  RangeRequest
		want RangeResult
	}{
		{"key", RangeRequest{Key: []byte("a")}, RangeResult{Rev: 3, Count: 1, KVs: []KeyValue{kv("a", "1", 2, 2, 1)}}},
		{"new key", RangeRequest{Key: []byte("b")}, RangeResult{Rev: 3}},
		{"all", all, RangeResult{Rev: 3, Count: 2, KVs: []KeyValue{kv("a", "1", 2, 2, 1), kv("c", "1", 3, 3, 1)}}},
		{"all at published", RangeRequest{Key: all.Key, End: all.End, Rev: 3}, RangeResult{Rev: 3, Count: 2, KVs: []KeyValue{kv("a", "1", 2, 2, 1), kv("c", "1", 3, 3, 1)}}},
		{"count", RangeRequest{Key: all.Key, End: all.End, CountOnly: true}, RangeResult{Rev: 3, Count: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Range(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpOpts...); diff != "" {
				t.Fatalf("Range (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := s.Range(ctx, RangeRequest{Key: []byte("a"), Rev: 4}); !errors.Is(err, ErrFutureRev) {
		t.Errorf("Range at the unpublished revision: %v, want ErrFutureRev", err)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 3 || st.CompactRevision != 1 || st.Keys != 2 {
		t.Errorf("Status() = %+v, want revision 3, compact revision 1, 2 keys", st)
	}
	if _, next, err := s.History(ctx, 1, 0, 0); err != nil || next != 4 {
		t.Errorf("History(1, 0) next = %d, %v; want 4", next, err)
	}

	// A transaction without writes must not answer from the held group
	// either: it answers once that group is published, or from before it.
	type txnResult struct {
		resp      TxnResponse
		published int64
		err       error
	}
	read := make(chan txnResult, 1)
	go func() {
		resp, err := s.Txn(ctx, TxnRequest{Success: []Op{{Type: OpGet, Key: []byte("a")}}})
		published, _ := s.Revisions()
		read <- txnResult{resp, published, err}
	}()
	select {
	case r := <-read:
		checkReadTxn(t, r.resp, r.published, r.err)
	case <-time.After(50 * time.Millisecond):
		release()
		r := <-read
		checkReadTxn(t, r.resp, r.published, r.err)
	}
	release()
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	got := mustRange(t, s, RangeRequest{Key: []byte("a")})
	if diff := cmp.Diff(RangeResult{Rev: 4, Count: 1, KVs: []KeyValue{kv("a", "2", 2, 4, 2)}}, got, cmpOpts...); diff != "" {
		t.Fatalf("Range after publication (-want +got):\n%s", diff)
	}
	if st, err := s.Status(); err != nil || st.Revision != 4 || st.Keys != 3 {
		t.Fatalf("Status() after publication = %+v, %v; want revision 4, 3 keys", st, err)
	}
}

// checkReadTxn checks a read-only transaction's response: its revision was
// published when it returned, and its value is the one of that revision.
func checkReadTxn(tb testing.TB, resp TxnResponse, published int64, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	if resp.Revision > published {
		tb.Fatalf("read transaction at revision %d, published revision %d", resp.Revision, published)
	}
	want := map[int64]KeyValue{3: kv("a", "1", 2, 2, 1), 4: kv("a", "2", 2, 4, 2)}[resp.Revision]
	rr := resp.Responses[0].Range
	if diff := cmp.Diff(RangeResult{Rev: resp.Revision, Count: 1, KVs: []KeyValue{want}}, *rr, cmpOpts...); diff != "" {
		tb.Fatalf("read transaction (-want +got):\n%s", diff)
	}
}

// TestCompactedSeesPublishedCompact reads below the new compact revision
// right after Compact made it durable: the read is refused with
// ErrCompacted, Revisions reports a compact revision above the one it asked
// for, and the error carries both.
func TestCompactedSeesPublishedCompact(t *testing.T) {
	ctx := context.Background()
	var s *Store
	var checked int
	s = openStore(t, Options{compactDurable: func(rev int64) {
		checked++
		_, err := s.Range(ctx, RangeRequest{Key: []byte("k"), Rev: rev - 1})
		if !errors.Is(err, ErrCompacted) {
			t.Errorf("Range at %d: %v, want ErrCompacted", rev-1, err)
			return
		}
		if _, compact := s.Revisions(); compact <= rev-1 {
			t.Errorf("Range at %d refused as compacted while Revisions() reports compact revision %d", rev-1, compact)
		}
		var ce *CompactedError
		if !errors.As(err, &ce) {
			t.Errorf("Range at %d: %v, want a *CompactedError", rev-1, err)
			return
		}
		if diff := cmp.Diff(&CompactedError{Requested: rev - 1, Compact: rev}, ce); diff != "" {
			t.Errorf("CompactedError (-want +got):\n%s", diff)
		}
	}})
	for i := 0; i < 5; i++ {
		mustPut(t, s, "k", "v") // revs 2..6
	}
	if err := s.Compact(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if checked != 1 {
		t.Fatalf("compact hook called %d times, want 1", checked)
	}
	for _, tc := range []struct {
		name string
		read func() error
		want *CompactedError
	}{
		{"range", func() error {
			_, err := s.Range(ctx, RangeRequest{Key: []byte("k"), Rev: 2})
			return err
		}, &CompactedError{Requested: 2, Compact: 4}},
		{"history", func() error {
			_, _, err := s.History(ctx, 3, 0, 0)
			return err
		}, &CompactedError{Requested: 3, Compact: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.read()
			if !errors.Is(err, ErrCompacted) {
				t.Fatalf("error %v, want ErrCompacted", err)
			}
			var ce *CompactedError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T), want a *CompactedError", err, err)
			}
			if diff := cmp.Diff(tc.want, ce); diff != "" {
				t.Fatalf("CompactedError (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadsBetweenPublishedRevisions runs reads alongside concurrent
// writers: every read shows a revision published between its call and its
// return, never one still being published.
func TestReadsBetweenPublishedRevisions(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, Options{NoSync: true})
	const writers, writes, readers = 4, 150, 2
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				if _, err := s.Put(ctx, []byte(fmt.Sprintf("k/%d/%d", w, i%7)), []byte("v")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	reads := []struct {
		name string
		read func() (int64, error)
	}{
		{"range", func() (int64, error) {
			res, err := s.Range(ctx, RangeRequest{Key: []byte("k/"), End: PrefixEnd([]byte("k/")), CountOnly: true})
			return res.Rev, err
		}},
		{"txn", func() (int64, error) {
			resp, err := s.Txn(ctx, TxnRequest{Success: []Op{{Type: OpGet, Key: []byte("k/0/0")}}})
			return resp.Revision, err
		}},
		{"status", func() (int64, error) {
			st, err := s.Status()
			return st.Revision, err
		}},
	}
	var rwg sync.WaitGroup
	for r := range readers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rd := reads[(i+r)%len(reads)]
				before, _ := s.Revisions()
				got, err := rd.read()
				after, _ := s.Revisions()
				if err != nil {
					t.Errorf("%s: %v", rd.name, err)
					return
				}
				if got < before || got > after {
					t.Errorf("%s at revision %d, published %d before and %d after", rd.name, got, before, after)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
}
