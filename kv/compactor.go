package kv

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Compaction has two steps. Compact publishes the new compact revision C
// in memory and makes it durable in meta; from the first, every read and
// History below C fails. Reads check C (the higher of their own bbolt
// view's and the in-memory one), and nothing is deleted for C before C is
// durable, so a view holds all it needs to read at C or later. The
// compactor goroutine then deletes what no read at C or later needs, in
// transactions of bounded size (Options.compactChunk history events each)
// so that commits never wait long for it:
//
//   - for every event (K, r, s) with r <= C, the index entries and history
//     records of K at (r', s') < (r, s) with r' < C: versions that a newer
//     version at or below C hides;
//   - a delete event (K, r) with r < C itself: with the older versions gone,
//     it only says K did not exist;
//   - times entries that no revision at or after C needs.
//
// What is kept: per key, its latest version at or below C when that is a put
// (reads at C need it), and every event at C or later (History needs them).
// History records below C that are kept are never scanned: History starts
// at C or later.
//
// The compactor scans the history bucket from a position saved in meta
// with every chunk (compact_next), for the target saved in compact_target;
// compact_done is the last target finished. A crash between chunks resumes
// from the saved position. When C moves while a scan is under way, the scan
// goes on towards the new C after going back to the start of the old
// target's revision, whose events were handled with the old bound.

// Compact drops history older than rev: afterwards reads and history below
// rev fail with a *CompactedError (matching ErrCompacted). From the moment
// Revisions reports the new compact revision, reads below it are refused,
// and only then (Compact returns after both). ErrFutureRev if rev > current,
// ErrAlreadyCompacted if rev <= the compact revision.
//
// Compact returns once the new compact revision is durable; the space is
// reclaimed after, by the store's compactor goroutine (bbolt reuses freed
// pages; the file does not shrink).
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if err := s.checkCall(ctx); err != nil {
		return err
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	cur, compact := s.Revisions()
	if rev > cur {
		return fmt.Errorf("%w: revision %d, current revision %d", ErrFutureRev, rev, cur)
	}
	if rev <= compact {
		return fmt.Errorf("%w: revision %d, compact revision %d", ErrAlreadyCompacted, rev, compact)
	}
	// Published before it is durable, so that it is never below the
	// durable one: reads refuse below the in-memory compact revision as
	// well as below their view's, so Revisions and the reads agree at
	// every moment (see readFloor).
	s.compact.Store(rev)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := make([]byte, 8)
		putUint64(b, rev)
		return tx.Bucket(bucketMeta).Put(metaCompact, b)
	})
	if err != nil {
		// Nothing was compacted: no view shows rev. Reads refused below
		// rev meanwhile are served again.
		s.compact.Store(compact)
		return fmt.Errorf("kv: compact: %w", mapErr(err))
	}
	if s.opts.compactDurable != nil {
		s.opts.compactDurable(rev)
	}
	s.signalCompactor()
	s.log.Debug().Int64("compact_revision", rev).Msg("compact revision set")
	return nil
}

func (s *Store) signalCompactor() {
	select {
	case s.compactWake <- struct{}{}:
	default:
	}
}

// runCompactor is the compactor goroutine: it works through the physical
// compaction one chunk at a time whenever the compact revision moved.
func (s *Store) runCompactor() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stopc:
			return
		case <-s.compactWake:
		}
		for {
			select {
			case <-s.stopc:
				return
			default:
			}
			done, err := s.compactChunk()
			if err != nil {
				s.log.Error().Err(err).Msg("compaction failed; retrying")
				t := time.NewTimer(time.Second)
				select {
				case <-s.stopc:
					t.Stop()
					return
				case <-t.C:
				}
				continue
			}
			if done {
				break
			}
		}
	}
}

