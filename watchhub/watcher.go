package watchhub

import (
	"bytes"
	"fmt"

	"github.com/watchgate/watchgate/kv"
)

// WatchRequest describes one watch of a Stream.
type WatchRequest struct {
	// ID names the watch in its stream's responses. It is chosen by the
	// caller (the WebSocket client's id); it must be unique among the live
	// watches of the stream and may be empty (an SSE stream has one watch).
	ID string
	// Key and End select the keys with the store's conventions
	// (kv.RangeRequest): End nil watches the single key Key; otherwise
	// [Key, End); End = []byte{0} means every key from Key on (with Key
	// empty, every key); kv.PrefixEnd(Key) turns Key into a prefix.
	Key []byte
	End []byte
	// StartRev is the first revision to send. 0 means the next revision
	// after registration. A revision already committed replays history
	// first; a revision that was compacted ends the watch with KindCompacted
	// (or, for a Snapshot watch, heals it with a fresh snapshot).
	StartRev int64
	// StartSub skips the events of StartRev whose sub-revision is below it,
	// to resume inside a revision: after an SSE id "R.S" the stream resumes
	// with StartRev R and StartSub S+1. Ignored when StartRev is 0.
	StartSub int32
	// PrevKV is copied to the watch's responses; the events always carry the
	// previous kv and the transport picks the encoding.
	PrevKV bool
	// NoPut and NoDelete filter out put and delete events.
	NoPut    bool
	NoDelete bool
	// Snapshot makes the watch a replica of its range. With StartRev 0 it
	// first sends KindReset(S), the keys of the range as of S in KindSnapshot
	// chunks, KindSynced(S), then live events from S+1, where S is the
	// revision of registration. With StartRev > 0 (a resumed replica) it
	// streams from StartRev like any watch, but if that revision has been
	// compacted it heals with Reset, a fresh snapshot and Synced instead of
	// ending with KindCompacted. Snapshot puts are not filtered by NoPut.
	Snapshot bool
}

// Watcher states. A watcher is in exactly one of the hub's groups.
const (
	// stateSynced: caught up, in the synced index; notify queues its events.
	stateSynced uint8 = iota
	// stateVictim: in the synced index, but its stream's queue was full;
	// notify appends its events to its pending buffer.
	stateVictim
	// stateUnsynced: behind; the sync loop feeds it from history.
	stateUnsynced
	// stateSnapshot: sending the snapshot of its range.
	stateSnapshot
	// stateDone: ended (canceled, compacted, failed, or its stream closed).
	stateDone
)

// watcher is one watch of a stream. The fields above the line are set when
// the watcher is made and never change, so the sync loop may read them
// without the hub's lock; the others are guarded by Hub.mu. It is kept
// small: an idle watcher's whole cost in the hub is this struct, its key
// strings and its place in the index and in its stream.
type watcher struct {
	id string
	s  *Stream
	// bounds is the key followed by the exclusive end (with endInf false
	// and single false): one string, so one pointer, for both; see key and
	// end.
	bounds string
	keyLen int32
	minRev int64 // events before (minRev, minSub) are never sent
	minSub int32
	single bool
	endInf bool
	prevKV bool
	noPut  bool
	noDel  bool
	snap   bool

	// -- guarded by Hub.mu --
	state uint8
	// progressWanted: a per-watch bookmark was requested while behind.
	progressWanted bool
	// ri and pos: the watcher's number in the synced index and its
	// position in its key's or interval's set there (-1 when not in it);
	// sidx its place in its stream's list.
	ri   int32
	pos  int32
	sidx int32
	// bufStart and bufEnd collect the watcher's events during one notify:
	// a run of the notify's events (bufEnd 0: none yet; -1: not a run,
	// the events are in Hub.spill).
	bufStart int32
	bufEnd   int32
	// nextRev is the first revision not yet queued (unsynced and snapshot
	// states; for a synced watcher it is the hub's revision + 1).
	nextRev int64
	// victim holds the events kept aside while a victim.
	victim *victimBuf
	// snapshot is the snapshot in progress.
	snapshot *snapState
}

// snapState is the progress of a snapshot: its revision, the next key to
// read and a generation that tells a restarted snapshot from the old one.
type snapState struct {
	rev int64
	key string
	gen uint32
}

// victimBuf is a victim's pending events, not yet queued.
type victimBuf struct {
	events []*Event
	size   int
	// from is the first revision not queued when the watcher became a
	// victim: where it resumes from history if the buffer overflows.
	from int64
}

// newWatcher validates req and makes its watcher.
func newWatcher(s *Stream, req *WatchRequest) (*watcher, error) {
	w := &watcher{
		id:     req.ID,
		s:      s,
		prevKV: req.PrevKV,
		noPut:  req.NoPut,
		noDel:  req.NoDelete,
		snap:   req.Snapshot,
		ri:     -1,
		pos:    -1,
		sidx:   -1,
	}
	switch {
	case req.End == nil:
		if len(req.Key) == 0 {
			return nil, fmt.Errorf("%w: the empty key can only be watched as a prefix or range", ErrInvalidRange)
		}
		w.single = true
	case len(req.End) == 1 && req.End[0] == 0:
		w.endInf = true
	case bytes.Compare(req.Key, req.End) >= 0:
		return nil, fmt.Errorf("%w: range end %q is not after key %q", ErrInvalidRange, req.End, req.Key)
	}
	if w.single || w.endInf {
		w.bounds = string(req.Key)
	} else {
		w.bounds = string(req.Key) + string(req.End)
	}
	w.keyLen = int32(len(req.Key))
	if req.StartRev < 0 {
		return nil, fmt.Errorf("%w: negative start revision %d", ErrInvalidRequest, req.StartRev)
	}
	if req.StartSub < 0 {
		return nil, fmt.Errorf("%w: negative start sub-revision %d", ErrInvalidRequest, req.StartSub)
	}
	if req.StartRev > 0 {
		w.minRev = req.StartRev
		w.minSub = req.StartSub
	}
	return w, nil
}

// key returns the watched key, the range's start.
func (w *watcher) key() string { return w.bounds[:w.keyLen] }

// end returns the range's exclusive end: empty for a single key and for an
// infinite end (endInf).
func (w *watcher) end() string { return w.bounds[w.keyLen:] }

// contains reports whether key is in the watcher's range.
func (w *watcher) contains(key []byte) bool {
	k := bytesString(key)
	if w.single {
		return k == w.bounds
	}
	return k >= w.key() && (w.endInf || k < w.end())
}

// accepts reports whether w wants e, its range aside: type filters and the
// start position.
func (w *watcher) accepts(e *Event) bool {
	if e.Type == kv.EventPut {
		if w.noPut {
			return false
		}
	} else if w.noDel {
		return false
	}
	if rev := e.KV.ModRevision; rev <= w.minRev {
		if rev < w.minRev || e.Sub < w.minSub {
			return false
		}
	}
	return true
}

// wants reports whether w wants e: range, filters and start position.
func (w *watcher) wants(e *Event) bool {
	return w.contains(e.KV.Key) && w.accepts(e)
}

// ahead reports whether w starts beyond revision rev: its client has seen
// more than rev (through another gateway whose feed was ahead), so a
// bookmark at rev would move the client's position back. A start inside
// a revision (minSub > 0) is beyond every revision before it.
func (w *watcher) ahead(rev int64) bool {
	if w.minSub > 0 {
		return rev < w.minRev
	}
	return rev < w.minRev-1
}
