package watchhub

// Kind says what a Response carries.
type Kind uint8

const (
	// KindCreated acknowledges a Watch: Revision is the hub's revision when
	// the watcher was registered. It is the watch's first response.
	KindCreated Kind = iota + 1
	// KindEvents carries Events of one watch, in revision and sub-revision
	// order. It never splits a revision: every event of a revision that the
	// watch receives is in the same response. It may hold several
	// revisions. Revision is the last revision it completes: every matching
	// event up to Revision has now been queued, so a watch resumed from
	// Revision+1 continues exactly.
	KindEvents
	// KindProgress is a stream-level bookmark: every watch of the stream has
	// been sent every matching event up to Revision. WatchID is empty.
	KindProgress
	// KindWatchProgress is a bookmark of the watch WatchID alone.
	KindWatchProgress
	// KindReset starts a snapshot of a snapshot watch at Revision S: the
	// client drops what it holds for the watch.
	KindReset
	// KindSnapshot carries a chunk of the snapshot started by the last
	// KindReset: put events of the keys of the range as of Revision, in
	// key order, chunk after chunk.
	KindSnapshot
	// KindSynced ends the snapshot at Revision S: live events from S+1
	// follow.
	KindSynced
	// KindCompacted ends a watch whose next revision was compacted:
	// CompactRevision is the oldest revision still readable, Revision the
	// hub's revision. The watch is gone; the client re-reads and watches
	// again.
	KindCompacted
	// KindCanceled ends a watch canceled by Cancel; Reason says why.
	KindCanceled
	// KindError ends a watch the hub could not serve (a store failure);
	// Err says why.
	KindError
)

var kindNames = [...]string{
	KindCreated:       "created",
	KindEvents:        "events",
	KindProgress:      "progress",
	KindWatchProgress: "watch_progress",
	KindReset:         "reset",
	KindSnapshot:      "snapshot",
	KindSynced:        "synced",
	KindCompacted:     "compacted",
	KindCanceled:      "canceled",
	KindError:         "error",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Response is one item of a Stream's outgoing queue. Which fields are set
// depends on Kind (see the Kind constants). Events and their bytes are
// shared with other streams and must not be modified.
type Response struct {
	Kind    Kind
	WatchID string
	// Revision: see Kind.
	Revision int64
	// CompactRevision is set for KindCompacted.
	CompactRevision int64
	// Events is set for KindEvents and KindSnapshot.
	Events []*Event
	// PrevKV repeats the watch's PrevKV option, so a transport can pick the
	// encoding (Event.Data(r.PrevKV), Event.JSON(r.PrevKV)) without looking
	// the watch up.
	PrevKV bool
	// Reason is set for KindCanceled.
	Reason string
	// Err is set for KindError.
	Err error

	size int
}

// responseOverhead approximates the memory of a Response without its events.
const responseOverhead = 96

// LastOfRevision reports whether r.Events[i] is the last event of its
// revision in r, that is, the last one of that revision the watch receives
// (a response never splits a revision). An SSE transport gives such an event
// the id "R" and the others "R.S".
func (r *Response) LastOfRevision(i int) bool {
	return i == len(r.Events)-1 || r.Events[i+1].KV.ModRevision != r.Events[i].KV.ModRevision
}
