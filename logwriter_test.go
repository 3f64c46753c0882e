package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// lockedBuffer is an io.Writer that records every Write and can be made to
// block until released.
type lockedBuffer struct {
	mu     sync.Mutex
	b      strings.Builder
	writes int
	gate   chan struct{} // when set, every Write waits for a receive
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	if l.gate != nil {
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Writes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.writes
}

func lines(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"message":"%s %d"}`, prefix, i)
	}
	return out
}

// TestLogWriterFlushes checks that lines reach the output in order, within
// the interval, in far fewer writes than lines, and that Close writes what
// waits and lets later lines through unbuffered.
func TestLogWriterFlushes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		lines    int
		// waitFlush: wait for the flusher before Close (otherwise Close
		// must write them).
		waitFlush bool
	}{
		{"ticker", 5 * time.Millisecond, 1000, true},
		{"close", time.Hour, 1000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &lockedBuffer{}
			l := newLogWriter(out, tc.interval, 1<<20)
			want := lines(tc.lines, "line")
			for _, s := range want {
				if n, err := l.Write([]byte(s + "\n")); err != nil || n != len(s)+1 {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if tc.waitFlush {
				deadline := time.Now().Add(5 * time.Second)
				for out.String() == "" && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if out.String() == "" {
					t.Fatal("nothing written within 5 s")
				}
			} else if out.String() != "" {
				t.Fatalf("written before the interval: %q", out.String())
			}
			l.Close()
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("lines (-want +got)\n%s", diff)
			}
			if w := out.Writes(); w > 10 {
				t.Errorf("%d writes for %d lines", w, tc.lines)
			}
			l.Write([]byte("after\n"))
			if !strings.HasSuffix(out.String(), "\nafter\n") {
				t.Errorf("a line after Close was not written at once")
			}
			l.Close() // idempotent
		})
	}
}

// TestLogWriterBounded checks that a stalled output blocks no Write, that
// what waits stays under the limit, and that the dropped lines are counted
// in a warning once the output moves again.
func TestLogWriterBounded(t *testing.T) {
	out := &lockedBuffer{gate: make(chan struct{})}
	const limit = 4096
	l := newLogWriter(out, time.Millisecond, limit)
	// The first flush blocks in the output's Write.
	l.Write([]byte(`{"message":"first"}` + "\n"))
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range lines(1000, "x") {
			l.Write([]byte(s + "\n"))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked on a stalled output")
	}
	l.mu.Lock()
	waiting, dropped := len(l.buf), l.dropped
	l.mu.Unlock()
	if waiting > limit || dropped == 0 {
		t.Errorf("%d bytes waiting (limit %d), %d dropped", waiting, limit, dropped)
	}
	close(out.gate) // the output moves again
	l.Close()

	var kept, warned int64
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if n, ok := m["dropped_lines"].(float64); ok {
			warned += int64(n)
			if m["level"] != "warn" {
				t.Errorf("drop notice at level %v", m["level"])
			}
			continue
		}
		if m["message"] != "first" {
			kept++
		}
	}
	if kept+warned != 1000 || warned == 0 {
		t.Errorf("%d lines kept and %d reported dropped, want 1000 in all with some dropped", kept, warned)
	}
}
