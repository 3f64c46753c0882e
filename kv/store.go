package kv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// FileName is the name of the bbolt file inside the store's directory.
const FileName = "watchgate.db"

// initialMmapSize is the address space bbolt maps up front. Growing the map
// later makes the writer wait for every open read transaction, so a large
// initial map keeps long reads (History, WriteSnapshot) from stalling
// commits. It is address space only, not memory.
const initialMmapSize = 1 << 30

// Store is a durable multi-version key-value store on one bbolt file. All
// its methods are safe for concurrent use. Open starts the goroutines it
// owns (the committer, the compactor and, with retention options, the
// retention loop); Close stops them.
type Store struct {
	opts Options
	log  zerolog.Logger
	db   *bolt.DB

	// mu is the commit lock: it guards subs and nextSub and makes the
	// publication of a group commit (rev advancing and the subscribers
	// being called) atomic with Subscribe. Held by the committer while it
	// calls the subscribers, so a subscriber must not call Subscribe or a
	// cancel function.
	mu      sync.Mutex
	subs    []subscriber
	nextSub int

	// rev is the last published revision; written only by the committer
	// (under mu), read anywhere.
	rev atomic.Int64
	// pubKeys is the live key count at rev. pubSeq is odd while the
	// committer updates rev and pubKeys, so that Status reads the pair
	// consistently without a lock (seqlock; one writer, the committer).
	pubKeys atomic.Int64
	pubSeq  atomic.Uint64
	// compact is the compact revision; written under compactMu, before
	// it is durable (see Compact).
	compact atomic.Int64
	// compactMu serialises Compact calls; never held while taking mu or qmu.
	compactMu sync.Mutex
	// closed is set once Close starts.
	closed atomic.Bool

	// qmu guards pending and qclosed: the queue between writers and the
	// committer. Never held while doing I/O.
	qmu     sync.Mutex
	pending []*request
	qclosed bool
	// wake is signalled (non-blocking, capacity 1) when pending grows.
	wake chan struct{}

	// compactWake is signalled when the compact revision advanced.
	compactWake chan struct{}

	stopc     chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	// Committer state, touched only by the committer goroutine.
	keys     int64 // live keys after the last commit
	lastTime int64 // last commit time written to the times bucket
	g        group
}

type subscriber struct {
	id int
	fn func([]Batch)
}

// Open opens (creating if missing) the store in directory dir; the bbolt file
// is dir/watchgate.db. Starting on a file produced by WriteSnapshot restores it.
// A store left by a crash opens with every transaction that was acknowledged,
// and finishes a compaction that the crash interrupted.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("kv: open: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		// Another process holding the file fails Open instead of hanging.
		Timeout:         5 * time.Second,
		NoSync:          opts.NoSync,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", path, err)
	}
	s := &Store{
		opts:        opts,
		log:         opts.Logger.With().Str("component", "kv").Logger(),
		db:          db,
		wake:        make(chan struct{}, 1),
		compactWake: make(chan struct{}, 1),
		stopc:       make(chan struct{}),
	}
	s.g.enc.reuse = true
	s.g.enc.size = 256 << 10
	needCompact, err := s.load()
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.wg.Add(2)
	go s.runCommitter()
	go s.runCompactor()
	if needCompact {
		s.signalCompactor()
	}
	if opts.RetainRevisions > 0 || opts.RetainDuration > 0 {
		s.wg.Add(1)
		go s.runRetention()
	}
	s.log.Info().Str("path", path).Int64("revision", s.rev.Load()).
		Int64("compact_revision", s.compact.Load()).Msg("store opened")
	return s, nil
}

