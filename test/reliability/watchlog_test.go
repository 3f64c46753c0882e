package reliability

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/watchgate/watchgate/internal/watchtest"
	"github.com/watchgate/watchgate/kv"
)

// watchSpec is what a watcher watches, in both the wire's and the
// validator's terms.
type watchSpec struct {
	Key      string
	End      string // "" with Prefix false: the single key
	Prefix   bool
	PrevKV   bool
	NoPut    bool
	NoDelete bool
	Snapshot bool
}

// request is the validator's form of the spec, starting at start.
func (s watchSpec) request(start int64) watchtest.Request {
	r := watchtest.Request{Key: []byte(s.Key), StartRev: start, PrevKV: s.PrevKV, NoPut: s.NoPut,
		NoDelete: s.NoDelete, Snapshot: s.Snapshot}
	switch {
	case s.Prefix:
		r.End = kv.PrefixEnd([]byte(s.Key))
	case s.End != "":
		r.End = []byte(s.End)
	}
	return r
}

func (s watchSpec) String() string {
	var b strings.Builder
	switch {
	case s.Prefix:
		fmt.Fprintf(&b, "prefix %q", s.Key)
	case s.End != "":
		fmt.Fprintf(&b, "range [%q, %q)", s.Key, s.End)
	default:
		fmt.Fprintf(&b, "key %q", s.Key)
	}
	if s.PrevKV {
		b.WriteString(" prev_kv")
	}
	if s.NoPut {
		b.WriteString(" deletes")
	}
	if s.NoDelete {
		b.WriteString(" puts")
	}
	if s.Snapshot {
		b.WriteString(" snapshot")
	}
	return b.String()
}

// entryKind says what a watch log entry records.
type entryKind uint8

const (
	entryItem entryKind = iota
	// entryResume: the client reconnected from (Rev, Sub).
	entryResume
	// entryRestart: the client reconnected without a position (a snapshot
	// watch cut before its first synced): it resumes where the validator
	// says it stands, and the server must heal the gap with a snapshot.
	entryRestart
)

// logEntry is one thing a watcher saw or did.
type logEntry struct {
	Kind entryKind
	Item watchtest.Item
	Rev  int64
	Sub  int32
	At   time.Duration
	Conn int // connection number
}

func (e logEntry) String() string {
	at := fmt.Sprintf("%8.3fs #%d ", e.At.Seconds(), e.Conn)
	switch e.Kind {
	case entryResume:
		return at + fmt.Sprintf("-- reconnect, resume at %d.%d", e.Rev, e.Sub)
	case entryRestart:
		return at + "-- reconnect without a position (new snapshot)"
	}
	it := e.Item
	s := at + it.Kind.String()
	if it.Revision != 0 {
		s += fmt.Sprintf(" rev %d", it.Revision)
	}
	if it.CompactRevision != 0 {
		s += fmt.Sprintf(" compact %d", it.CompactRevision)
	}
	for _, ev := range it.Events {
		s += "\n" + at + "    " + fmtItemEvent(ev)
	}
	return s
}

func fmtItemEvent(ev watchtest.Event) string {
	s := ""
	if ev.ID != "" {
		s = "id " + ev.ID + " "
	}
	if ev.Type == kv.EventDelete {
		s += fmt.Sprintf("delete %q at %d", ev.KV.Key, ev.KV.ModRevision)
	} else {
		s += fmt.Sprintf("put %q=%q(c%d m%d v%d)", ev.KV.Key, trimValue(string(ev.KV.Value)), ev.KV.CreateRevision, ev.KV.ModRevision, ev.KV.Version)
	}
	if ev.PrevKV != nil {
		s += fmt.Sprintf(" prev m%d v%d", ev.PrevKV.ModRevision, ev.PrevKV.Version)
	}
	return s
}

// generation is one watch from its start to its end: a compacted end
// makes the client re-read and watch again, a new generation.
type generation struct {
	Req     watchtest.Request
	Entries []logEntry
	// ReadRev and ReadKVs are the re-read that started this generation
	// (ReadRev 0 for the first), checked against the history.
	ReadRev int64
	ReadKVs []kvRec
}

// watchLog records what one watcher saw, for the final check. Its methods
// are called from the watcher's goroutines.
type watchLog struct {
	Name string
	Spec watchSpec

	mu          sync.Mutex
	gens        []*generation
	reconnects  int
	events      int
	bookmarks   int
	compactions int
	resets      int
	stalls      int
	errors      []string // protocol breaches seen by the client
	start       time.Time
}

func newWatchLog(name string, spec watchSpec, start time.Time) *watchLog {
	return &watchLog{Name: name, Spec: spec, start: start}
}

// newGeneration starts a generation at start (0: the next revision).
func (l *watchLog) newGeneration(start, readRev int64, readKVs []kvRec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gens = append(l.gens, &generation{Req: l.Spec.request(start), ReadRev: readRev, ReadKVs: readKVs})
}

func (l *watchLog) add(e logEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.At = time.Since(l.start)
	g := l.gens[len(l.gens)-1]
	g.Entries = append(g.Entries, e)
	switch {
	case e.Kind != entryItem:
		l.reconnects++
	case e.Item.Kind == watchtest.Events:
		l.events += len(e.Item.Events)
	case e.Item.Kind == watchtest.Progress:
		l.bookmarks++
	case e.Item.Kind == watchtest.Compacted:
		l.compactions++
	case e.Item.Kind == watchtest.Reset:
		l.resets++
	}
}

