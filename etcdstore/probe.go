package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// runProbe probes the cluster every HealthInterval until Close.
func (s *Store) runProbe() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.probe()
	}
}

// probe reads one key, count only, at the known compact revision with a
// linearizable read: it succeeds only through a leader and a quorum, tells
// etcd's current revision, and fails with "compacted" when the cluster was
// compacted past the known compact revision by someone else, which is then
// looked up. It records the result for Ready and reopens the feed's watch
// when the feed has stayed behind a revision etcd reported for
// StallTimeout.
func (s *Store) probe() {
	ctx, cancel := s.callCtx(s.ctx)
	defer cancel()
	resp, err := s.cli.Get(clientv3.WithRequireLeader(ctx), "\x00",
		clientv3.WithCountOnly(), clientv3.WithRev(s.compact.Load()))
	var etcdRev int64
	switch {
	case err == nil:
		etcdRev = resp.Header.Revision
	case errors.Is(rpctypes.Error(err), rpctypes.ErrCompacted):
		if err = s.discoverCompact(ctx); err == nil {
			etcdRev, err = s.currentRev(ctx)
		}
	default:
		err = s.err(s.ctx, "probe", err)
	}
	if s.ctx.Err() != nil {
		return
	}
	now := time.Now()
	restart := false
	s.hmu.Lock()
	if err != nil {
		if s.probeErr == nil {
			s.log.Warn().Err(err).Msg("etcd unreachable; not ready")
		}
		s.probeErr = err
		s.hmu.Unlock()
		return
	}
	if s.probeErr != nil {
		s.log.Info().Int64("revision", etcdRev).Msg("etcd reachable again")
	}
	s.probeErr, s.lastOK, s.etcdRev = nil, now, etcdRev
	switch cur := s.rev.Load(); {
	case cur >= s.target:
		s.target, s.since, s.stalled = etcdRev, now, false
	case now.Sub(s.since) >= s.opts.StallTimeout:
		s.log.Warn().Int64("feed_revision", cur).Int64("revision", s.target).
			Dur("for", now.Sub(s.since)).Msg("commit feed stalled; reopening its watch")
		s.stalled, s.since, restart = true, now, true
	}
	s.hmu.Unlock()
	if restart {
		s.restartFeed()
	}
}

