package main

import (
	"math"
	"math/bits"
	"slices"
	"time"
)

// median returns the median of xs (the mean of the middle two for an even
// count); NaN for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// percentile returns the q-th quantile (0 <= q <= 1) of sorted durations,
// nearest rank; 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// histogram counts durations in log-linear buckets: 64 sub-buckets per
// power of two of microseconds, so a quantile is read within about 1.5%.
// It is not safe for concurrent use; merge per-goroutine histograms.
type histogram struct {
	counts [40 * 64]uint64
	n      uint64
}

func (h *histogram) bucket(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if us < 64 {
		return int(us)
	}
	exp := 63 - bits.LeadingZeros64(us) // >= 6
	sub := (us >> (exp - 6)) & 63
	b := (exp-5)*64 + int(sub)
	return min(b, len(h.counts)-1)
}

// lower returns the smallest duration that falls in bucket b.
func (h *histogram) lower(b int) time.Duration {
	if b < 64 {
		return time.Duration(b) * time.Microsecond
	}
	exp := b/64 + 5
	sub := uint64(b % 64)
	return time.Duration((64+sub)<<(exp-6)) * time.Microsecond
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[h.bucket(d)]++
	h.n++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the q-th quantile, as the middle of its bucket.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := h.lower(b), h.lower(b+1)
			return lo + (hi-lo)/2
		}
	}
	return h.lower(len(h.counts) - 1)
}
