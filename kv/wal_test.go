package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// walOpts are options whose overlay is checkpointed only by Compact,
// WriteSnapshot and Close, with small log segments.
func walOpts() Options {
	o := Options{walSegmentSize: 4 << 10}
	neverCheckpoint(&o)
	return o
}

// crashCopy copies the store directory src as a crash would leave it: the
// bbolt file and the log as they are on disk now. The store must not be
// writing to its bbolt file meanwhile (no checkpoint or compaction).
func crashCopy(tb testing.TB, src string) string {
	tb.Helper()
	dst := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dst, walDirName), 0o755); err != nil {
		tb.Fatal(err)
	}
	files := []string{FileName}
	segs, err := listWAL(filepath.Join(src, walDirName))
	if err != nil {
		tb.Fatal(err)
	}
	for _, seg := range segs {
		files = append(files, filepath.Join(walDirName, filepath.Base(seg.path)))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

// walRecordOffsets returns the offset and length of every record of the
// segment file at path.
func walRecordOffsets(tb testing.TB, path string) (offs, lens []int) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	for off := 0; off < len(data); {
		_, n, st := parseWALRecord(data[off:])
		if st != recordOK {
			break
		}
		offs = append(offs, off)
		lens = append(lens, n)
		off += n
	}
	return offs, lens
}

// lastSegment returns the path of dir's last log segment.
func lastSegment(tb testing.TB, dir string) string {
	tb.Helper()
	segs, err := listWAL(filepath.Join(dir, walDirName))
	if err != nil || len(segs) == 0 {
		tb.Fatalf("segments: %v, %v", segs, err)
	}
	return segs[len(segs)-1].path
}

