package kv

import (
	"sort"
	"sync/atomic"
)

// The overlay holds the revisions that are durable in the write-ahead log
// but not yet written to bbolt by a checkpoint. It is made of at most two
// memtables: mem, which the committer writes, and imm, a former mem that a
// checkpoint is writing to bbolt. Every read merges the overlay's versions
// over bbolt (see view).
//
// A memtable is written by one goroutine (the committer, or Open while it
// replays the log) and read by any number of others without locks: keys
// live in a skip list whose links are atomic pointers, each key's versions
// in an append-only list published through an atomic pointer, and the
// revisions' events in an append-only list published the same way. A
// reader never looks at a version above the revision it reads at, so the
// versions of a group commit still on its way are invisible to it.
type overlay struct {
	imm *memtable // being checkpointed; nil when none
	mem *memtable // receives the committer's writes
}

// memtable holds the revisions lo+1 .. hi() of the overlay.
type memtable struct {
	lo    int64
	keys  skiplist
	st    atomic.Pointer[memState]
	bytes atomic.Int64 // approximate memory held
}

// memState is the published part of a memtable: the events of its
// revisions lo+1 .. lo+len(batches) and its group commits.
type memState struct {
	batches []Batch
	groups  []memGroup
}

// memGroup is one group commit of a memtable: its revisions, its commit
// time (for the times bucket) and the live key count after it.
type memGroup struct {
	first, last int64
	time        int64
	keys        int64
}

func newMemtable(lo int64) *memtable {
	m := &memtable{lo: lo}
	m.keys.init()
	m.st.Store(&memState{})
	return m
}

// hi returns the last revision the memtable holds (lo when none).
func (m *memtable) hi() int64 { return m.lo + int64(len(m.st.Load().batches)) }

// addGroup publishes the events and metadata of one group commit whose
// versions were already added to the keys. Writer only.
func (m *memtable) addGroup(batches []Batch, g memGroup, size int64) {
	old := m.st.Load()
	m.st.Store(&memState{
		batches: append(old.batches, batches...),
		groups:  append(old.groups, g),
	})
	m.bytes.Add(size)
}

// verList is one key's versions in a memtable, in revision and
// sub-revision order. Published lists are never modified; appending to one
// writes past the end of the readers' copies only.
type verList struct {
	evs []Event
}

// latest returns the key's last event with after < revision <= rev.
func (l *verList) latest(after, rev int64) (*Event, bool) {
	if l == nil {
		return nil, false
	}
	i := sort.Search(len(l.evs), func(i int) bool { return l.evs[i].KV.ModRevision > rev })
	if i == 0 || l.evs[i-1].KV.ModRevision <= after {
		return nil, false
	}
	return &l.evs[i-1], true
}

// eventSize approximates the memory an event holds in the overlay.
func eventSize(e *Event) int64 {
	n := int64(len(e.KV.Key)+len(e.KV.Value)) + 2*int64(96) // the event in its batch and in its key's versions
	if e.PrevKV != nil {
		n += int64(len(e.PrevKV.Value)) + 72
	}
	return n
}
