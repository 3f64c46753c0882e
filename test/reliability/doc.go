// Package reliability holds watchgate's reliability suite: tests that start
// the real watchgate binary, drive it with concurrent writers, readers and
// watchers over every transport (REST, SSE over HTTP/1.1 and cleartext
// HTTP/2, WebSocket) while killing it with SIGKILL, cutting, stalling and
// slicing its connections through a fault proxy, and compacting its
// history, and then check that
//
//   - every acknowledged write is in the store's history, none is applied
//     twice, the revision never goes back across restarts and the bbolt file
//     passes its consistency check;
//   - every watcher's concatenated stream passes internal/watchtest's
//     validator: ordered, unique, gap-free, atomic, resumable, filtered,
//     with compaction reported in band;
//   - the key-value history is linearizable (porcupine).
//
// The harness runs against a deployment (deployment_test.go): one
// watchgate server on its own bbolt file (TestReliability), or two
// gateways (--backend=etcd) in front of a real three-member etcd cluster
// (TestReliabilityEtcd), where a gateway is killed while watchers are
// attached and they resume through the other, etcd members and the etcd
// leader are killed and restarted, and the history is read from etcd.
//
// The package has only tests; see RELIABILITY.md at the repository root for
// how to run the bounded and the soak modes and what they found.
package reliability
