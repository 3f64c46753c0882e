package kv

import (
	"time"

	"github.com/rs/zerolog"
)

// Options configures a Store. The zero value is the documented default.
type Options struct {
	// NoSync skips fsync on commit. For benchmarks only; never a server flag.
	NoSync bool
	// MaxKeySize (default 4096), MaxValueSize (default 1<<20) and
	// MaxTxnOps (default 128) bound requests; over them Txn returns
	// ErrKeyTooLarge, ErrValueTooLarge or ErrTooManyOps. MaxTxnOps bounds
	// the compares and each branch separately, as etcd does. MaxKeySize is
	// capped at 16000 bytes so that every index key stays under bbolt's
	// own 32 KiB key limit.
	MaxKeySize   int
	MaxValueSize int
	MaxTxnOps    int
	// RetainRevisions > 0 keeps only the last N revisions (automatic
	// compaction); RetainDuration > 0 keeps only the last D of time. Zero
	// keeps all. With both, the stricter one wins. Retention is checked
	// about once a second (more often for a RetainDuration under 4s).
	RetainRevisions int64
	RetainDuration  time.Duration
	// Logger receives the store's logs; nil means zerolog.Nop().
	Logger *zerolog.Logger

	// retainInterval overrides how often retention is checked (tests).
	retainInterval time.Duration
	// compactChunk overrides how many history events one compaction
	// transaction handles (tests).
	compactChunk int
	// compactDurable, when set, is called by Compact once the new compact
	// revision is durable in the file, before Compact returns (tests).
	compactDurable func(rev int64)
}

const (
	defaultMaxKeySize   = 4096
	defaultMaxValueSize = 1 << 20
	defaultMaxTxnOps    = 128
	// An index key is the escaped key (at most twice as long) plus 14
	// bytes; bbolt refuses keys over 32768 bytes.
	maxKeySizeCap = 16000

	// A group commit takes at most this many requests or bytes of keys
	// and values; the rest waits for the next group. Large groups amortise
	// the fsync; the bounds keep one bbolt transaction and its memory
	// reasonable.
	maxGroupRequests = 4096
	maxGroupBytes    = 4 << 20

	defaultCompactChunk = 1024
)

func (o Options) withDefaults() Options {
	if o.MaxKeySize <= 0 {
		o.MaxKeySize = defaultMaxKeySize
	}
	o.MaxKeySize = min(o.MaxKeySize, maxKeySizeCap)
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = defaultMaxValueSize
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = defaultMaxTxnOps
	}
	if o.Logger == nil {
		l := zerolog.Nop()
		o.Logger = &l
	}
	if o.compactChunk <= 0 {
		o.compactChunk = defaultCompactChunk
	}
	if o.retainInterval <= 0 {
		o.retainInterval = time.Second
		if d := o.RetainDuration / 4; d > 0 && d < o.retainInterval {
			o.retainInterval = max(d, 10*time.Millisecond)
		}
	}
	return o
}