// writeSome writes n transactions of puts, overwrites, deletes and range
// deletes, one per revision.
func writeSome(tb testing.TB, s *Store, n int) {
	tb.Helper()
	ctx := context.Background()
	for i := 0; i < n; i++ {
		var err error
		switch i % 5 {
		case 0, 1, 2:
			_, err = s.Put(ctx, []byte(fmt.Sprintf("k/%03d", i%37)), bytes.Repeat([]byte{byte('a' + i%26)}, i%90))
		case 3:
			_, err = s.Txn(ctx, TxnRequest{Success: []Op{
				{Type: OpPut, Key: []byte(fmt.Sprintf("t/%d", i)), Value: []byte("x")},
				{Type: OpPut, Key: []byte(fmt.Sprintf("k/%03d", (i+1)%37)), Value: nil},
			}})
		default:
			_, err = s.Delete(ctx, []byte(fmt.Sprintf("k/%03d", i%37)), nil)
			if err == nil && i%10 == 9 {
				_, err = s.Delete(ctx, []byte("t/"), PrefixEnd([]byte("t/")))
			}
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// sameUpTo checks that got serves the same reads as want at every
// revision from 1 to rev, and the same history.
func sameUpTo(tb testing.TB, want, got *Store, rev int64) {
	tb.Helper()
	ctx := context.Background()
	all := RangeRequest{Key: []byte{0}, End: []byte{0}}
	for r := int64(1); r <= rev; r++ {
		all.Rev = r
		if diff := cmp.Diff(mustRange(tb, want, all), mustRange(tb, got, all), cmpOpts...); diff != "" {
			tb.Fatalf("state at %d (-want +got):\n%s", r, diff)
		}
	}
	wh, _, err := want.History(ctx, 1, rev, 0)
	if err != nil {
		tb.Fatal(err)
	}
	gh, next, err := got.History(ctx, 1, rev, 0)
	if err != nil || next != rev+1 {
		tb.Fatalf("History: next %d, %v", next, err)
	}
	if diff := cmp.Diff(wh, gh, cmpOpts...); diff != "" {
		tb.Fatalf("history (-want +got):\n%s", diff)
	}
}

// TestWALReplay reopens a crash copy of a store whose revisions are all in
// the log: every revision is replayed, read for read and event for event.
func TestWALReplay(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, walOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, s)
	writeSome(t, s, 150)
	rev, _ := s.Revisions()
	if segs, _ := listWAL(filepath.Join(dir, walDirName)); len(segs) < 3 {
		t.Fatalf("%d log segments, want several", len(segs))
	}
	if s.applied.Load() != 1 {
		t.Fatalf("checkpointed to %d", s.applied.Load())
	}
	c, err := Open(crashCopy(t, dir), walOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, c)
	if got, _ := c.Revisions(); got != rev {
		t.Fatalf("replayed to %d, want %d", got, rev)
	}
	if c.applied.Load() != rev {
		t.Fatalf("replay checkpointed to %d, want %d", c.applied.Load(), rev)
	}
	sameUpTo(t, s, c, rev)
	if st, err := c.Status(); err != nil || st.Keys != mustRange(t, s, RangeRequest{Key: []byte{0}, End: []byte{0}, CountOnly: true}).Count {
		t.Fatalf("Status %+v, %v", st, err)
	}
	if resp := mustPut(t, c, "after", "1"); resp.Revision != rev+1 {
		t.Fatalf("first write after replay at %d, want %d", resp.Revision, rev+1)
	}
}

// TestWALTornTail tears the last record of a crash copy in several ways:
// Open drops it (it was never acknowledged), keeps every record before,
// and the store goes on from there, also across a second reopen.
func TestWALTornTail(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, walOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, s)
	writeSome(t, s, 60)
	rev, _ := s.Revisions()
	for _, tc := range []struct {
		name string
		tear func(data []byte, off, n int) // the last record is data[off:off+n]
		want int64                         // revision after replay
	}{
		{"last byte zero", func(d []byte, off, n int) { d[off+n-1] = 0 }, rev - 1},
		{"second half zero", func(d []byte, off, n int) { clear(d[off+n/2 : off+n]) }, rev - 1},
		{"header only", func(d []byte, off, n int) { clear(d[off+walHeaderLen : off+n]) }, rev - 1},
		{"half a header", func(d []byte, off, n int) { clear(d[off+2 : off+n]) }, rev - 1},
		{"length beyond the file", func(d []byte, off, n int) { d[off+3] = 0x7f }, rev - 1},
		{"garbage after", func(d []byte, off, n int) {
			for i := off + n; i < off+n+100 && i < len(d); i++ {
				d[i] = byte(i*7 + 1)
			}
		}, rev},
		{"zeros after", func(d []byte, off, n int) {}, rev},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cdir := crashCopy(t, dir)
			path := lastSegment(t, cdir)
			offs, lens := walRecordOffsets(t, path)
			if len(offs) == 0 {
				t.Fatal("no record in the last segment")
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			tc.tear(data, offs[len(offs)-1], lens[len(lens)-1])
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Open(cdir, walOpts())
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := c.Revisions(); got != tc.want {
				c.Close()
				t.Fatalf("replayed to %d, want %d", got, tc.want)
			}
			sameUpTo(t, s, c, tc.want)
			mustPut(t, c, "after", "1")
			checkAndClose(t, c)
			c, err = Open(cdir, walOpts())
			if err != nil {
				t.Fatal(err)
			}
			defer checkAndClose(t, c)
			if got, _ := c.Revisions(); got != tc.want+1 {
				t.Fatalf("reopened at %d, want %d", got, tc.want+1)
			}
			if segs, _ := listWAL(filepath.Join(cdir, walDirName)); len(segs) != 1 {
				t.Fatalf("%d segments after reopening, want 1", len(segs))
			}
		})
	}
}

// TestWALCorrupt damages a crash copy's log where a crash cannot: Open
// fails with errWALCorrupt and leaves the log as it was.
func TestWALCorrupt(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, walOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, s)
	writeSome(t, s, 120)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, segs []walSegment)
	}{
		{"bad record followed by good ones", func(t *testing.T, segs []walSegment) {
			flipInRecord(t, segs[len(segs)-1].path, 0)
		}},
		{"bad last record of a segment followed by a segment", func(t *testing.T, segs []walSegment) {
			flipInRecord(t, segs[0].path, -1)
		}},
		{"missing segment", func(t *testing.T, segs []walSegment) {
			if err := os.Remove(segs[1].path); err != nil {
				t.Fatal(err)
			}
		}},
		{"stray file", func(t *testing.T, segs []walSegment) {
			if err := os.WriteFile(filepath.Join(filepath.Dir(segs[0].path), "x.wal"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cdir := crashCopy(t, dir)
			segs, err := listWAL(filepath.Join(cdir, walDirName))
			if err != nil || len(segs) < 3 {
				t.Fatalf("segments %v, %v", segs, err)
			}
			tc.damage(t, segs)
			before := dirFiles(t, filepath.Join(cdir, walDirName))
			c, err := Open(cdir, walOpts())
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, errWALCorrupt) {
				t.Fatalf("Open: %v, want errWALCorrupt", err)
			}
			if diff := cmp.Diff(before, dirFiles(t, filepath.Join(cdir, walDirName))); diff != "" {
				t.Fatalf("log changed by a failed Open (-before +after):\n%s", diff)
			}
		})
	}
}