// compactChunk runs one compaction transaction and reports whether the
// compaction is complete.
func (s *Store) compactChunk() (done bool, err error) {
	chunk := s.opts.compactChunk
	var deleted int
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		target, err := getUint64(meta.Get(metaCompact))
		if err != nil {
			return err
		}
		doneRev, err := getUint64(meta.Get(metaCompactDone))
		if err != nil {
			return err
		}
		if doneRev == target {
			done = true
			return nil
		}
		scanTarget, err := getUint64(meta.Get(metaCompactTarget))
		if err != nil {
			return err
		}
		pos := meta.Get(metaCompactNext)
		if len(pos) != revKeyLen {
			return fmt.Errorf("%w: compaction position of %d bytes", errCorrupt, len(pos))
		}
		var next [revKeyLen]byte
		copy(next[:], pos)
		if scanTarget != target {
			if r, s := parseRevKey(next[:]); revKeyLess(scanTarget, 0, r, s) {
				putRevKey(next[:], scanTarget, 0)
			}
			scanTarget = target
		}

		var (
			a          arena
			idel, hdel [][]byte
			rec        eventRecord
			p          []byte
		)
		hist, idx := tx.Bucket(bucketHistory), tx.Bucket(bucketIndex)
		ic := idx.Cursor()
		finished := true
		n := 0
		hc := hist.Cursor()
		for k, v := hc.Seek(next[:]); k != nil; k, v = hc.Next() {
			if len(k) != revKeyLen {
				return fmt.Errorf("%w: history key of %d bytes", errCorrupt, len(k))
			}
			r, sub := parseRevKey(k)
			if r > target {
				break
			}
			if n == chunk {
				copy(next[:], k)
				finished = false
				break
			}
			n++
			if err := decodeEvent(v, &rec, true); err != nil {
				return fmt.Errorf("history at %d.%d: %w", r, sub, err)
			}
			p = appendEscaped(p[:0], rec.key)
			for ik, _ := ic.Seek(p); ik != nil && isEntryOf(ik, p); ik, _ = ic.Next() {
				r2, s2 := parseRevKey(ik[len(p):])
				if r2 >= target || !revKeyLess(r2, s2, r, sub) {
					break
				}
				ik = a.copy(ik)
				idel = append(idel, ik)
				hdel = append(hdel, ik[len(p):])
			}
			if rec.typ == EventDelete && r < target {
				ik := a.alloc(len(p) + revKeyLen)
				copy(ik, p)
				copy(ik[len(p):], k)
				idel = append(idel, ik)
				hdel = append(hdel, ik[len(p):])
			}
		}
		for i := range idel {
			if err := idx.Delete(idel[i]); err != nil {
				return err
			}
			if err := hist.Delete(hdel[i]); err != nil {
				return err
			}
		}
		deleted = len(idel)

		// Keep the last times entry at or below the target: it dates the
		// revisions from its own up to the target.
		times := tx.Bucket(bucketTimes)
		var tdel [][]byte
		tc := times.Cursor()
		tk, _ := tc.First()
		for tk != nil && len(tdel) < chunk {
			nk, _ := tc.Next()
			if nk == nil {
				break
			}
			if r, err := getUint64(nk); err != nil || r > target {
				break
			}
			tdel = append(tdel, a.copy(tk))
			tk = nk
		}
		for _, k := range tdel {
			if err := times.Delete(k); err != nil {
				return err
			}
		}
		if len(tdel) == chunk {
			finished = false
		}

		b := make([]byte, 8)
		putUint64(b, scanTarget)
		if err := meta.Put(metaCompactTarget, b); err != nil {
			return err
		}
		if finished {
			putRevKey(next[:], target, 0)
			if err := meta.Put(metaCompactDone, b); err != nil {
				return err
			}
			done = true
		}
		return meta.Put(metaCompactNext, next[:])
	})
	if err != nil {
		return false, fmt.Errorf("kv: compaction: %w", mapErr(err))
	}
	s.log.Debug().Int("deleted", deleted).Bool("done", done).Msg("compaction chunk")
	return done, nil
}

// runRetention is the retention goroutine: it compacts the revisions that
// RetainRevisions and RetainDuration no longer keep.
func (s *Store) runRetention() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.retainInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case now := <-t.C:
			target, err := s.retentionTarget(now)
			if err != nil {
				s.log.Error().Err(err).Msg("retention failed")
				continue
			}
			if _, compact := s.Revisions(); target <= compact {
				continue
			}
			err = s.Compact(context.Background(), target)
			if err != nil && !errors.Is(err, ErrAlreadyCompacted) && !errors.Is(err, ErrClosed) {
				s.log.Error().Err(err).Msg("retention failed")
			}
		}
	}
}

// retentionTarget returns the compact revision the retention options ask
// for at time now (0 for none).
func (s *Store) retentionTarget(now time.Time) (int64, error) {
	cur, _ := s.Revisions()
	var target int64
	if n := s.opts.RetainRevisions; n > 0 {
		target = cur - n + 1
	}
	if d := s.opts.RetainDuration; d > 0 {
		cutoff := now.Add(-d).UnixNano()
		err := s.view(func(tx *bolt.Tx) error {
			viewRev, _, err := readRevs(tx)
			if err != nil {
				return err
			}
			// The times bucket starts at the group holding the compact
			// revision: scanning it to the first commit at or after the
			// cutoff touches only entries about to be compacted.
			c := tx.Bucket(bucketTimes).Cursor()
			first := true
			for k, v := c.First(); k != nil; k, v = c.Next() {
				t, err := getUint64(v)
				if err != nil {
					return err
				}
				if t >= cutoff {
					if !first {
						// The revisions before k are older than the cutoff.
						r, err := getUint64(k)
						if err != nil {
							return err
						}
						target = max(target, r)
					}
					return nil
				}
				first = false
			}
			if !first {
				// Every commit is older than the cutoff: keep the current
				// state only.
				target = max(target, viewRev)
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	return min(target, cur), nil
}
