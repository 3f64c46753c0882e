package access

import (
	"bytes"
	"sort"

	"github.com/watchgate/watchgate/kv"
)

// interval is the keys [lo, hi), hi nil meaning every key from lo on.
type interval struct {
	lo, hi []byte
}

// Ranges is a set of keys made of prefixes, kept as sorted, disjoint,
// non-adjacent intervals so that a range check is one binary search. The
// zero value holds no key.
type Ranges struct {
	ivs []interval
}

// NewRanges returns the set of keys that start with one of prefixes; the
// empty prefix is every key.
func NewRanges(prefixes [][]byte) Ranges {
	ivs := make([]interval, 0, len(prefixes))
	for _, p := range prefixes {
		iv := interval{lo: bytes.Clone(p)}
		if iv.lo == nil {
			iv.lo = []byte{}
		}
		// kv.PrefixEnd gives {0} when no key ends the prefix (the empty
		// prefix, or one of only 0xff bytes): every key from lo on.
		if end := kv.PrefixEnd(p); !isInf(end) {
			iv.hi = end
		}
		ivs = append(ivs, iv)
	}
	sort.Slice(ivs, func(i, j int) bool { return bytes.Compare(ivs[i].lo, ivs[j].lo) < 0 })
	var merged []interval
	for _, iv := range ivs {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			// Overlapping or adjacent ([a, b) and [b, c)): one interval.
			if last.hi == nil || bytes.Compare(iv.lo, last.hi) <= 0 {
				if last.hi != nil && (iv.hi == nil || bytes.Compare(iv.hi, last.hi) > 0) {
					last.hi = iv.hi
				}
				continue
			}
		}
		merged = append(merged, iv)
	}
	return Ranges{ivs: merged}
}

// All is the set of every key.
func All() Ranges { return Ranges{ivs: []interval{{lo: []byte{}}}} }

// isInf reports whether end is the store's "every key from the start on"
// range end, {0}.
func isInf(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// Empty reports whether the set holds no key.
func (r Ranges) Empty() bool { return len(r.ivs) == 0 }

// Covers reports whether every key of the range is in the set. The range
// is in the store's conventions: end nil or empty is the single key key,
// end {0} every key from key on, otherwise [key, end) (which holds no key,
// and so is covered, when end <= key).
func (r Ranges) Covers(key, end []byte) bool {
	// The last interval that starts at or before key is the only one that
	// can hold key: the intervals are disjoint and sorted.
	i := sort.Search(len(r.ivs), func(i int) bool { return bytes.Compare(r.ivs[i].lo, key) > 0 }) - 1
	single := len(end) == 0
	if !single && !isInf(end) && bytes.Compare(end, key) <= 0 {
		return true
	}
	if i < 0 {
		return false
	}
	iv := r.ivs[i]
	switch {
	case iv.hi == nil:
		return true
	case single:
		return bytes.Compare(key, iv.hi) < 0
	case isInf(end):
		return false
	default:
		return bytes.Compare(end, iv.hi) <= 0
	}
}