// load creates the buckets of a new file, checks the format of an existing
// one and reads the revision counters. It reports whether a compaction was
// left unfinished.
func (s *Store) load() (needCompact bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketKV, bucketHistory, bucketIndex, bucketTimes} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaFormat) == nil {
			if k, _ := tx.Bucket(bucketHistory).Cursor().First(); k != nil {
				return fmt.Errorf("%w: history without a format version", errCorrupt)
			}
			one := make([]byte, 8)
			putUint64(one, 1)
			next := make([]byte, revKeyLen)
			putRevKey(next, 1, 0)
			zero := make([]byte, 8)
			fv := make([]byte, 8)
			putUint64(fv, formatVersion)
			for _, kv := range []struct{ k, v []byte }{
				{metaFormat, fv}, {metaRev, one}, {metaCompact, one}, {metaKeys, zero},
				{metaCompactDone, one}, {metaCompactTarget, one}, {metaCompactNext, next},
			} {
				if err := meta.Put(kv.k, kv.v); err != nil {
					return err
				}
			}
		}
		if v, err := getUint64(meta.Get(metaFormat)); err != nil || v != formatVersion {
			return fmt.Errorf("kv: unsupported file format %d (want %d)", v, formatVersion)
		}
		rev, err := getUint64(meta.Get(metaRev))
		if err != nil {
			return err
		}
		compact, err := getUint64(meta.Get(metaCompact))
		if err != nil {
			return err
		}
		keys, err := getUint64(meta.Get(metaKeys))
		if err != nil {
			return err
		}
		done, err := getUint64(meta.Get(metaCompactDone))
		if err != nil {
			return err
		}
		if k, _ := tx.Bucket(bucketHistory).Cursor().Last(); k != nil {
			if len(k) != revKeyLen {
				return fmt.Errorf("%w: history key of %d bytes", errCorrupt, len(k))
			}
			if last, _ := parseRevKey(k); last > rev {
				return fmt.Errorf("%w: history at revision %d beyond revision %d", errCorrupt, last, rev)
			}
		}
		if compact > rev || compact < 1 {
			return fmt.Errorf("%w: compact revision %d, revision %d", errCorrupt, compact, rev)
		}
		if k, v := tx.Bucket(bucketTimes).Cursor().Last(); k != nil {
			t, err := getUint64(v)
			if err != nil {
				return err
			}
			s.lastTime = t
		}
		s.rev.Store(rev)
		s.pubKeys.Store(keys)
		s.compact.Store(compact)
		s.keys = keys
		needCompact = done != compact
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("kv: open: %w", err)
	}
	return needCompact, nil
}

// Close stops the store's goroutines, fails the writes still queued with
// ErrClosed and closes the file. A group commit already under way finishes
// first. Close is idempotent; later calls return the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.qmu.Lock()
		s.qclosed = true
		s.qmu.Unlock()
		close(s.stopc)
		s.wg.Wait()
		// Compact holds compactMu across its own transaction.
		s.compactMu.Lock()
		s.closeErr = s.db.Close()
		s.compactMu.Unlock()
		s.log.Info().Int64("revision", s.rev.Load()).Msg("store closed")
	})
	return s.closeErr
}

// Revisions returns the current revision and the compact revision: reads at
// rev >= compact are served (compact is 1 on a store never compacted).
func (s *Store) Revisions() (rev, compact int64) {
	// The compact revision first: it was at most rev when it was set, so
	// compact <= rev always holds.
	compact = s.compact.Load()
	return s.rev.Load(), compact
}

// Subscribe registers fn to receive every commit after the current revision,
// which it returns, atomically: fn sees exactly the revisions > rev, in
// order, each once. fn is called from the commit path after fsync, once per
// group commit with its revisions in order; it must not block (the watch hub
// only enqueues), and must not call Subscribe or a cancel function. The
// events may be retained (they are never modified); the slice may not.
// cancel unregisters fn: once it returned, fn is not called again. On a
// closed store fn is never called.
func (s *Store) Subscribe(fn func([]Batch)) (rev int64, cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextSub
	s.nextSub++
	s.subs = append(s.subs, subscriber{id: id, fn: fn})
	var once sync.Once
	return s.rev.Load(), func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for i, sub := range s.subs {
				if sub.id == id {
					// Copy so that a slice being iterated is not shifted.
					subs := make([]subscriber, 0, len(s.subs)-1)
					subs = append(subs, s.subs[:i]...)
					s.subs = append(subs, s.subs[i+1:]...)
					return
				}
			}
		})
	}
}

