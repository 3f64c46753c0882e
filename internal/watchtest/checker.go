package watchtest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/watchgate/watchgate/kv"
)

// Request is the watch whose stream is checked, in the hub's terms.
type Request struct {
	// Key and End select the keys as in kv.RangeRequest (End nil: the
	// single key; End {0}: every key from Key on; kv.PrefixEnd: a prefix).
	Key []byte
	End []byte
	// StartRev is the first revision wanted; 0 means the revision after the
	// one reported by the first Created item (a transport without one, such
	// as SSE, passes the revision it learned instead, e.g. X-Revision + 1).
	// StartSub skips the events of StartRev below it (resume inside a
	// revision).
	StartRev int64
	StartSub int32
	PrevKV   bool
	NoPut    bool
	NoDelete bool
	// Snapshot: the watch may start with or heal by reset ... synced.
	Snapshot bool
}

// Kind says what an Item is.
type Kind uint8

const (
	// Created acknowledges the watch; Revision is the registration revision.
	Created Kind = iota + 1
	// Events carries events. Revision, when not 0, is the revision the
	// response claims complete.
	Events
	// Progress is a bookmark at Revision.
	Progress
	// Reset starts a snapshot at Revision.
	Reset
	// Snapshot carries snapshot puts, in key order.
	Snapshot
	// Synced ends a snapshot at Revision.
	Synced
	// Compacted ends the watch: CompactRevision, Revision.
	Compacted
	// Canceled ends the watch.
	Canceled
	// Error ends the watch.
	Error
)

