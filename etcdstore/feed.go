package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/watchgate/watchgate/kv"
)

// Feed reconnection delays.
const (
	feedMinBackoff = 50 * time.Millisecond
	feedMaxBackoff = 2 * time.Second
)

// errFeedGap makes the feed reopen its watch at the revision it expects
// next.
var errFeedGap = errors.New("etcdstore: watch skipped a revision")

// runFeed keeps one etcd watch on the whole keyspace open from the
// revision after the last one published, and publishes what it receives,
// until Close or a permanent failure.
//
// The watch asks for the previous key-values, progress notifications, and
// a leader (a member cut off from its cluster cancels the watch instead of
// leaving it silent). Whenever it ends — an error, no leader, a stall seen
// by the probe — it is reopened at rev+1: etcd replays from there, so no
// revision is skipped, and revisions at or below rev are dropped, so none
// is repeated. Every revision of etcd holds at least one event and the
// watch covers every key, so the revisions received must follow each
// other: a response that skips one makes the feed reopen its watch at the
// revision it expects; the first response of a watch opened at that
// revision is etcd's own history and is trusted.
func (s *Store) runFeed() {
	defer s.wg.Done()
	backoff := feedMinBackoff
	for {
		delivered, err := s.feedOnce()
		s.feedUp.Store(false)
		if s.ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrFeedLost) {
			s.fail(err)
			return
		}
		if delivered {
			backoff = feedMinBackoff
		}
		if errors.Is(err, errFeedGap) {
			s.log.Warn().Err(err).Msg("reopening the commit feed")
			continue
		}
		s.log.Warn().Err(err).Int64("from", s.rev.Load()+1).Dur("retry_in", backoff).Msg("commit feed interrupted")
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, feedMaxBackoff)
	}
}

// feedOnce runs one watch until it ends, and reports whether it delivered
// anything and why it ended.
func (s *Store) feedOnce() (delivered bool, err error) {
	s.fmu.Lock()
	s.feedGen++
	// Its own metadata gives each watch its own gRPC stream, so a stream
	// found stalled is replaced, not shared by the new watch.
	ctx := metadata.AppendToOutgoingContext(s.ctx, "watchgate-feed", strconv.FormatInt(s.feedGen, 10))
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	s.feedCancel = cancel
	s.fmu.Unlock()
	defer cancel()

	from := s.rev.Load() + 1
	wch := s.cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(from),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
	first := true // no events received yet on this watch
	for resp := range wch {
		if resp.CompactRevision != 0 {
			s.noteCompact(resp.CompactRevision)
			return delivered, fmt.Errorf("%w: revision %d is needed next, compact revision is %d",
				ErrFeedLost, s.rev.Load()+1, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return delivered, s.err(s.ctx, "commit feed", err)
		}
		if resp.Created {
			s.feedUp.Store(true)
			s.firstOnce.Do(func() { close(s.feedFirst) })
			continue
		}
		if len(resp.Events) == 0 {
			// A progress notification: etcd has sent everything up to
			// its revision.
			continue
		}
		if first {
			// etcd's compaction at from would have dropped the deletes
			// made at from: the feed cannot go on without them.
			if err := s.wholeFrom(s.ctx, from); err != nil {
				if errors.Is(err, kv.ErrCompacted) {
					return delivered, fmt.Errorf("%w: revision %d is needed next: %v", ErrFeedLost, from, err)
				}
				return delivered, err
			}
		}
		bs, err := batches(resp.Events)
		if err != nil {
			return delivered, err
		}
		want := s.rev.Load() + 1
		i := 0
		for i < len(bs) && bs[i].Revision < want {
			i++
		}
		if i > 0 {
			s.log.Error().Int64("revision", bs[0].Revision).Int64("expected", want).
				Msg("commit feed received revisions already delivered; dropped")
		}
		bs = bs[i:]
		if len(bs) == 0 {
			continue
		}
		if bs[0].Revision != want && !(first && from == want) {
			return delivered, fmt.Errorf("%w: expected %d, received %d", errFeedGap, want, bs[0].Revision)
		}
		for j := 1; j < len(bs); j++ {
			if bs[j].Revision != bs[j-1].Revision+1 {
				// Publish the part before the gap, then reopen.
				s.publish(bs[:j])
				return true, fmt.Errorf("%w: expected %d, received %d", errFeedGap, bs[j-1].Revision+1, bs[j].Revision)
			}
		}
		first = false
		s.publish(bs)
		delivered = true
	}
	if err := ctx.Err(); err != nil {
		return delivered, fmt.Errorf("etcdstore: commit feed: watch ended: %w", err)
	}
	return delivered, errors.New("etcdstore: commit feed: watch ended")
}

// restartFeed ends the feed's current watch; the feed reopens it at the
// revision after the last one published.
func (s *Store) restartFeed() {
	s.fmu.Lock()
	cancel := s.feedCancel
	s.fmu.Unlock()
	if cancel != nil {
		cancel()
	}
}
