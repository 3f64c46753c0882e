package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/watchgate/watchgate/kv"
)

// History returns the events with from <= revision <= to, in revision and
// sub-revision order, grouped by revision, never splitting a revision,
// stopping after the revision that reaches maxEvents events (so a single
// large revision is still returned whole). next is the first revision not
// returned (to+1 when everything up to to was returned). Events carry
// PrevKV, except where etcd could not read it (the previous version was
// compacted).
//
// As in the kv store, a from below 1 means 1; a to of 0, or above the
// gateway's revision (Revisions), means that revision, so History never
// returns a revision a subscriber registered now would still receive.
// maxEvents <= 0 means no limit. With from beyond to nothing is returned
// and next is from.
//
// etcd serves history only through watches: History opens a watch of the
// whole keyspace at from, reads until to, then cancels it. etcd serves a
// watch that starts in the past from a loop that runs every 100ms, so a
// History call takes up to 100ms whatever its size (about 100ms for 1000
// revisions on a local cluster); the watch hub calls it only for watchers
// behind its in-memory window of recent revisions. An error wraps
// kv.ErrCompacted when from is below etcd's compact revision (the gateway
// learns that revision first, so Revisions reports it). While the cluster
// is unreachable History retries until ctx is done, so a watcher catching
// up waits rather than fails.
func (s *Store) History(ctx context.Context, from, to int64, maxEvents int) (batches []kv.Batch, next int64, err error) {
	if err := s.check(ctx); err != nil {
		return nil, 0, err
	}
	if from < 1 {
		from = 1
	}
	published, compact := s.Revisions()
	if to <= 0 || to > published {
		to = published
	}
	if from < compact {
		return nil, 0, fmt.Errorf("%w: revision %d, compact revision %d", kv.ErrCompacted, from, compact)
	}
	if from > to {
		return nil, from, nil
	}
	backoff := feedMinBackoff
	first := from
	var out []kv.Batch
	for {
		if err := s.check(ctx); err != nil {
			return nil, 0, err
		}
		bs, n, err := s.historyOnce(ctx, from, to, maxEvents)
		// What was read before an interruption is kept: the retry goes on
		// from the revision after it.
		out = append(out, bs...)
		if len(bs) > 0 {
			if maxEvents > 0 {
				maxEvents -= countEvents(bs)
				if maxEvents <= 0 {
					return out, bs[len(bs)-1].Revision + 1, nil
				}
			}
			from = bs[len(bs)-1].Revision + 1
		}
		if err == nil {
			if err := s.wholeFrom(ctx, first); err != nil {
				return nil, 0, err
			}
			return out, n, nil
		}
		if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil || s.ctx.Err() != nil {
			if errors.Is(err, kv.ErrCompacted) && len(out) > 0 {
				// Compacted after the read began: what was read is whole
				// unless the compaction came before it.
				if err := s.wholeFrom(ctx, first); err != nil {
					return nil, 0, err
				}
				return out, from, nil
			}
			return nil, 0, err
		}
		s.log.Warn().Err(err).Int64("from", from).Int64("to", to).Dur("retry_in", backoff).Msg("history read interrupted")
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("etcdstore: history: %w (last error: %v)", ctx.Err(), err)
		case <-s.ctx.Done():
			return nil, 0, kv.ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedMaxBackoff)
	}
}

// historyOnce reads [from, to] through one watch. On an error it returns
// the whole revisions it read before it. Each response must come within
// RequestTimeout.
func (s *Store) historyOnce(ctx context.Context, from, to int64, maxEvents int) ([]kv.Batch, int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithPrevKV())
	timer := time.NewTimer(s.opts.RequestTimeout)
	defer timer.Stop()
	var out []kv.Batch
	events := 0
	want := from
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				if ctx.Err() != nil {
					return out, 0, fmt.Errorf("etcdstore: history: %w", ctx.Err())
				}
				return out, 0, fmt.Errorf("etcdstore: history: %w: watch closed", ErrUnavailable)
			}
			if resp.CompactRevision != 0 {
				s.noteCompact(resp.CompactRevision)
				return out, 0, fmt.Errorf("%w: revision %d, compact revision %d", kv.ErrCompacted, want, resp.CompactRevision)
			}
			if err := resp.Err(); err != nil {
				return out, 0, s.err(ctx, "history", err)
			}
			bs, err := batches(resp.Events)
			if err != nil {
				return out, 0, err
			}
			for _, b := range bs {
				switch {
				case b.Revision < want:
					continue
				case b.Revision > to:
					// No events between want and to: every revision up to
					// to has been read.
					return out, to + 1, nil
				case b.Revision != want && len(out) > 0:
					return out, 0, fmt.Errorf("etcdstore: history: %w: watch skipped from %d to %d", ErrUnavailable, want, b.Revision)
				}
				out = append(out, b)
				events += len(b.Events)
				want = b.Revision + 1
				if b.Revision == to {
					return out, to + 1, nil
				}
				if maxEvents > 0 && events >= maxEvents {
					return out, want, nil
				}
			}
			timer.Reset(s.opts.RequestTimeout)
		case <-timer.C:
			return out, 0, fmt.Errorf("etcdstore: history: %w: no answer within %v", ErrUnavailable, s.opts.RequestTimeout)
		}
	}
}

// wholeFrom checks, after a watch opened at from has read etcd's history,
// that etcd had not been compacted at from when it did: a compaction at C
// drops the deletes made at C, so a watch opened at C gets revision C
// without them (or not at all). Reads at from-1 are served after the read
// only if the compact revision was below from during it. Otherwise the
// compaction is looked up and the error wraps kv.ErrCompacted.
func (s *Store) wholeFrom(ctx context.Context, from int64) error {
	if from <= 1 {
		return nil
	}
	ok, err := s.readableAt(ctx, from-1)
	if err != nil {
		return err
	}
	if !ok {
		s.learnCompacted(ctx)
		_, compact := s.Revisions()
		return &kv.CompactedError{Requested: from, Compact: compact}
	}
	return nil
}

func countEvents(bs []kv.Batch) int {
	n := 0
	for i := range bs {
		n += len(bs[i].Events)
	}
	return n
}