var kindNames = [...]string{Created: "created", Events: "events", Progress: "progress", Reset: "reset",
	Snapshot: "snapshot", Synced: "synced", Compacted: "compacted", Canceled: "canceled", Error: "error"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Item is one thing a watcher received: a WebSocket message, an SSE event
// (an Events item with one event and its id), a hub response.
type Item struct {
	Kind            Kind
	Revision        int64
	CompactRevision int64
	Events          []Event
}

// Event is a received event.
type Event struct {
	// ID is the resume id the transport gave the event ("R" or "R.S", as
	// SSE does); empty when it gives none. When set it is checked, and an
	// item may end inside a revision only after an "R.S" id.
	ID     string
	Type   kv.EventType
	KV     kv.KeyValue
	PrevKV *kv.KeyValue
	// Sub is checked only when HasSub is set (the WebSocket form carries no
	// sub-revision).
	Sub    int32
	HasSub bool
}

// FromKV makes an Event from a store event, with its sub-revision; prevKV
// says whether the previous kv was sent.
func FromKV(ev *kv.Event, prevKV bool, id string) Event {
	e := Event{ID: id, Type: ev.Type, KV: ev.KV, Sub: ev.Sub, HasSub: true}
	if prevKV {
		e.PrevKV = ev.PrevKV
	}
	return e
}

// Checker checks one watch's stream, item by item, against a History. The
// first violation is kept: every later call returns it.
type Checker struct {
	h   *History
	req Request
	r   keyRange

	started bool // the start position is known
	ended   bool
	endKind Kind
	// next is the resume point: every matching event before (next, nextSub)
	// has been delivered, none after it.
	next    int64
	nextSub int32
	// cur is a history position at or before the first undelivered
	// matching event; peeked caches that event's position.
	cur    pos
	peeked bool
	// lastRev is the revision of the last delivered event or bookmark;
	// lastID the id of the last delivered event.
	lastRev      int64
	lastSplit    bool
	segmentItems int
	// snapshot in progress
	inSnap   bool
	snapRev  int64
	snapWant []kv.KeyValue
	snapGot  int

	events int
	err    error
}

// NewChecker starts checking a stream of req against h.
func NewChecker(h *History, req Request) *Checker {
	c := &Checker{h: h, req: req, r: keyRange{key: req.Key, end: req.End}}
	if req.StartRev > 0 {
		c.setPos(req.StartRev, req.StartSub)
		c.started = true
	}
	return c
}

// Check runs a Checker over items and returns the first violation.
func Check(h *History, req Request, items []Item) error {
	c := NewChecker(h, req)
	for _, it := range items {
		if err := c.Add(it); err != nil {
			return err
		}
	}
	return nil
}

// Err returns the first violation found, if any.
func (c *Checker) Err() error { return c.err }

// Events counts the events delivered so far.
func (c *Checker) Events() int { return c.events }

// Ended reports whether the stream ended (compacted, canceled or error) and
// how.
func (c *Checker) Ended() (bool, Kind) { return c.ended, c.endKind }

// ResumePoint returns where a resumed stream must start: revision and
// sub-revision (sub > 0 only after an event that carried an "R.S" id).
func (c *Checker) ResumePoint() (rev int64, sub int32) { return c.next, c.nextSub }

// ResumeID returns the resume point as an SSE id: "R" resumes at R+1,
// "R.S" inside R after S.
func (c *Checker) ResumeID() string {
	if c.nextSub > 0 {
		return fmt.Sprintf("%d.%d", c.next, c.nextSub-1)
	}
	return strconv.FormatInt(c.next-1, 10)
}

func (c *Checker) fail(format string, args ...any) error {
	if c.err == nil {
		c.err = fmt.Errorf("watchtest: watch %s: "+format, append([]any{c.describe()}, args...)...)
	}
	return c.err
}

func (c *Checker) describe() string {
	var b strings.Builder
	switch {
	case c.req.End == nil:
		fmt.Fprintf(&b, "key %q", c.req.Key)
	case len(c.req.End) == 1 && c.req.End[0] == 0:
		fmt.Fprintf(&b, "[%q, +inf)", c.req.Key)
	default:
		fmt.Fprintf(&b, "[%q, %q)", c.req.Key, c.req.End)
	}
	fmt.Fprintf(&b, " from %d.%d", c.req.StartRev, c.req.StartSub)
	return b.String()
}

func (c *Checker) setPos(rev int64, sub int32) {
	c.next, c.nextSub = rev, sub
	c.cur = c.h.seek(rev, sub)
}

// wants reports whether the request selects e.
func (c *Checker) wants(e *kv.Event) bool {
	if !c.r.contains(e.KV.Key) {
		return false
	}
	if e.Type == kv.EventPut {
		return !c.req.NoPut
	}
	return !c.req.NoDelete
}

// peek returns the first matching event not yet delivered, and its position.
func (c *Checker) peek() (*kv.Event, pos) {
	for {
		e := c.h.at(c.cur)
		if e == nil || c.wants(e) {
			return e, c.cur
		}
		c.cur = c.h.next(c.cur)
	}
}

// after reports whether (rev, sub) is at or after the resume point.
func (c *Checker) after(rev int64, sub int32) bool {
	return rev > c.next || (rev == c.next && sub >= c.nextSub)
}

// Add checks the next received item.
func (c *Checker) Add(it Item) error {
	if c.err != nil {
		return c.err
	}
	if c.ended {
		return c.fail("%s item after the watch ended with %s", it.Kind, c.endKind)
	}
	if !c.started && it.Kind != Created {
		return c.fail("%s item before the watch was created (StartRev 0 needs a Created item first)", it.Kind)
	}
	if c.inSnap && it.Kind != Snapshot && it.Kind != Synced && it.Kind != Reset && !endKind(it.Kind) {
		return c.fail("%s item inside the snapshot at %d", it.Kind, c.snapRev)
	}
	c.segmentItems++
	switch it.Kind {
	case Created:
		return c.created(it)
	case Events:
		return c.eventsItem(it)
	case Progress:
		return c.progress(it.Revision)
	case Reset:
		return c.reset(it.Revision)
	case Snapshot:
		return c.snapshot(it)
	case Synced:
		return c.synced(it.Revision)
	case Compacted:
		return c.compacted(it)
	case Canceled, Error:
		c.ended, c.endKind = true, it.Kind
		return nil
	}
	return c.fail("unknown item kind %d", it.Kind)
}

func endKind(k Kind) bool { return k == Compacted || k == Canceled || k == Error }

func (c *Checker) created(it Item) error {
	if c.segmentItems != 1 {
		return c.fail("created item after other items")
	}
	if it.Revision < c.h.Base() && c.req.StartRev == 0 {
		return c.fail("created at %d, before the history's base %d", it.Revision, c.h.Base())
	}
	if !c.started {
		c.started = true
		c.setPos(it.Revision+1, 0)
		c.lastRev = it.Revision
	}
	return nil
}

func (c *Checker) eventsItem(it Item) error {
	if len(it.Events) == 0 {
		return c.fail("events item with no events")
	}
	for i := range it.Events {
		if err := c.event(&it.Events[i]); err != nil {
			return err
		}
	}
	last := &it.Events[len(it.Events)-1]
	// Atomicity: the item must end at a revision's end for this watch,
	// unless the transport's id marks the split.
	if nxt, _ := c.peek(); nxt != nil && nxt.KV.ModRevision == last.KV.ModRevision && !c.lastSplit {
		return c.fail("revision %d split across responses: event %q (sub %d) is still to come", nxt.KV.ModRevision, nxt.KV.Key, nxt.Sub)
	}
	if it.Revision != 0 {
		if it.Revision < last.KV.ModRevision {
			return c.fail("events item revision %d below its last event's %d", it.Revision, last.KV.ModRevision)
		}
		return c.complete(it.Revision, "events item revision")
	}
	return nil
}

// event checks one delivered event against the next expected one.
func (c *Checker) event(got *Event) error {
	rev := got.KV.ModRevision
	exp, p := c.peek()
	if !c.r.contains(got.KV.Key) {
		return c.fail("event %s at %d for key %q outside the watched range", got.Type, rev, got.KV.Key)
	}
	if (got.Type == kv.EventPut && c.req.NoPut) || (got.Type == kv.EventDelete && c.req.NoDelete) {
		return c.fail("%s event at %d on %q delivered despite the filter", got.Type, rev, got.KV.Key)
	}
	if exp == nil || exp.KV.ModRevision != rev || !bytes.Equal(exp.KV.Key, got.KV.Key) {
		h := c.h.find(rev, got.KV.Key)
		switch {
		case h == nil:
			return c.fail("event %s at %d on %q is not in the history", got.Type, rev, got.KV.Key)
		case !c.after(rev, h.Sub):
			return c.fail("event %s at %d.%d on %q repeated or out of order (resume point %d.%d)", got.Type, rev, h.Sub, got.KV.Key, c.next, c.nextSub)
		case exp == nil:
			return c.fail("event at %d on %q beyond the history's end", rev, got.KV.Key)
		default:
			return c.fail("gap: event %s at %d.%d on %q missing before %s at %d.%d on %q", exp.Type, exp.KV.ModRevision, exp.Sub, exp.KV.Key, got.Type, rev, h.Sub, got.KV.Key)
		}
	}
	if err := c.sameEvent(exp, got); err != nil {
		return err
	}
	nxt := c.h.next(p)
	c.cur = nxt
	// The id, when given: "R" for the watch's last event of R, "R.S" before.
	c.lastSplit = false
	if got.ID != "" {
		following, _ := c.peek()
		want := strconv.FormatInt(rev, 10)
		if following != nil && following.KV.ModRevision == rev {
			want = fmt.Sprintf("%d.%d", rev, exp.Sub)
			c.lastSplit = true
		}
		if got.ID != want {
			return c.fail("event at %d.%d on %q has id %q, want %q", rev, exp.Sub, got.KV.Key, got.ID, want)
		}
	}
	if following, _ := c.peek(); following != nil && following.KV.ModRevision == rev {
		c.next, c.nextSub = rev, exp.Sub+1
	} else {
		c.next, c.nextSub = rev+1, 0
	}
	c.lastRev = max(c.lastRev, rev)
	c.events++
	return nil
}

// sameEvent compares a delivered event with the store's.
func (c *Checker) sameEvent(exp *kv.Event, got *Event) error {
	rev := exp.KV.ModRevision
	if got.Type != exp.Type {
		return c.fail("event at %d on %q is a %s, the store's is a %s", rev, exp.KV.Key, got.Type, exp.Type)
	}
	if got.HasSub && got.Sub != exp.Sub {
		return c.fail("event at %d on %q has sub-revision %d, want %d", rev, exp.KV.Key, got.Sub, exp.Sub)
	}
	if !sameKV(&exp.KV, &got.KV) {
		return c.fail("event at %d on %q: kv %s, want %s", rev, exp.KV.Key, fmtKV(&got.KV), fmtKV(&exp.KV))
	}
	switch {
	case !c.req.PrevKV && got.PrevKV != nil:
		return c.fail("event at %d on %q carries prev_kv, which was not asked for", rev, exp.KV.Key)
	case c.req.PrevKV && (got.PrevKV == nil) != (exp.PrevKV == nil):
		return c.fail("event at %d on %q: prev_kv %s, want %s", rev, exp.KV.Key, fmtKV(got.PrevKV), fmtKV(exp.PrevKV))
	case c.req.PrevKV && got.PrevKV != nil && !sameKV(exp.PrevKV, got.PrevKV):
		return c.fail("event at %d on %q: prev_kv %s, want %s", rev, exp.KV.Key, fmtKV(got.PrevKV), fmtKV(exp.PrevKV))
	}
	return nil
}

func sameKV(a, b *kv.KeyValue) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) &&
		a.CreateRevision == b.CreateRevision && a.ModRevision == b.ModRevision && a.Version == b.Version
}

