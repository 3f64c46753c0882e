package kv

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A checkpoint writes the overlay's revisions to bbolt: it turns the
// memtable into imm (between two group commits, so imm holds published
// revisions only), writes imm's revisions to bbolt in one transaction
// with its fsync (kv, history, index and times buckets, and meta's
// revision and live key count), then drops imm and deletes the log
// segments that hold nothing above bbolt's revision. A crash at any point
// loses nothing: until bbolt's revision moved, the log holds every
// revision above it.

// checkpoint writes every published revision of the overlay to bbolt.
func (s *Store) checkpoint() error {
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	ov := s.ov.Load()
	if ov.imm == nil {
		s.rotMu.Lock()
		ov = s.ov.Load()
		if ov.mem.hi() == ov.mem.lo {
			s.rotMu.Unlock()
			return nil
		}
		ov = &overlay{imm: ov.mem, mem: newMemtable(ov.mem.hi())}
		s.ov.Store(ov)
		s.rotMu.Unlock()
	}
	imm := ov.imm
	if err := s.writeCheckpoint(imm); err != nil {
		// imm stays: the next checkpoint writes it again.
		return fmt.Errorf("kv: checkpoint: %w", mapErr(err))
	}
	s.hook("checkpoint-committed")
	applied := imm.hi()
	s.applied.Store(applied)
	// Only checkpoints replace the overlay, and they hold ckMu.
	s.ov.Store(&overlay{mem: ov.mem})
	if s.wal != nil {
		if err := s.wal.release(applied); err != nil {
			s.log.Warn().Err(err).Msg("deleting log segments failed")
		}
	}
	return nil
}

// writeCheckpoint writes m's revisions to bbolt in one transaction.
func (s *Store) writeCheckpoint(m *memtable) error {
	st := m.st.Load()
	if len(st.batches) == 0 {
		return nil
	}
	// A fresh arena: its chunks are garbage once the transaction committed.
	a := &arena{size: 256 << 10}
	return s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		rev, err := getUint64(meta.Get(metaRev))
		if err != nil {
			return err
		}
		if rev != m.lo {
			return fmt.Errorf("%w: checkpoint of revisions %d.. on a file at %d", errCorrupt, m.lo+1, rev)
		}
		kvb, hist, idx, times := tx.Bucket(bucketKV), tx.Bucket(bucketHistory), tx.Bucket(bucketIndex), tx.Bucket(bucketTimes)
		hist.FillPercent = 1 // appended in revision order
		times.FillPercent = 1
		for _, b := range st.batches {
			for i := range b.Events {
				e := &b.Events[i]
				hk := a.alloc(revKeyLen)
				putRevKey(hk, b.Revision, e.Sub)
				var value []byte
				if e.Type == EventPut {
					value = e.KV.Value
				}
				n := eventLen(e.KV.Key, value, e.PrevKV)
				rec := a.finish(appendEvent(a.grow(n), e.Type, e.KV.Key, e.KV.CreateRevision, e.KV.Version, value, e.PrevKV), n)
				if err := hist.Put(hk, rec); err != nil {
					return err
				}
			}
		}
		// Keys in order: the index and kv buckets are written in key order.
		for n := m.keys.first(); n != nil; n = n.next[0].Load() {
			l := n.vers.Load()
			if l == nil || len(l.evs) == 0 {
				continue
			}
			pn := escapedLen(n.key)
			p := a.finish(appendEscaped(a.grow(pn), n.key), pn)
			for i := range l.evs {
				e := &l.evs[i]
				ik := a.alloc(len(p) + revKeyLen)
				copy(ik, p)
				putRevKey(ik[len(p):], e.KV.ModRevision, e.Sub)
				iv := indexPut
				if e.Type == EventDelete {
					iv = indexDelete
				}
				if err := idx.Put(ik, iv); err != nil {
					return err
				}
			}
			last := &l.evs[len(l.evs)-1]
			if last.Type == EventDelete {
				if err := kvb.Delete(n.key); err != nil {
					return err
				}
				continue
			}
			cn := currentLen(last.KV.Value)
			cur := a.finish(appendCurrent(a.grow(cn), last.KV.CreateRevision, last.KV.ModRevision, last.KV.Version, last.KV.Value), cn)
			if err := kvb.Put(n.key, cur); err != nil {
				return err
			}
		}
		for _, g := range st.groups {
			k, v := a.alloc(8), a.alloc(8)
			putUint64(k, g.first)
			putUint64(v, g.time)
			if err := times.Put(k, v); err != nil {
				return err
			}
		}
		last := st.groups[len(st.groups)-1]
		b := a.alloc(8)
		putUint64(b, m.lo+int64(len(st.batches)))
		if err := meta.Put(metaRev, b); err != nil {
			return err
		}
		b = a.alloc(8)
		putUint64(b, last.keys)
		if err := meta.Put(metaKeys, b); err != nil {
			return err
		}
		s.hook("checkpoint-writing")
		return nil
	})
}

// runCheckpointer is the checkpointer goroutine: it checkpoints every
// checkpointInterval, and sooner when the memtable grows large.
func (s *Store) runCheckpointer() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-t.C:
		case <-s.ckWake:
		}
		if err := s.checkpoint(); err != nil {
			s.log.Error().Err(err).Msg("checkpoint failed; retrying")
		}
	}
}

func (s *Store) signalCheckpointer() {
	select {
	case s.ckWake <- struct{}{}:
	default:
	}
}

// makeRoom bounds the overlay's memory: when the memtable holds more than
// maxOverlayBytes, the committer checkpoints before taking more writes, and
// writers wait meanwhile.
func (s *Store) makeRoom() error {
	if s.ov.Load().mem.bytes.Load() < s.opts.maxOverlayBytes {
		return nil
	}
	return s.checkpoint()
}

// hook calls the test hook, if any, at a named point.
func (s *Store) hook(point string) {
	if s.opts.hook != nil {
		s.opts.hook(point)
	}
}