// discoverCompact looks etcd's compact revision up and raises the known one
// to it. etcd does not report it, but refuses a read below it, so it is
// the lowest revision a read is served at: checked first at the known
// compact revision, then found by bisection up to the current revision
// (about log2(revision) reads of one key, count only).
func (s *Store) discoverCompact(ctx context.Context) error {
	s.discMu.Lock()
	defer s.discMu.Unlock()
	lo := s.compact.Load()
	ok, err := s.readableAt(ctx, lo)
	if err != nil || ok {
		return err
	}
	hi, err := s.currentRev(ctx)
	if err != nil {
		return err
	}
	lo++
	for lo < hi {
		mid := lo + (hi-lo)/2
		ok, err := s.readableAt(ctx, mid)
		if err != nil {
			return err
		}
		if ok {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	s.noteCompact(lo)
	return nil
}

// readableAt reports whether etcd serves a read at rev.
func (s *Store) readableAt(ctx context.Context, rev int64) (bool, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	_, err := s.cli.Get(clientv3.WithRequireLeader(cctx), "\x00", clientv3.WithCountOnly(), clientv3.WithRev(rev))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(rpctypes.Error(err), rpctypes.ErrCompacted):
		return false, nil
	}
	return false, s.err(ctx, "looking the compact revision up", err)
}

// Check checks the cluster's consistency, as far as a client can: no
// member has an alarm raised (NOSPACE, CORRUPT), every member reports no
// error, and every member computes the same hash of the keyspace at one
// revision (etcd's HashKV, which reads the whole keyspace: an
// administrative call, not a health probe). A member that cannot be
// reached fails the check.
func (s *Store) Check() error {
	if err := s.check(s.ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 4*s.opts.RequestTimeout)
	defer cancel()
	var errs []error
	alarms, err := s.cli.AlarmList(ctx)
	if err != nil {
		return s.err(ctx, "check: alarms", err)
	}
	for _, a := range alarms.Alarms {
		errs = append(errs, fmt.Errorf("etcdstore: check: member %x has alarm %s", a.MemberID, a.Alarm))
	}
	members, err := s.cli.MemberList(ctx)
	if err != nil {
		return s.err(ctx, "check: members", err)
	}
	for attempt := 0; ; attempt++ {
		hashErrs, retry := s.checkHashes(ctx, members.Members)
		if !retry || attempt == 5 {
			errs = append(errs, hashErrs...)
			break
		}
		select {
		case <-ctx.Done():
			return s.err(ctx, "check", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.Join(errs...)
}

// memberHash is one member's answer to HashKV.
type memberHash struct {
	name    string
	hash    uint32
	compact int64
	rev     int64 // the revision hashed
}

// checkHashes compares the members' keyspace hashes at etcd's current
// revision. retry reports a difference that a compaction or a member still
// applying the revision explains, worth another try.
func (s *Store) checkHashes(ctx context.Context, members []*etcdserverpb.Member) (errs []error, retry bool) {
	rev, err := s.currentRev(ctx)
	if err != nil {
		return []error{err}, false
	}
	// HashKV refuses the compact revision itself: a cluster compacted at
	// its current revision is hashed at each member's current revision
	// (0), which its answer reports.
	hashRev := rev
	if rev <= s.compact.Load() {
		hashRev = 0
	}
	var hashes []memberHash
	for _, m := range members {
		name := m.Name
		if name == "" {
			name = fmt.Sprintf("%x", m.ID)
		}
		if len(m.ClientURLs) == 0 {
			errs = append(errs, fmt.Errorf("etcdstore: check: member %s has not started", name))
			continue
		}
		ep := m.ClientURLs[0]
		// Status answers at once, so it tells an unreachable member within
		// RequestTimeout; HashKV reads everything and gets the whole
		// check's time.
		mctx, cancel := s.callCtx(ctx)
		st, err := s.cli.Status(mctx, ep)
		cancel()
		if err == nil {
			var h *clientv3.HashKVResponse
			if h, err = s.cli.HashKV(ctx, ep, hashRev); err == nil {
				hashes = append(hashes, memberHash{name: name, hash: h.Hash, compact: h.CompactRevision, rev: h.Header.GetRevision()})
			}
		}
		if err != nil {
			switch {
			case errors.Is(rpctypes.Error(err), rpctypes.ErrFutureRev):
				// Not yet applied there.
				return nil, true
			case errors.Is(rpctypes.Error(err), rpctypes.ErrCompacted):
				// Compacted at rev meanwhile: learn it, hash at current.
				s.learnCompacted(ctx)
				return nil, true
			}
			errs = append(errs, fmt.Errorf("etcdstore: check: member %s (%s): %w", name, ep, s.err(ctx, "status", err)))
			continue
		}
		if len(st.Errors) > 0 {
			errs = append(errs, fmt.Errorf("etcdstore: check: member %s reports: %s", name, strings.Join(st.Errors, "; ")))
		}
	}
	for _, h := range hashes[min(1, len(hashes)):] {
		if h.compact != hashes[0].compact || hashRev == 0 && h.rev != hashes[0].rev {
			return nil, true
		}
	}
	for _, h := range hashes[min(1, len(hashes)):] {
		if h.hash != hashes[0].hash {
			var b strings.Builder
			for _, h := range hashes {
				fmt.Fprintf(&b, " %s=%08x", h.name, h.hash)
			}
			errs = append(errs, fmt.Errorf("etcdstore: check: members disagree on the keyspace at revision %d:%s", hashes[0].rev, b.String()))
			break
		}
	}
	return errs, false
}
