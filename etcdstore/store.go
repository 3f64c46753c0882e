package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/watchgate/watchgate/kv"
)

// Store is the kv store's API served by an etcd cluster, so that any
// number of stateless gateways can front one cluster. Revisions, create
// and mod revisions, versions and compaction are etcd's own: a revision a
// client got from one gateway is valid on every other.
//
// Each Store holds one etcd watch on the whole keyspace, the commit feed,
// and hands every revision to its subscribers once and in order (see
// Subscribe). A background probe keeps Ready current. All methods are safe
// for concurrent use. New starts the goroutines the store owns; Close
// stops them.
type Store struct {
	opts Options
	log  zerolog.Logger
	cli  *clientv3.Client

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
	once   sync.Once

	// mu makes the publication of the feed's revisions (rev advancing and
	// the subscribers being called) atomic with Subscribe. Held while the
	// subscribers are called, so a subscriber must not call Subscribe or
	// a cancel function.
	mu      sync.Mutex
	subs    []subscriber
	nextSub int

	// rev is the last revision handed to the subscribers; written only by
	// the feed, under mu.
	rev atomic.Int64
	// compact is the highest compact revision learned; it only grows.
	compact atomic.Int64

	// revMu guards revCh, closed and replaced each time rev advances.
	revMu sync.Mutex
	revCh chan struct{}

	// fmu guards the feed's watch cancel function and generation.
	fmu        sync.Mutex
	feedCancel context.CancelFunc
	feedGen    int64
	feedUp     atomic.Bool   // the feed's watch is created and delivering
	firstOnce  sync.Once     // closes feedFirst
	feedFirst  chan struct{} // closed when the feed's first watch is created

	// hmu guards the probe's results.
	hmu      sync.Mutex
	probeErr error     // the last probe's error, nil after a success
	lastOK   time.Time // the last successful probe
	etcdRev  int64     // etcd's revision at the last successful probe
	target   int64     // a revision etcd reported that the feed must reach...
	since    time.Time // ...by since + StallTimeout
	stalled  bool

	// discMu serialises compact revision discoveries.
	discMu sync.Mutex

	// failed is closed when the store fails for good (failure set).
	failed  chan struct{}
	failure atomic.Pointer[error]
}

type subscriber struct {
	id int
	fn func([]kv.Batch)
}

