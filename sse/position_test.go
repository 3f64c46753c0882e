package sse

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

func TestParsePosition(t *testing.T) {
	tests := []struct {
		id   string
		want Position
		ok   bool
	}{
		{"42", Position{Rev: 42}, true},
		{"1", Position{Rev: 1}, true},
		{"42.0", Position{Rev: 42, Sub: 0, HasSub: true}, true},
		{"42.17", Position{Rev: 42, Sub: 17, HasSub: true}, true},
		{"9223372036854775806", Position{Rev: 9223372036854775806}, true},
		{"5.2147483647", Position{Rev: 5, Sub: 2147483647, HasSub: true}, true},
		{"compacted", Position{Compacted: true}, true},

		{"", Position{}, false},
		{"0", Position{}, false},
		{"042", Position{}, false},
		{"-1", Position{}, false},
		{"+1", Position{}, false},
		{" 1", Position{}, false},
		{"1 ", Position{}, false},
		{"1.", Position{}, false},
		{".1", Position{}, false},
		{"1.01", Position{}, false},
		{"1.-1", Position{}, false},
		{"1.2.3", Position{}, false},
		{"1.2147483648", Position{}, false},
		{"9223372036854775807", Position{}, false}, // R+1 would overflow
		{"99999999999999999999", Position{}, false},
		{"1e3", Position{}, false},
		{"0x10", Position{}, false},
		{"Compacted", Position{}, false},
		{"compacted.1", Position{}, false},
		{"١", Position{}, false}, // Arabic-Indic digit one
		{strings.Repeat("9", 200), Position{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := ParsePosition(tt.id)
			if tt.ok != (err == nil) {
				t.Fatalf("ParsePosition(%q) error = %v, want ok=%v", tt.id, err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidID) {
					t.Errorf("error %v does not wrap ErrInvalidID", err)
				}
				if len(err.Error()) > 200 {
					t.Errorf("error message is %d bytes long", len(err.Error()))
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParsePosition(%q) (-want +got):\n%s", tt.id, diff)
			}
			if s := got.String(); s != tt.id {
				t.Errorf("String() = %q, want %q", s, tt.id)
			}
		})
	}
}

func TestStart(t *testing.T) {
	tests := []struct {
		p   Position
		rev int64
		sub int32
	}{
		{Position{Rev: 42}, 43, 0},
		{Position{Rev: 42, Sub: 3, HasSub: true}, 42, 4},
		{Position{Rev: 42, Sub: 0, HasSub: true}, 42, 1},
		{Position{Rev: 42, Sub: math.MaxInt32, HasSub: true}, 43, 0},
		{Position{Compacted: true}, 0, 0},
		{Position{}, 0, 0},
	}
	for _, tt := range tests {
		rev, sub := tt.p.Start()
		if rev != tt.rev || sub != tt.sub {
			t.Errorf("%v.Start() = %d, %d; want %d, %d", tt.p, rev, sub, tt.rev, tt.sub)
		}
	}
}

// revision builds the events of revision rev that a stream matches, with
// the given sub-revisions.
func revision(rev int64, subs ...int32) []kv.Event {
	evs := make([]kv.Event, len(subs))
	for i, s := range subs {
		evs[i] = kv.Event{Type: kv.EventPut, Sub: s, KV: kv.KeyValue{Key: []byte{byte('a' + s)}, ModRevision: rev, CreateRevision: rev, Version: 1}}
	}
	return evs
}

func subsOf(evs []kv.Event) []int32 {
	subs := []int32{}
	for _, e := range evs {
		subs = append(subs, e.Sub)
	}
	return subs
}

func TestUnseen(t *testing.T) {
	evs := revision(10, 0, 2, 5)
	tests := []struct {
		name string
		p    Position
		want []int32
	}{
		{"earlier revision", Position{Rev: 9}, []int32{0, 2, 5}},
		{"inside earlier revision", Position{Rev: 9, Sub: 7, HasSub: true}, []int32{0, 2, 5}},
		{"whole revision seen", Position{Rev: 10}, []int32{}},
		{"later revision", Position{Rev: 11, Sub: 0, HasSub: true}, []int32{}},
		{"after first", Position{Rev: 10, Sub: 0, HasSub: true}, []int32{2, 5}},
		{"after a sub not in the stream", Position{Rev: 10, Sub: 1, HasSub: true}, []int32{2, 5}},
		{"after second", Position{Rev: 10, Sub: 2, HasSub: true}, []int32{5}},
		{"after last sub", Position{Rev: 10, Sub: 5, HasSub: true}, []int32{}},
		{"past last sub", Position{Rev: 10, Sub: 9, HasSub: true}, []int32{}},
		{"compacted", Position{Compacted: true}, []int32{0, 2, 5}},
		{"zero", Position{}, []int32{0, 2, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, subsOf(tt.p.Unseen(evs))); diff != "" {
				t.Errorf("Unseen (-want +got):\n%s", diff)
			}
		})
	}
	if got := (Position{Rev: 3}).Unseen(nil); len(got) != 0 {
		t.Errorf("Unseen(nil) = %v", got)
	}
}

