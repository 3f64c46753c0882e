// Package etcdstore serves the kv store's API from an etcd v3 cluster, so
// that watchgate can run as a tier of stateless gateways in front of one
// cluster: a client may write through one gateway, watch through another
// and resume on a third, with the same revisions everywhere.
//
// A Store satisfies what the watch hub and the HTTP API need of a store
// (watchhub.Store, httpapi.Store) with etcd's own semantics: revisions,
// create and mod revisions, versions and compaction are etcd's, so an id a
// client got from one gateway is valid on every other. The differences
// from the kv store are few and documented on the methods:
//
//   - Each gateway holds one etcd watch on the whole keyspace, its commit
//     feed, and hands every revision to its subscribers once and in order,
//     grouped into one kv.Batch per revision. When the watch breaks it is
//     reopened at the revision after the last one delivered. A write
//     through a gateway returns once etcd acknowledged it and the gateway's
//     feed delivered it; nothing is shown that etcd did not commit.
//   - History is read through a watch opened at the first revision wanted
//     (etcd has no other history API).
//   - etcd does not report its compact revision; the gateway learns it
//     (Revisions says how) and reports compaction as kv.ErrCompacted.
//   - etcd refuses a transaction branch that writes a key twice
//     (ErrDuplicateKey).
//   - WriteSnapshot streams etcd's own snapshot format.
//   - Check compares every member's hash of the keyspace.
//   - Ready reports whether the gateway can serve: etcd answers a
//     linearizable read and the feed keeps up.
//
// The etcd user (Options.Username) needs read and write permission on the
// whole keyspace, since the feed watches every key; Check also needs the
// root role (etcd's HashKV).
//
// Only the kv package imports bbolt; this package talks to etcd only
// through its Go client.
package etcdstore