// New connects to the etcd cluster, reads its current revision and compact
// revision, and starts the commit feed from the revision after it and the
// health probe. It returns once the feed's etcd watch is established, so
// that a new store is Ready at once. It keeps trying to reach the cluster
// until ctx is done, so a gateway may start before its cluster.
func New(ctx context.Context, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcdstore: no etcd endpoints")
	}
	tlsCfg, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		// Detects a member that vanished without closing its connections.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		TLS:                  tlsCfg,
		Username:             opts.Username,
		Password:             opts.Password,
		// Values up to MaxValueSize, plus keys and framing.
		MaxCallSendMsgSize: max(2<<20, 2*opts.MaxValueSize),
		Logger:             zap.NewNop(),
		Context:            context.Background(),
		DialOptions: []grpc.DialOption{
			// gRPC's default backoff grows to two minutes between
			// reconnection attempts: after an outage, members that are
			// back would stay unused that long.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: opts.DialTimeout,
			}),
		},
	}
	log := opts.Logger.With().Str("component", "etcdstore").Logger()
	cli, err := dial(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	s := &Store{
		opts:      opts,
		log:       log,
		cli:       cli,
		revCh:     make(chan struct{}),
		failed:    make(chan struct{}),
		feedFirst: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.compact.Store(1)
	rev, err := s.first(ctx)
	if err != nil {
		s.cancel()
		cli.Close()
		return nil, err
	}
	s.rev.Store(rev)
	s.hmu.Lock()
	s.lastOK, s.etcdRev, s.target, s.since = time.Now(), rev, rev, time.Now()
	s.hmu.Unlock()
	s.wg.Add(2)
	go s.runFeed()
	go s.runProbe()
	select {
	case <-s.feedFirst:
	case <-s.failed:
		err := s.Ready()
		s.Close()
		return nil, err
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("%w: the commit feed's watch was not established: %v", ErrUnavailable, ctx.Err())
	}
	s.log.Info().Strs("endpoints", opts.Endpoints).Int64("revision", rev).
		Int64("compact_revision", s.compact.Load()).Msg("etcd store opened")
	return s, nil
}

// dial makes the etcd client. With a user name the client authenticates
// at once, so an unreachable cluster fails here: that is retried until ctx
// is done, a refused password is not.
func dial(ctx context.Context, cfg clientv3.Config, log zerolog.Logger) (*clientv3.Client, error) {
	delay := 100 * time.Millisecond
	for {
		cli, err := clientv3.New(cfg)
		if err == nil {
			return cli, nil
		}
		err = fmt.Errorf("etcdstore: connecting to %s: %w", strings.Join(cfg.Endpoints, ","), err)
		if !errors.Is(err, context.DeadlineExceeded) && !unavailable(rpctypes.Error(err)) {
			return nil, err
		}
		log.Warn().Err(err).Msg("waiting for etcd")
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%v)", err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// first reads the cluster's revision and compact revision, retrying until
// ctx is done.
func (s *Store) first(ctx context.Context) (int64, error) {
	delay := 100 * time.Millisecond
	for {
		rev, err := s.currentRev(ctx)
		if err == nil {
			if err = s.discoverCompact(ctx); err == nil {
				return rev, nil
			}
		}
		s.log.Warn().Err(err).Strs("endpoints", s.opts.Endpoints).Msg("waiting for etcd")
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("etcdstore: reaching etcd at %s: %w (last error: %v)",
				strings.Join(s.opts.Endpoints, ","), ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// Close stops the feed and the probe and closes the etcd client. Calls
// under way fail; later calls return kv.ErrClosed. Subscribers are not
// called once Close returned. Close is idempotent.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.closed.Store(true)
		s.cancel()
		s.wg.Wait()
		err = s.cli.Close()
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		s.log.Info().Int64("revision", s.rev.Load()).Msg("etcd store closed")
	})
	return err
}

// Client returns the store's etcd client, for operations the store does not
// offer (member lists, alarms). It must not be closed.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Revisions returns the gateway's revision and compact revision.
//
// rev is the last revision the commit feed handed to the subscribers: the
// state this gateway's watchers have been shown. etcd may be a little
// ahead (writes through other gateways not yet received); writes through
// this gateway are received before Txn returns.
//
// compact is the highest compact revision the gateway has learned (1 when
// it knows of none): read from etcd at start, advanced by its own Compact
// calls, by every etcd answer that a revision was compacted (a read, a
// history read, the feed) and by the probe, which checks every
// HealthInterval that reads at compact are still served and looks the
// compact revision up again when not. So a compaction made through
// another gateway, etcdctl or etcd's automatic compaction shows here
// within about one HealthInterval, and at once when a request meets it.
// Reads at compact or above are served unless such a compaction happened
// meanwhile; reads below it are not.
//
// compact is etcd's compact revision plus one: etcd's compaction at C
// keeps the state at C but drops the deletes made at C (a tombstone is
// never kept), so a watch or history read from C would miss them. The
// first revision whose events are all still there is C+1, and that is
// the compact revision a client is shown.
func (s *Store) Revisions() (rev, compact int64) {
	return s.rev.Load(), shownCompact(s.compact.Load())
}

// shownCompact is the compact revision shown for etcd's compact revision
// c (1 when etcd was never compacted).
func shownCompact(c int64) int64 {
	if c > 1 {
		return c + 1
	}
	return c
}

// noteCompact raises the known compact revision to c.
func (s *Store) noteCompact(c int64) {
	for {
		old := s.compact.Load()
		if c <= old {
			return
		}
		if s.compact.CompareAndSwap(old, c) {
			s.log.Info().Int64("compact_revision", c).Msg("compaction seen")
			return
		}
	}
}

// Subscribe registers fn to receive every revision after the current one,
// which it returns, atomically: fn sees exactly the revisions > rev, in
// order, each once, one kv.Batch per revision with its events in
// sub-revision order. fn is called from the feed's goroutine, once per
// etcd watch response with the new revisions it holds; it must not block,
// and must not call Subscribe or a cancel function. The events may be
// retained (they are never modified); the slice may not. cancel
// unregisters fn: once it returned, fn is not called again.
//
// When the cluster is unreachable the subscribers stay registered and the
// feed resumes from the next revision when it is back, so they miss
// nothing. If that revision was compacted meanwhile the store fails for
// good (ErrFeedLost from Ready, Failed closed) and fn is not called again.
func (s *Store) Subscribe(fn func([]kv.Batch)) (rev int64, cancel func()) {
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
					// Copied so that a slice being iterated is not shifted.
					subs := make([]subscriber, 0, len(s.subs)-1)
					subs = append(subs, s.subs[:i]...)
					s.subs = append(subs, s.subs[i+1:]...)
					return
				}
			}
		})
	}
}

// publish hands bs (whole revisions after rev, in order) to the
// subscribers and advances rev, then wakes the writers waiting for it.
func (s *Store) publish(bs []kv.Batch) {
	if len(bs) == 0 {
		return
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return
	}
	s.rev.Store(bs[len(bs)-1].Revision)
	for _, sub := range s.subs {
		sub.fn(bs)
	}
	s.mu.Unlock()
	s.revMu.Lock()
	close(s.revCh)
	s.revCh = make(chan struct{})
	s.revMu.Unlock()
}

