package kv

import (
	"errors"
	"fmt"
)

var (
	// ErrCompacted is returned for a read or history request below the
	// compact revision.
	ErrCompacted = errors.New("kv: required revision has been compacted")
	// ErrFutureRev is returned for a read at a revision above the current one.
	ErrFutureRev = errors.New("kv: required revision is a future revision")
	// ErrAlreadyCompacted is returned by Compact for a revision at or below
	// the current compact revision.
	ErrAlreadyCompacted = errors.New("kv: revision has already been compacted")
	// ErrKeyNotFound is returned by Get for a missing key.
	ErrKeyNotFound = errors.New("kv: key not found")
	// ErrEmptyKey is returned for a write to the empty key.
	ErrEmptyKey = errors.New("kv: key is empty")
	// ErrKeyTooLarge, ErrValueTooLarge and ErrTooManyOps report a request
	// over the store's limits (Options).
	ErrKeyTooLarge   = errors.New("kv: key is too large")
	ErrValueTooLarge = errors.New("kv: value is too large")
	ErrTooManyOps    = errors.New("kv: too many operations in transaction")
	// ErrInvalidCompare is returned for a compare with an unknown target or op.
	ErrInvalidCompare = errors.New("kv: invalid compare")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("kv: store is closed")
)

// CompactedError is the error of a read or history request below the
// compact revision: Requested is the revision asked for, Compact the compact
// revision that refused it (the lowest revision still readable).
// errors.Is(err, ErrCompacted) matches it.
type CompactedError struct {
	Requested int64
	Compact   int64
}

// Error keeps ErrCompacted's message, followed by both revisions.
func (e *CompactedError) Error() string {
	return fmt.Sprintf("%v: revision %d, compact revision %d", ErrCompacted, e.Requested, e.Compact)
}

// Unwrap returns ErrCompacted.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// KeyValue is one version of a key. Key and Value are owned by the KeyValue
// and must not be modified by the caller.
type KeyValue struct {
	Key   []byte
	Value []byte
	// CreateRevision is the revision that created the key (since its last
	// delete); ModRevision the revision of its last change.
	CreateRevision int64
	ModRevision    int64
	// Version is 1 on creation, +1 on each update, reset by delete.
	Version int64
}

// EventType says what an event did to its key.
type EventType uint8

const (
	EventPut EventType = iota
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "delete"
	}
	return "put"
}

// Event is one change of one key. For a delete, KV holds only Key and
// ModRevision (the deletion's revision).
type Event struct {
	Type EventType
	KV   KeyValue
	// Sub is the event's sub-revision inside its revision KV.ModRevision:
	// 0, 1, 2, ... in the order of the transaction's operations.
	Sub int32
	// PrevKV is the key's version before this change, nil when the key did
	// not exist. The store always fills it; a watcher that did not ask for
	// it just does not send it.
	PrevKV *KeyValue
}

// Revision is the revision the event belongs to.
func (e *Event) Revision() int64 { return e.KV.ModRevision }

// Batch is every event of one revision, in sub-revision order. The store
// never splits a revision across batches.
type Batch struct {
	Revision int64
	Events   []Event
}

// RangeRequest selects keys. With End nil it selects the single key Key.
// With End set it selects [Key, End); End = []byte{0} with Key empty selects
// every key (etcd's convention), and PrefixEnd(Key) turns Key into a prefix.
type RangeRequest struct {
	Key []byte
	End []byte
	// Rev is the revision to read at; 0 means the current revision.
	Rev int64
	// Limit caps the number of kvs returned; 0 means no limit.
	Limit     int64
	KeysOnly  bool
	CountOnly bool
}

// RangeResult is the answer to a RangeRequest, sorted by key bytewise.
type RangeResult struct {
	KVs []KeyValue
	// Count is the number of keys in the range at Rev, ignoring Limit.
	Count int64
	// More is true when Limit cut the result short.
	More bool
	// Rev is the revision the result shows.
	Rev int64
}

// CompareTarget is what a Compare looks at.
type CompareTarget uint8

const (
	CompareVersion CompareTarget = iota
	CompareCreate
	CompareMod
	CompareValue
)

// CompareOp is how a Compare compares.
type CompareOp uint8

const (
	CompareEqual CompareOp = iota
	CompareNotEqual
	CompareLess
	CompareGreater
)

// Compare is one condition of a transaction, checked on the key's current
// state as etcd does: a missing key has version, create and mod revision 0
// and an empty value... except that a value compare on a missing key is
// false.
type Compare struct {
	Key    []byte
	Target CompareTarget
	Op     CompareOp
	// Number is compared for the version, create and mod targets; Value
	// for the value target.
	Number int64
	Value  []byte
}

// OpType is the kind of an Op.
type OpType uint8

const (
	OpGet OpType = iota
	OpPut
	OpDelete
)

// Op is one operation of a transaction.
type Op struct {
	Type OpType
	// Key and End select the keys as in RangeRequest (End only for get and
	// delete).
	Key   []byte
	End   []byte
	Value []byte // put only
	// Get options.
	Limit     int64
	KeysOnly  bool
	CountOnly bool
}

// TxnRequest is an etcd-style transaction: if every Compare holds, Success
// runs, otherwise Failure. All its writes share one revision.
type TxnRequest struct {
	Compare []Compare
	Success []Op
	Failure []Op
}

// OpResult is the result of one Op, in the order of the branch that ran.
type OpResult struct {
	Type OpType
	// Put: the key's new version (Value nil) and its previous version, nil
	// if it was created.
	// Delete: Deleted and PrevKVs.
	// Get: Range.
	KV      *KeyValue
	PrevKV  *KeyValue
	Deleted int64
	PrevKVs []KeyValue
	Range   *RangeResult
}

// TxnResponse is the answer to a TxnRequest.
type TxnResponse struct {
	Succeeded bool
	// Revision is the store's revision after the transaction: the new
	// revision when it wrote anything, the current one otherwise.
	Revision  int64
	Responses []OpResult
}

// Status is a summary of the store.
type Status struct {
	Revision        int64
	CompactRevision int64
	Keys            int64
	DBSizeBytes     int64
}

// PrefixEnd returns the range end that turns key into a prefix: the key
// with its last byte below 0xff incremented and what follows dropped, or
// []byte{0} (every key above) when there is none, as etcd's GetPrefixRangeEnd.
func PrefixEnd(key []byte) []byte {
	end := make([]byte, len(key))
	copy(end, key)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}