// WriteSnapshot writes a consistent copy of the bbolt file to w and returns
// the revision it holds and the bytes written. The copy is a complete store
// file: saved as watchgate.db in an empty directory, Open serves it.
func (s *Store) WriteSnapshot(w io.Writer) (rev int64, n int64, err error) {
	if s.closed.Load() {
		return 0, 0, ErrClosed
	}
	err = s.view(func(tx *bolt.Tx) error {
		r, _, err := readRevs(tx)
		if err != nil {
			return err
		}
		rev = r
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return 0, n, fmt.Errorf("kv: snapshot: %w", err)
	}
	return rev, n, nil
}

// Status summarises the store: the published revision and the live keys at
// it (as Revisions, never a group commit still on its way), the compact
// revision as Revisions reports it, and the file's size.
func (s *Store) Status() (Status, error) {
	if s.closed.Load() {
		return Status{}, ErrClosed
	}
	// The compact revision first: it was at most rev when it was set.
	compact := s.compact.Load()
	rev, keys := s.publishedState()
	st := Status{Revision: rev, CompactRevision: compact, Keys: keys}
	err := s.view(func(tx *bolt.Tx) error {
		st.DBSizeBytes = tx.Size()
		return nil
	})
	if err != nil {
		return Status{}, err
	}
	return st, nil
}

// publish makes rev, with keys live keys, the published revision. Called
// by the committer only, under mu.
func (s *Store) publish(rev, keys int64) {
	s.pubSeq.Add(1)
	s.rev.Store(rev)
	s.pubKeys.Store(keys)
	s.pubSeq.Add(1)
}

// publishedState returns the published revision and the live keys at it,
// read as one pair.
func (s *Store) publishedState() (rev, keys int64) {
	for {
		seq := s.pubSeq.Load()
		if seq&1 == 0 {
			rev, keys = s.rev.Load(), s.pubKeys.Load()
			if s.pubSeq.Load() == seq {
				return rev, keys
			}
		}
		runtime.Gosched()
	}
}

// Check runs bbolt's consistency check on the open file and checks that the
// live key count agrees with the keys stored. It holds the write lock while
// it runs (bbolt's check is only safe so), so commits wait for it.
func (s *Store) Check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return mapErr(err)
	}
	defer func() { _ = tx.Rollback() }()
	var errs []error
	for err := range tx.Check() {
		errs = append(errs, err)
	}
	keys, err := getUint64(tx.Bucket(bucketMeta).Get(metaKeys))
	if err != nil {
		errs = append(errs, err)
	} else if n := int64(tx.Bucket(bucketKV).Stats().KeyN); n != keys {
		errs = append(errs, fmt.Errorf("%w: %d live keys counted, %d stored", errCorrupt, keys, n))
	}
	if len(errs) > 0 {
		return fmt.Errorf("kv: check: %w", errors.Join(errs...))
	}
	return nil
}

// view runs fn in a bbolt read transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return mapErr(s.db.View(fn))
}

// mapErr turns bbolt's "database not open" into ErrClosed.
func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// readRevs reads the current and compact revisions of a transaction's view.
// The compactor deletes only after the compact revision it works for is
// durable, so a view whose compact revision is C holds everything needed to
// read at any revision >= C. Reads refuse below the higher of C and the
// in-memory compact revision (see readFloor).
func readRevs(tx *bolt.Tx) (rev, compact int64, err error) {
	meta := tx.Bucket(bucketMeta)
	if rev, err = getUint64(meta.Get(metaRev)); err != nil {
		return 0, 0, err
	}
	if compact, err = getUint64(meta.Get(metaCompact)); err != nil {
		return 0, 0, err
	}
	return rev, compact, nil
}

// readFloor returns the lowest revision a read on a view whose compact
// revision is viewCompact may serve: the higher of it and the compact
// revision Revisions reports. Compact publishes the in-memory revision
// before making it durable, so it is never below a durable one: a read is
// refused below exactly the compact revision Revisions reports from then on,
// and a read that Revisions says is served finds its data in the view.
func (s *Store) readFloor(viewCompact int64) int64 {
	return max(viewCompact, s.compact.Load())
}

// checkCall is the common entry check of the public methods.
func (s *Store) checkCall(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}