// waitRev waits until the feed has published rev, for at most
// RequestTimeout. It reports whether it has.
func (s *Store) waitRev(ctx context.Context, rev int64) bool {
	if s.rev.Load() >= rev {
		return true
	}
	t := time.NewTimer(s.opts.RequestTimeout)
	defer t.Stop()
	for {
		s.revMu.Lock()
		ch := s.revCh
		s.revMu.Unlock()
		if s.rev.Load() >= rev {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-s.ctx.Done():
			return false
		case <-t.C:
			s.log.Warn().Int64("revision", rev).Int64("feed_revision", s.rev.Load()).
				Dur("waited", s.opts.RequestTimeout).Msg("commit feed has not delivered a revision etcd acknowledged")
			return false
		}
	}
}

// Ready reports whether the gateway can serve: nil when the last probe of
// the cluster (a linearizable read, every HealthInterval) succeeded and
// the commit feed is connected and keeping up. Otherwise an error that
// wraps ErrUnavailable (the cluster or the feed is down; the gateway
// recovers on its own), ErrFeedLost (it cannot recover: restart it) or
// kv.ErrClosed.
func (s *Store) Ready() error {
	if s.closed.Load() {
		return kv.ErrClosed
	}
	if p := s.failure.Load(); p != nil {
		return *p
	}
	s.hmu.Lock()
	probeErr, lastOK, stalled, etcdRev := s.probeErr, s.lastOK, s.stalled, s.etcdRev
	s.hmu.Unlock()
	switch {
	case probeErr != nil:
		return fmt.Errorf("%w: %v", ErrUnavailable, probeErr)
	case time.Since(lastOK) > 2*s.opts.HealthInterval+s.opts.RequestTimeout:
		return fmt.Errorf("%w: no answer from etcd for %v", ErrUnavailable, time.Since(lastOK).Round(time.Millisecond))
	case !s.feedUp.Load():
		return fmt.Errorf("%w: the commit feed is reconnecting from revision %d", ErrUnavailable, s.rev.Load()+1)
	case stalled:
		return fmt.Errorf("%w: the commit feed is at revision %d, etcd at %d", ErrUnavailable, s.rev.Load(), etcdRev)
	}
	return nil
}

// Failed is closed when the store has failed for good (Ready returns
// ErrFeedLost): the process should exit so that it is restarted.
func (s *Store) Failed() <-chan struct{} { return s.failed }

// fail records a permanent failure.
func (s *Store) fail(err error) {
	if s.failure.CompareAndSwap(nil, &err) {
		s.log.Error().Err(err).Msg("etcd store failed; the gateway must be restarted")
		close(s.failed)
	}
}

// check is the common entry check of the public methods.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return kv.ErrClosed
	}
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// callCtx bounds one etcd call by RequestTimeout unless ctx ends sooner.
func (s *Store) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= s.opts.RequestTimeout {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.opts.RequestTimeout)
}

// err maps an etcd client error for the caller of op.
func (s *Store) err(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("etcdstore: %s: %w", op, kv.ErrClosed)
	}
	return mapErr(ctx, op, err)
}

// currentRev returns etcd's current revision from a linearizable read.
func (s *Store) currentRev(ctx context.Context) (int64, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(clientv3.WithRequireLeader(cctx), "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, s.err(ctx, "reading the revision", err)
	}
	return resp.Header.Revision, nil
}

// Status summarises the store: the gateway's revision and compact
// revision (as Revisions), the number of keys at that revision, and the
// database size reported by the first member that answers.
func (s *Store) Status() (kv.Status, error) {
	if err := s.check(s.ctx); err != nil {
		return kv.Status{}, err
	}
	rev, compact := s.Revisions()
	ctx, cancel := s.callCtx(s.ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly(), clientv3.WithRev(rev))
	if err != nil {
		return kv.Status{}, s.err(s.ctx, "status", err)
	}
	st := kv.Status{Revision: rev, CompactRevision: compact, Keys: resp.Count}
	var errs []error
	for _, ep := range s.cli.Endpoints() {
		ms, err := s.cli.Status(ctx, ep)
		if err == nil {
			st.DBSizeBytes = ms.DbSize
			return st, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	return kv.Status{}, s.err(s.ctx, "status", errors.Join(errs...))
}

// WriteSnapshot streams a snapshot of one member's database to w (etcd's
// Maintenance.Snapshot: the bbolt file followed by its SHA-256, the format
// `etcdctl snapshot save` writes and `etcdutl snapshot restore` restores;
// it is not a kv store file). rev is etcd's revision just before the
// snapshot was taken: the snapshot holds every revision up to rev, and may
// hold later ones written meanwhile. The stream is not bounded by
// RequestTimeout; Close ends it.
func (s *Store) WriteSnapshot(w io.Writer) (rev int64, n int64, err error) {
	if err := s.check(s.ctx); err != nil {
		return 0, 0, err
	}
	rev, err = s.currentRev(s.ctx)
	if err != nil {
		return 0, 0, err
	}
	rc, err := s.cli.Snapshot(s.ctx)
	if err != nil {
		return 0, 0, s.err(s.ctx, "snapshot", err)
	}
	defer rc.Close()
	n, err = io.Copy(w, rc)
	if err != nil {
		return 0, n, s.err(s.ctx, "snapshot", err)
	}
	return rev, n, nil
}
