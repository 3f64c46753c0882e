// Package watchtest checks a watch stream against the store's history,
// whatever transport carried it: the hub's responses, an SSE event stream,
// WebSocket messages. A test records the store's history (Record, or
// kv.Store.History), converts what a watcher received into Items, and a
// Checker verifies that the stream is
//
//   - ordered and unique: events come in revision and sub-revision order,
//     none twice;
//   - reliable: no matching event is missing between the start and the
//     last revision the stream claims complete (an events response's
//     revision, a bookmark, Complete);
//   - atomic: a revision's matching events are never split across
//     responses (except where a resume id R.S marks the split, as SSE does);
//   - resumable: a stream resumed from its resume point continues exactly
//     (Resume);
//   - bookmarkable: no event at or below a bookmark arrives after it, and a
//     bookmark never goes behind a delivered event;
//   - filtered: only keys of the range, only the wanted event types, prev_kv
//     exactly when asked and equal to the store's;
//   - honest about compaction: compacted is reported only for a revision
//     actually needed, a snapshot (reset ... synced) equals the range's state
//     at its revision, and nothing is silently skipped.
//
// The package has no dependency on the hub or any transport.
package watchtest

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/watchgate/watchgate/kv"
)

// History is the store's committed history, every revision after Base, in
// order. Snapshot checks need it from the store's first revision (Base 1).
type History struct {
	base    int64
	batches []kv.Batch
}

// NewHistory indexes batches, which must hold whole revisions in increasing
// order, all after base (1 for a history from the empty store).
func NewHistory(base int64, batches []kv.Batch) (*History, error) {
	h := &History{base: base}
	for _, b := range batches {
		if err := h.add(b); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func (h *History) add(b kv.Batch) error {
	last := h.Last()
	if b.Revision <= last {
		return fmt.Errorf("watchtest: history revision %d after %d", b.Revision, last)
	}
	for i, e := range b.Events {
		if e.KV.ModRevision != b.Revision || e.Sub != int32(i) {
			return fmt.Errorf("watchtest: history revision %d event %d has revision %d sub %d", b.Revision, i, e.KV.ModRevision, e.Sub)
		}
	}
	h.batches = append(h.batches, b)
	return nil
}

// Base is the revision the history starts after.
func (h *History) Base() int64 { return h.base }

// Last is the last revision of the history (Base when it is empty).
func (h *History) Last() int64 {
	if len(h.batches) == 0 {
		return h.base
	}
	return h.batches[len(h.batches)-1].Revision
}

// Batches returns the history's batches; they must not be modified.
func (h *History) Batches() []kv.Batch { return h.batches }

// pos is a place in the history: batch index and event index.
type pos struct{ b, e int }

// seek returns the position of the first event at or after (rev, sub).
func (h *History) seek(rev int64, sub int32) pos {
	b := sort.Search(len(h.batches), func(i int) bool { return h.batches[i].Revision >= rev })
	if b < len(h.batches) && h.batches[b].Revision == rev {
		e := sort.Search(len(h.batches[b].Events), func(i int) bool { return h.batches[b].Events[i].Sub >= sub })
		if e == len(h.batches[b].Events) {
			return pos{b + 1, 0}
		}
		return pos{b, e}
	}
	return pos{b, 0}
}

func (h *History) at(p pos) *kv.Event {
	if p.b >= len(h.batches) {
		return nil
	}
	return &h.batches[p.b].Events[p.e]
}

func (h *History) next(p pos) pos {
	if p.e+1 < len(h.batches[p.b].Events) {
		return pos{p.b, p.e + 1}
	}
	return pos{p.b + 1, 0}
}

// find returns the event of revision rev on key, if any.
func (h *History) find(rev int64, key []byte) *kv.Event {
	p := h.seek(rev, 0)
	for ; p.b < len(h.batches) && h.batches[p.b].Revision == rev; p = h.next(p) {
		if e := h.at(p); bytes.Equal(e.KV.Key, key) {
			return e
		}
	}
	return nil
}

// StateAt returns the keys of the range [key, end) (kv.RangeRequest's
// conventions) as of revision rev, sorted by key. It needs the history from
// the first revision.
func (h *History) StateAt(rev int64, key, end []byte) ([]kv.KeyValue, error) {
	if h.base > 1 {
		return nil, fmt.Errorf("watchtest: history starts after revision %d, cannot rebuild state", h.base)
	}
	if rev > h.Last() {
		return nil, fmt.Errorf("watchtest: revision %d beyond the history's last %d", rev, h.Last())
	}
	r := keyRange{key: key, end: end}
	state := map[string]kv.KeyValue{}
	for _, b := range h.batches {
		if b.Revision > rev {
			break
		}
		for _, e := range b.Events {
			if !r.contains(e.KV.Key) {
				continue
			}
			if e.Type == kv.EventDelete {
				delete(state, string(e.KV.Key))
			} else {
				state[string(e.KV.Key)] = e.KV
			}
		}
	}
	out := make([]kv.KeyValue, 0, len(state))
	for _, v := range state {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b kv.KeyValue) int { return bytes.Compare(a.Key, b.Key) })
	return out, nil
}

// keyRange is a watch's key selection, as kv.RangeRequest defines it.
type keyRange struct{ key, end []byte }

func (r keyRange) contains(k []byte) bool {
	switch {
	case r.end == nil:
		return bytes.Equal(k, r.key)
	case len(r.end) == 1 && r.end[0] == 0:
		return bytes.Compare(k, r.key) >= 0
	}
	return bytes.Compare(k, r.key) >= 0 && bytes.Compare(k, r.end) < 0
}

// Recorder records a store's commit feed as a History.
type Recorder struct {
	mu      sync.Mutex
	h       *History   // nil until Subscribe returned
	early   []kv.Batch // commits fed before that
	err     error
	cancel  func()
	stopped bool
}

// Record subscribes to a commit feed (kv.Store.Subscribe) and records every
// commit from then on. Start it on a fresh store to be able to check
// snapshots.
func Record(subscribe func(fn func([]kv.Batch)) (int64, func())) *Recorder {
	r := &Recorder{}
	// Not under mu: the feed may call record, under the store's own lock,
	// before subscribe returns.
	rev, cancel := subscribe(r.record)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h = &History{base: rev}
	r.cancel = cancel
	for _, b := range r.early {
		if b.Revision > rev {
			r.add(b)
		}
	}
	r.early = nil
	return r
}

func (r *Recorder) record(batches []kv.Batch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	for _, b := range batches {
		b.Events = slices.Clone(b.Events)
		if r.h == nil {
			r.early = append(r.early, b)
			continue
		}
		r.add(b)
	}
}

func (r *Recorder) add(b kv.Batch) {
	if err := r.h.add(b); err != nil && r.err == nil {
		r.err = err
	}
}

// History returns what was recorded so far, or the first inconsistency of
// the feed.
func (r *Recorder) History() (*History, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	return &History{base: r.h.base, batches: slices.Clip(r.h.batches)}, nil
}

// Stop unsubscribes.
func (r *Recorder) Stop() {
	r.mu.Lock()
	r.stopped = true
	cancel := r.cancel
	r.mu.Unlock()
	cancel()
}