// flipInRecord flips a byte in the body of record i (-1: the last) of the
// segment at path; the record must be followed by another one when i is
// not -1.
func flipInRecord(t *testing.T, path string, i int) {
	t.Helper()
	offs, lens := walRecordOffsets(t, path)
	if len(offs) < 2 {
		t.Fatalf("%d records in %s", len(offs), path)
	}
	if i < 0 {
		i = len(offs) - 1
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[offs[i]+lens[i]-1] ^= 0x40
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dirFiles lists dir's files with their sizes.
func dirFiles(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = info.Size()
	}
	return m
}

// TestCloseCheckpoints closes a store whose revisions are all in the log:
// afterwards the bbolt file alone holds them.
func TestCloseCheckpoints(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, walOpts())
	if err != nil {
		t.Fatal(err)
	}
	writeSome(t, s, 80)
	rev, _ := s.Revisions()
	want := mustRange(t, s, RangeRequest{Key: []byte{0}, End: []byte{0}})
	if s.applied.Load() != 1 {
		t.Fatalf("checkpointed to %d before Close", s.applied.Load())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var fileRev, keys int64
	if err := db.View(func(tx *bolt.Tx) error {
		fileRev, _, err = readRevs(tx)
		if err != nil {
			return err
		}
		keys, err = getUint64(tx.Bucket(bucketMeta).Get(metaKeys))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if fileRev != rev || keys != want.Count {
		t.Fatalf("file at revision %d with %d keys, want %d and %d", fileRev, keys, rev, want.Count)
	}
	segs, err := listWAL(filepath.Join(dir, walDirName))
	if err != nil {
		t.Fatal(err)
	}
	if groups, err := readWAL(segs, rev); err != nil || len(groups) != 0 {
		t.Fatalf("log above the file's revision: %d groups, %v", len(groups), err)
	}
}

// TestSnapshotOverlay snapshots a store whose revisions are all in the
// overlay: the snapshot holds them.
func TestSnapshotOverlay(t *testing.T) {
	s := openStore(t, walOpts())
	writeSome(t, s, 40)
	rev, _ := s.Revisions()
	var buf bytes.Buffer
	got, _, err := s.WriteSnapshot(&buf)
	if err != nil || got != rev {
		t.Fatalf("WriteSnapshot at %d, %v; want %d", got, err, rev)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer checkAndClose(t, r)
	sameUpTo(t, s, r, rev)
}

// TestOverlayBound writes with checkpoints left to the memory bound only:
// the overlay never holds much more than the bound, and nothing is lost.
func TestOverlayBound(t *testing.T) {
	const bound = 32 << 10
	opts := walOpts()
	opts.maxOverlayBytes = bound
	opts.NoSync = true
	s := openStore(t, opts)
	var peak atomic.Int64
	_, cancel := s.Subscribe(func([]Batch) {
		ov := s.ov.Load()
		n := ov.mem.bytes.Load()
		if ov.imm != nil {
			n += ov.imm.bytes.Load()
		}
		if n > peak.Load() {
			peak.Store(n)
		}
	})
	defer cancel()
	const writers, puts = 16, 150
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < puts; i++ {
				if _, err := s.Put(context.Background(), []byte(fmt.Sprintf("w%d/%d", w, i%10)), bytes.Repeat([]byte("v"), 200)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	rev, _ := s.Revisions()
	if rev != writers*puts+1 {
		t.Fatalf("revision %d, want %d", rev, writers*puts+1)
	}
	// One group of 16 puts holds about 16 * (2*200 + 300) bytes.
	if p := peak.Load(); p > bound+16<<10 {
		t.Fatalf("overlay peaked at %d bytes, bound %d", p, bound)
	}
	if s.applied.Load() < rev/2 {
		t.Fatalf("checkpointed to %d only", s.applied.Load())
	}
}

// TestCompactRacingCheckpoints compacts continuously while writers commit
// and checkpoints run every millisecond: reads at the compact revision are
// served, the final state is the one the subscriber feed gives, and the
// file is consistent.
func TestCompactRacingCheckpoints(t *testing.T) {
	s := openStore(t, Options{NoSync: true, compactChunk: 3, checkpointInterval: time.Millisecond, checkpointRevs: 3})
	var f feed
	s.Subscribe(f.add)
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				key := []byte(fmt.Sprintf("k%d", (w*7+i)%20))
				var err error
				if i%6 == 5 {
					_, err = s.Delete(ctx, key, nil)
				} else {
					_, err = s.Put(ctx, key, []byte(fmt.Sprint(i)))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			rev, compact := s.Revisions()
			if rev-3 > compact {
				if err := s.Compact(ctx, rev-3); err != nil && !errors.Is(err, ErrAlreadyCompacted) {
					t.Error(err)
					return
				}
			}
			_, compact = s.Revisions()
			_, err := s.Range(ctx, RangeRequest{Key: []byte("k"), End: PrefixEnd([]byte("k")), Rev: compact})
			if err != nil && !errors.Is(err, ErrCompacted) {
				t.Error(err)
				return
			}
			if err != nil {
				if _, now := s.Revisions(); now == compact {
					t.Errorf("read at the compact revision %d refused: %v", compact, err)
					return
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	cwg.Wait()
	f.mu.Lock()
	state := map[string]KeyValue{}
	for _, b := range f.batches {
		for _, e := range b.Events {
			if e.Type == EventPut {
				state[string(e.KV.Key)] = e.KV
			} else {
				delete(state, string(e.KV.Key))
			}
		}
	}
	f.mu.Unlock()
	want := modelRange(state, []byte("k"), PrefixEnd([]byte("k")), 0, false, false)
	got := mustRange(t, s, RangeRequest{Key: []byte("k"), End: PrefixEnd([]byte("k"))})
	want.Rev = got.Rev
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("final state (-want +got):\n%s", diff)
	}
}

// FuzzWALRecord feeds arbitrary bytes to the log record parser and
// decoder: never a panic, and what decodes encodes back to the same record.
func FuzzWALRecord(f *testing.F) {
	prev := &KeyValue{Key: []byte("k"), Value: []byte("old"), CreateRevision: 2, ModRevision: 3, Version: 1}
	events := []Event{
		{Type: EventPut, KV: KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 2, ModRevision: 4, Version: 2}, PrevKV: prev},
		{Type: EventPut, KV: KeyValue{Key: []byte("x"), Value: []byte{}, CreateRevision: 5, ModRevision: 5, Version: 1}},
		{Type: EventDelete, KV: KeyValue{Key: []byte("k"), ModRevision: 5}, Sub: 1, PrevKV: prev},
	}
	rec, _, err := appendWALRecord(nil, nil, 4, 1e18, 7, events, []span{{rev: 4, start: 0, end: 1}, {rev: 5, start: 1, end: 3}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rec)
	f.Add(rec[:len(rec)-1])
	f.Add(append(append([]byte{}, rec...), rec...))
	f.Add(make([]byte, 20))
	f.Fuzz(func(t *testing.T, data []byte) {
		validAfterBad(data)
		body, n, st := parseWALRecord(data)
		if st != recordOK {
			return
		}
		if n != len(body)+walHeaderLen {
			t.Fatalf("record of %d bytes with a body of %d", n, len(body))
		}
		g, err := decodeWALRecord(body)
		if err != nil {
			return
		}
		var evs []Event
		var spans []span
		for _, b := range g.batches {
			start := len(evs)
			evs = append(evs, b.Events...)
			spans = append(spans, span{rev: b.Revision, start: start, end: len(evs)})
		}
		again, _, err := appendWALRecord(nil, nil, g.first, g.time, g.keys, evs, spans)
		if err != nil {
			t.Fatal(err)
		}
		body2, _, st := parseWALRecord(again)
		if st != recordOK {
			t.Fatal("re-encoded record does not parse")
		}
		g2, err := decodeWALRecord(body2)
		if err != nil {
			t.Fatalf("re-encoded record: %v", err)
		}
		if diff := cmp.Diff(g, g2, cmp.AllowUnexported(walGroup{}), cmpOpts[0]); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
