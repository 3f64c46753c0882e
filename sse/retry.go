package sse

import (
	"math/rand/v2"
	"time"
)

// Default bounds of the reconnection time sent in the retry: field.
const (
	DefaultRetryMin = 1 * time.Second
	DefaultRetryMax = 3 * time.Second
)

// jitterRetry picks the reconnection time of one stream uniformly in
// [from, to], in whole milliseconds, so that clients cut off together (a
// restart) do not all come back in the same second. Both zero means the
// defaults; a negative bound counts as 0 and to below from gives from.
func jitterRetry(from, to time.Duration) time.Duration {
	if from == 0 && to == 0 {
		from, to = DefaultRetryMin, DefaultRetryMax
	}
	lo, hi := max(from.Milliseconds(), 0), to.Milliseconds()
	if hi <= lo {
		return time.Duration(lo) * time.Millisecond
	}
	return time.Duration(lo+rand.Int64N(hi-lo+1)) * time.Millisecond
}