func TestPositionOf(t *testing.T) {
	evs := revision(10, 0, 2, 5)
	var got []string
	for i := range evs {
		got = append(got, PositionOf(evs, i).String())
	}
	if diff := cmp.Diff([]string{"10.0", "10.2", "10"}, got); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if got := PositionOf(revision(11, 3), 0).String(); got != "11" {
		t.Errorf("single event id = %q, want 11", got)
	}
}

// sent is one event as a client sees it: its id and what it is.
type sent struct {
	ID  string
	Rev int64
	Sub int32
}

// stream returns what a client resuming from p is sent: the hub starts at
// p.Start()'s revision (every revision when p is zero) and the stream skips what
// Unseen drops, numbering the rest with PositionOf.
func stream(revs [][]kv.Event, p Position) []sent {
	out := []sent{}
	for _, evs := range revs {
		if start, _ := p.Start(); p.Rev != 0 && evs[0].Revision() < start {
			continue
		}
		evs = p.Unseen(evs)
		for i := range evs {
			out = append(out, sent{PositionOf(evs, i).String(), evs[i].Revision(), evs[i].Sub})
		}
	}
	return out
}

// TestResumeExact checks on random histories that resuming from any id a
// stream sent (parsed back from its text) gives exactly the rest of the
// stream, ids included, and that resuming again from an id of the resumed
// stream does too: nothing lost, nothing repeated.
func TestResumeExact(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var revs [][]kv.Event
		rev := int64(1)
		for range 1 + rnd.IntN(8) {
			rev += 1 + rnd.Int64N(3)
			var subs []int32
			for s := int32(0); s < 6; s++ {
				if rnd.IntN(2) == 0 {
					subs = append(subs, s)
				}
			}
			if len(subs) == 0 {
				subs = []int32{int32(rnd.IntN(4))}
			}
			revs = append(revs, revision(rev, subs...))
		}
		full := stream(revs, Position{})
		for i, ev := range full {
			p, err := ParsePosition(ev.ID)
			if err != nil {
				t.Fatalf("round %d: id %q: %v", round, ev.ID, err)
			}
			resumed := stream(revs, p)
			if diff := cmp.Diff(full[i+1:], resumed); diff != "" {
				t.Fatalf("round %d: resume from %q (-want +got):\n%s", round, ev.ID, diff)
			}
			for j, ev2 := range resumed {
				p2, _ := ParsePosition(ev2.ID)
				if diff := cmp.Diff(full[i+1+j+1:], stream(revs, p2)); diff != "" {
					t.Fatalf("round %d: resume from %q then %q (-want +got):\n%s", round, ev.ID, ev2.ID, diff)
				}
			}
		}
	}
}

// FuzzParsePosition checks that ParsePosition never panics, accepts only
// canonical ids (String gives the input back) and that String is parsed
// back to the same Position.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"42", "42.0", "42.17", "compacted", "", "0", "01", "1.", "9223372036854775807", "1.2147483648", "-1", "1.2.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("error %v does not wrap ErrInvalidID", err)
			}
			return
		}
		if got := p.String(); got != s {
			t.Fatalf("ParsePosition(%q).String() = %q", s, got)
		}
		if p.Compacted {
			if p != (Position{Compacted: true}) {
				t.Fatalf("compacted position %+v has other fields", p)
			}
			return
		}
		if p.Rev < 1 || p.Sub < 0 || (!p.HasSub && p.Sub != 0) || startRev(p) < p.Rev {
			t.Fatalf("ParsePosition(%q) = %+v out of range", s, p)
		}
		again, err := ParsePosition(p.String())
		if err != nil || again != p {
			t.Fatalf("round trip of %+v: %+v, %v", p, again, err)
		}
	})
}

// FuzzPositionString checks parse(String(p)) == p for every Position a
// stream can send.
func FuzzPositionString(f *testing.F) {
	f.Add(int64(42), int32(0), false)
	f.Add(int64(1), int32(7), true)
	f.Fuzz(func(t *testing.T, rev int64, sub int32, hasSub bool) {
		// Map the input onto the positions a stream sends: 1 <= rev <
		// 2^63-1, 0 <= sub.
		rev = 1 + int64(uint64(rev)%(1<<63-2))
		sub &= 1<<31 - 1
		if !hasSub {
			sub = 0
		}
		p := Position{Rev: rev, Sub: sub, HasSub: hasSub}
		got, err := ParsePosition(p.String())
		if err != nil || got != p {
			t.Fatalf("ParsePosition(%q) = %+v, %v; want %+v", p.String(), got, err, p)
		}
	})
}

func startRev(p Position) int64 {
	rev, _ := p.Start()
	return rev
}