func fmtKV(k *kv.KeyValue) string {
	if k == nil {
		return "none"
	}
	return fmt.Sprintf("{%q=%q create %d mod %d version %d}", k.Key, k.Value, k.CreateRevision, k.ModRevision, k.Version)
}

// complete checks that every matching event up to rev was delivered and
// moves the resume point past rev.
func (c *Checker) complete(rev int64, what string) error {
	if rev > c.h.Last() {
		return c.fail("%s %d beyond the history's last revision %d", what, rev, c.h.Last())
	}
	if exp, _ := c.peek(); exp != nil && exp.KV.ModRevision <= rev {
		return c.fail("%s %d passes undelivered event %s at %d.%d on %q", what, rev, exp.Type, exp.KV.ModRevision, exp.Sub, exp.KV.Key)
	}
	if rev+1 > c.next {
		c.setPos(rev+1, 0)
	}
	c.lastRev = max(c.lastRev, rev)
	return nil
}

func (c *Checker) progress(rev int64) error {
	if rev < c.lastRev {
		return c.fail("bookmark %d behind the delivered revision %d", rev, c.lastRev)
	}
	return c.complete(rev, "bookmark")
}

// Complete checks that the stream has delivered every matching event up to
// rev, e.g. after the writers stopped and the watcher drained its stream.
func (c *Checker) Complete(rev int64) error {
	if c.err != nil {
		return c.err
	}
	if c.ended {
		return nil
	}
	if exp, _ := c.peek(); exp != nil && exp.KV.ModRevision <= rev {
		return c.fail("stream stopped before event %s at %d.%d on %q (complete up to %d wanted)", exp.Type, exp.KV.ModRevision, exp.Sub, exp.KV.Key, rev)
	}
	return nil
}

