package sse

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/watchgate/watchgate/kv"
)

// compactedID is the id of the compacted event; a client resuming from it
// has been told its position is gone.
const compactedID = "compacted"

// Position is a resume point of a watch stream: the id of an event, which
// a client sends back as Last-Event-ID (or last_event_id=) to resume right
// after it.
//
//   - "R" (HasSub false): the client has seen everything of revision R that
//     matches the stream; it resumes at R+1.
//   - "R.S" (HasSub true): the client has seen the events of revision R up
//     to sub-revision S; it resumes inside R, after S.
//   - "compacted" (Compacted true, Rev and Sub zero): the client was told
//     that its next revision is compacted.
//
// The zero Position is no position: it is never parsed and writes no id.
type Position struct {
	Rev       int64
	Sub       int32
	HasSub    bool
	Compacted bool
}

// PositionOf returns the id of events[i], where events are the events of
// one revision that match a stream, in sub-revision order: "R" for the last
// one and "R.S" for the others. Dropping a prefix of events (Unseen) does
// not change the id of those that remain, so an event has the same id
// whatever point its stream resumed from.
func PositionOf(events []kv.Event, i int) Position {
	ev := &events[i]
	if i == len(events)-1 {
		return Position{Rev: ev.Revision()}
	}
	return Position{Rev: ev.Revision(), Sub: ev.Sub, HasSub: true}
}

// Start is the first event a client at p has not seen, as a revision and
// a sub-revision: (Rev+1, 0) after a whole revision, (Rev, Sub+1) inside
// one. A watch resuming from p starts there (watchhub's StartRev and
// StartSub). It is (0, 0) for a compacted or zero Position, which has no
// start.
func (p Position) Start() (rev int64, sub int32) {
	switch {
	case p.Compacted || p.Rev == 0:
		return 0, 0
	case p.HasSub && p.Sub < math.MaxInt32:
		return p.Rev, p.Sub + 1
	default:
		// After the last possible sub-revision the revision is complete.
		return p.Rev + 1, 0
	}
}

// Unseen returns the suffix of events that a client at p has not seen yet.
// events are the events of one revision that match the stream, in
// sub-revision order: below p.Rev all were seen, above it none, and in
// p.Rev those with a sub-revision up to p.Sub were (all of them when p has
// no sub). A compacted or zero Position has seen nothing. The result shares
// events' backing array.
func (p Position) Unseen(events []kv.Event) []kv.Event {
	if len(events) == 0 || p.Compacted || p.Rev == 0 {
		return events
	}
	rev := events[0].Revision()
	switch {
	case rev < p.Rev:
		return events[:0]
	case rev > p.Rev:
		return events
	case !p.HasSub:
		return events[:0]
	}
	for i := range events {
		if events[i].Sub > p.Sub {
			return events[i:]
		}
	}
	return events[:0]
}

// String returns the id: "R", "R.S" or "compacted"; "" for the zero
// Position.
func (p Position) String() string {
	return string(p.AppendText(nil))
}

// AppendText appends the id to dst, as String returns it.
func (p Position) AppendText(dst []byte) []byte {
	switch {
	case p.Compacted:
		return append(dst, compactedID...)
	case p.Rev == 0:
		return dst
	}
	dst = strconv.AppendInt(dst, p.Rev, 10)
	if p.HasSub {
		dst = append(dst, '.')
		dst = strconv.AppendInt(dst, int64(p.Sub), 10)
	}
	return dst
}

// maxIDLen bounds the id quoted in an error message.
const maxIDLen = 48

// ParsePosition parses a Last-Event-ID: "R" or "R.S" in canonical decimal
// (no sign, no leading zero, 1 <= R < 2^63-1, 0 <= S < 2^31), or
// "compacted". Anything else is an error wrapping ErrInvalidID that says
// what is expected, for a 400 before the stream starts. Every accepted id
// is the String of the Position it parses to.
func ParsePosition(s string) (Position, error) {
	if s == compactedID {
		return Position{Compacted: true}, nil
	}
	revPart, subPart, hasSub := strings.Cut(s, ".")
	rev, ok := parseCanonical(revPart, math.MaxInt64-1)
	if !ok || rev < 1 {
		return Position{}, invalidID(s)
	}
	p := Position{Rev: rev}
	if hasSub {
		sub, ok := parseCanonical(subPart, math.MaxInt32)
		if !ok {
			return Position{}, invalidID(s)
		}
		p.Sub, p.HasSub = int32(sub), true
	}
	return p, nil
}

// parseCanonical parses a decimal number in [0, max] written with ASCII
// digits only and without leading zeros.
func parseCanonical(s string, max int64) (int64, bool) {
	if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (max-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

func invalidID(s string) error {
	if len(s) > maxIDLen {
		return fmt.Errorf("%w %q...: want R, R.S (revision and sub-revision) or compacted", ErrInvalidID, s[:maxIDLen])
	}
	return fmt.Errorf("%w %q: want R, R.S (revision and sub-revision) or compacted", ErrInvalidID, s)
}
