package sse

import (
	"testing"
	"time"
)

func TestJitterRetry(t *testing.T) {
	tests := []struct {
		name     string
		from, to time.Duration
		lo, hi   time.Duration
	}{
		{"default", 0, 0, time.Second, 3 * time.Second},
		{"range", 200 * time.Millisecond, 400 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond},
		{"from zero", 0, 50 * time.Millisecond, 0, 50 * time.Millisecond},
		{"fixed", 2 * time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second},
		{"to below from", 2 * time.Second, time.Second, 2 * time.Second, 2 * time.Second},
		{"negative", -time.Second, 10 * time.Millisecond, 0, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 2000 {
				d := jitterRetry(tt.from, tt.to)
				if d < tt.lo || d > tt.hi || d%time.Millisecond != 0 {
					t.Fatalf("jitterRetry(%v, %v) = %v, want whole ms in [%v, %v]", tt.from, tt.to, d, tt.lo, tt.hi)
				}
				seen[d] = true
			}
			// A spread range must actually be spread: with 2000 draws over
			// at least 51 values, fewer than 20 distinct ones means no
			// jitter.
			if tt.hi-tt.lo >= 50*time.Millisecond && len(seen) < 20 {
				t.Errorf("only %d distinct values in [%v, %v]", len(seen), tt.lo, tt.hi)
			}
		})
	}
}
