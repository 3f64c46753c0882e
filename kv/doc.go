// Package kv is watchgate's durable multi-version key-value store, modelled
// on etcd v3's mvcc package.
//
// Every change to the keyspace gets the next revision, a global, strictly
// increasing int64 logical clock. An empty store is at revision 1, so its
// first write makes revision 2. A transaction that changes several keys
// produces one revision, and its changes are numbered inside it by a
// sub-revision 0, 1, 2, ... in the order of its operations.
//
// History of every change is kept on disk, in bbolt, until Compact removes
// revisions older than the compact revision. Reads at any retained revision
// are served; reads below the compact revision fail with a *CompactedError,
// which matches ErrCompacted and carries the compact revision.
//
// Concurrent writers are grouped into one bbolt transaction and one fsync
// (group commit). Nothing is acknowledged to a writer or handed to a commit
// subscriber before the fsync of its transaction returned. A group's
// revisions are published (Revisions reports them) as they are handed to
// the subscribers, before the writers are acknowledged; reads at the current revision, read-only transactions,
// History and Status show exactly the published revision, never a group
// that is durable but not yet published.
//
// Only this package imports bbolt. It knows nothing of watchers or HTTP.
package kv
