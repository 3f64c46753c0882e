package watchhub

import "sort"

// revBatch is the hub's shared events of one revision.
type revBatch struct {
	rev    int64
	events []*Event
	size   int
	// cum counts the events of every batch added to the window up to and
	// including this one, so the events of a stretch are a subtraction.
	cum int64
}

// recent is the window of the latest revisions the hub was notified of,
// kept in memory (bounded by a count of revisions and by bytes) so that a
// watcher that is only a little behind — a victim whose buffer overflowed,
// an unsynced watcher finishing its catch-up while writes go on — catches up
// without a disk read, and the final step into the synced group can be
// taken under the hub's lock without ever reading the store under it.
//
// It covers every revision r with base < r <= the hub's revision. It is
// guarded by Hub.mu.
type recent struct {
	buf      []revBatch // circular
	head, n  int
	base     int64
	bytes    int
	total    int64
	maxBytes int
}

func newRecent(rev int64, maxRevs, maxBytes int) recent {
	return recent{buf: make([]revBatch, maxRevs), base: rev, maxBytes: maxBytes}
}

func (r *recent) at(i int) *revBatch { return &r.buf[(r.head+i)%len(r.buf)] }

// add appends revision rev, the newest, evicting the oldest revisions
// beyond the bounds (the newest is always kept).
func (r *recent) add(rev int64, events []*Event, size int) {
	if len(r.buf) == 0 {
		r.base = rev
		return
	}
	for r.n > 0 && (r.n == len(r.buf) || r.bytes+size > r.maxBytes) {
		r.evict()
	}
	r.total += int64(len(events))
	*r.at(r.n) = revBatch{rev: rev, events: events, size: size, cum: r.total}
	r.n++
	r.bytes += size
}

func (r *recent) evict() {
	old := r.at(0)
	r.base = old.rev
	r.bytes -= old.size
	*old = revBatch{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}

// covers reports whether every revision from rev to the hub's revision is
// in the window.
func (r *recent) covers(rev int64) bool { return rev > r.base }

// find returns the position of the first revision >= rev.
func (r *recent) find(rev int64) int {
	return sort.Search(r.n, func(i int) bool { return r.at(i).rev >= rev })
}

// eventsSince counts the events of the revisions >= rev in the window.
func (r *recent) eventsSince(rev int64) int64 {
	i := r.find(rev)
	if i == r.n {
		return 0
	}
	b := r.at(i)
	return r.total - (b.cum - int64(len(b.events)))
}

// since appends to dst the batches of revisions >= rev, stopping after the
// one that reaches maxEvents events, and returns dst and the first revision
// not appended (0 when it appended up to the newest).
func (r *recent) since(rev int64, maxEvents int, dst []revBatch) ([]revBatch, int64) {
	n := 0
	for i := r.find(rev); i < r.n; i++ {
		b := r.at(i)
		dst = append(dst, *b)
		n += len(b.events)
		if n >= maxEvents && i+1 < r.n {
			return dst, r.at(i + 1).rev
		}
	}
	return dst, 0
}