func (l *watchLog) item(conn int, it watchtest.Item) {
	l.add(logEntry{Kind: entryItem, Item: it, Conn: conn})
}

// dropFrom removes the entries from index i on: a snapshot cut
// before its synced, which the client discards as a whole.
func (l *watchLog) dropFrom(i int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.gens[len(l.gens)-1]
	for _, e := range g.Entries[i:] {
		if e.Kind == entryItem && e.Item.Kind == watchtest.Reset {
			l.resets--
		}
	}
	g.Entries = g.Entries[:i]
}

// mark returns the index the next entry will have.
func (l *watchLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.gens[len(l.gens)-1].Entries)
}

func (l *watchLog) breach(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) < 20 {
		l.errors = append(l.errors, fmt.Sprintf("%.3fs ", time.Since(l.start).Seconds())+fmt.Sprintf(format, args...))
	}
}

func (l *watchLog) stall() {
	l.mu.Lock()
	l.stalls++
	l.mu.Unlock()
}

// watchStats sums what the watchers saw.
type watchStats struct {
	Watchers, Generations, Reconnects, Events, Bookmarks, Compactions, Resets, Stalls int
}

func (l *watchLog) stats() watchStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return watchStats{Watchers: 1, Generations: len(l.gens), Reconnects: l.reconnects, Events: l.events,
		Bookmarks: l.bookmarks, Compactions: l.compactions, Resets: l.resets, Stalls: l.stalls}
}

func (s *watchStats) add(o watchStats) {
	s.Watchers += o.Watchers
	s.Generations += o.Generations
	s.Reconnects += o.Reconnects
	s.Events += o.Events
	s.Bookmarks += o.Bookmarks
	s.Compactions += o.Compactions
	s.Resets += o.Resets
	s.Stalls += o.Stalls
}

// check runs the validator over every generation; complete is the revision
// up to which the last generation must have delivered everything (0: no
// such check). A failure shows the log entries before it and the history
// around its revision.
func (l *watchLog) check(hl *historyLog, h *watchtest.History, complete int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errors) > 0 {
		return fmt.Errorf("watcher %s (%s): protocol breaches:\n  %s", l.Name, l.Spec, strings.Join(l.errors, "\n  "))
	}
	for gi, g := range l.gens {
		if g.ReadRev > 0 {
			want, err := h.StateAt(g.ReadRev, g.Req.Key, g.Req.End)
			if err != nil {
				return fmt.Errorf("watcher %s generation %d: re-read at %d: %v", l.Name, gi, g.ReadRev, err)
			}
			if err := sameState(g.ReadKVs, want); err != nil {
				return fmt.Errorf("watcher %s generation %d: re-read at %d: %v", l.Name, gi, g.ReadRev, err)
			}
		}
		c := watchtest.NewChecker(h, g.Req)
		for i, e := range g.Entries {
			var err error
			switch e.Kind {
			case entryResume:
				err = c.Resume(e.Rev, e.Sub)
			case entryRestart:
				rev, sub := c.ResumePoint()
				if rev == 0 {
					// No position yet: the first connection was cut
					// before its created, so the watch sent again
					// from now starts where its created says.
					continue
				}
				err = c.Resume(rev, sub)
			default:
				err = c.Add(e.Item)
			}
			if err != nil {
				return l.failure(hl, gi, g, i, err)
			}
		}
		if gi == len(l.gens)-1 && complete > 0 {
			if err := c.Complete(complete); err != nil {
				return l.failure(hl, gi, g, len(g.Entries)-1, err)
			}
		}
	}
	return nil
}

// failure formats a validator error with the shortest context that shows
// it: the entries since the last reconnect before it (at most 30) and the
// history's revisions around it.
func (l *watchLog) failure(hl *historyLog, gi int, g *generation, i int, err error) error {
	from := max(0, i-30)
	for j := i; j > from; j-- {
		if g.Entries[j].Kind != entryItem {
			from = max(from, j-3)
			break
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "watcher %s (%s), generation %d from %d: %v\n  stream (entries %d..%d of %d):\n", l.Name, l.Spec, gi,
		g.Req.StartRev, err, from, i, len(g.Entries))
	var rev int64
	for _, e := range g.Entries[from : i+1] {
		for _, line := range strings.Split(e.String(), "\n") {
			fmt.Fprintf(&b, "    %s\n", line)
		}
		if e.Kind == entryItem {
			rev = max(rev, e.Item.Revision)
			for _, ev := range e.Item.Events {
				rev = max(rev, ev.KV.ModRevision)
			}
		} else {
			rev = max(rev, e.Rev)
		}
	}
	fmt.Fprintf(&b, "  history around revision %d:\n%s", rev, hl.Around(rev, 5, 5))
	return fmt.Errorf("%s", b.String())
}

// sameState compares a range read with the history's state.
func sameState(got []kvRec, want []kv.KeyValue) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d keys, the history has %d", len(got), len(want))
	}
	for i := range got {
		w := kvRec{Key: string(want[i].Key), Value: string(want[i].Value), HasValue: true, CreateRevision: want[i].CreateRevision,
			ModRevision: want[i].ModRevision, Version: want[i].Version}
		if !sameKV(&got[i], w) || !got[i].HasValue {
			return fmt.Errorf("key #%d is %s, the history has %s", i, got[i], w)
		}
	}
	return nil
}