func (c *Checker) compacted(it Item) error {
	if it.CompactRevision <= c.next {
		return c.fail("compacted at %d reported, but the stream's next revision %d is still readable", it.CompactRevision, c.next)
	}
	if c.req.Snapshot {
		return c.fail("compacted reported to a snapshot watch, which must heal with reset")
	}
	c.ended, c.endKind = true, Compacted
	return nil
}

func (c *Checker) reset(rev int64) error {
	if !c.req.Snapshot {
		return c.fail("reset sent to a watch that is not a snapshot watch")
	}
	if rev < c.lastRev {
		return c.fail("reset at %d behind the delivered revision %d", rev, c.lastRev)
	}
	want, err := c.h.StateAt(rev, c.req.Key, c.req.End)
	if err != nil {
		return c.fail("reset at %d: %v", rev, err)
	}
	c.inSnap, c.snapRev, c.snapWant, c.snapGot = true, rev, want, 0
	return nil
}

func (c *Checker) snapshot(it Item) error {
	if !c.inSnap {
		return c.fail("snapshot item outside a snapshot")
	}
	if it.Revision != 0 && it.Revision != c.snapRev {
		return c.fail("snapshot item at %d inside the snapshot at %d", it.Revision, c.snapRev)
	}
	for _, e := range it.Events {
		if e.Type != kv.EventPut {
			return c.fail("snapshot at %d carries a %s", c.snapRev, e.Type)
		}
		if c.snapGot >= len(c.snapWant) {
			return c.fail("snapshot at %d: extra key %q", c.snapRev, e.KV.Key)
		}
		want := &c.snapWant[c.snapGot]
		if !sameKV(want, &e.KV) {
			return c.fail("snapshot at %d: key #%d is %s, want %s", c.snapRev, c.snapGot, fmtKV(&e.KV), fmtKV(want))
		}
		c.snapGot++
	}
	return nil
}

func (c *Checker) synced(rev int64) error {
	if !c.inSnap || rev != c.snapRev {
		return c.fail("synced at %d without a snapshot at that revision", rev)
	}
	if c.snapGot != len(c.snapWant) {
		return c.fail("synced at %d after %d of the %d keys", rev, c.snapGot, len(c.snapWant))
	}
	c.inSnap = false
	c.setPos(rev+1, 0)
	c.lastRev = rev
	return nil
}

// Resume declares that the stream was reconnected from (rev, sub), as a
// client does with the last id or revision it saw (rev = last revision + 1;
// after an "R.S" id, rev R and sub S+1). The new segment may begin with a
// Created item. Resuming beyond the resume point would skip events and is a
// violation; resuming before it means the client will see events again,
// which is the client's choice and accepted.
func (c *Checker) Resume(rev int64, sub int32) error {
	if c.err != nil {
		return c.err
	}
	if c.ended && c.endKind == Compacted {
		return c.fail("resumed after compacted: the client must re-read and watch again")
	}
	if c.inSnap {
		return c.fail("resumed inside a snapshot")
	}
	if c.after(rev, sub) && (rev != c.next || sub != c.nextSub) {
		return c.fail("resumed at %d.%d, beyond the resume point %d.%d", rev, sub, c.next, c.nextSub)
	}
	c.ended, c.endKind = false, 0
	c.started = true
	c.segmentItems = 0
	c.lastRev = min(c.lastRev, rev-1)
	c.setPos(rev, sub)
	return nil
}
