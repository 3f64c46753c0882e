package watchhub

import (
	"context"

	"github.com/watchgate/watchgate/kv"
)

// Store is what the hub needs from a store: its revisions, reads at a
// revision for snapshots, history for catch-up, and the ordered commit feed.
// kv.Store implements it; a store that fronts an etcd cluster can feed the
// same hub by implementing it too. The contracts are kv.Store's:
//
//   - Revisions returns the current and the compact revision.
//   - Range reads at r.Rev, failing with an error wrapping kv.ErrCompacted
//     below the compact revision.
//   - History returns the events with from <= revision <= to in whole
//     revisions, at most about maxEvents, and the first revision it did not
//     return; kv.ErrCompacted when from is below the compact revision.
//   - Subscribe calls fn with every commit after the revision it returns,
//     in order, each once, and must not be blocked by fn for long: the hub's
//     fn only takes the hub's lock and queues.
//
// The hub never calls the store while holding its own lock, so a store may
// call fn while holding its own locks.
type Store interface {
	Revisions() (rev, compact int64)
	Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error)
	History(ctx context.Context, from, to int64, maxEvents int) (batches []kv.Batch, next int64, err error)
	Subscribe(fn func([]kv.Batch)) (rev int64, cancel func())
}

var _ Store = (*kv.Store)(nil)
