package watchhub

import "unsafe"

// watcherSet is the watchers of one key or one interval. A watcher knows its
// set and its position in it, so removal is O(1).
type watcherSet struct {
	ws []*watcher
}

func (s *watcherSet) add(w *watcher) {
	w.set = s
	w.pos = int32(len(s.ws))
	s.ws = append(s.ws, w)
}

func (s *watcherSet) remove(w *watcher) {
	last := len(s.ws) - 1
	moved := s.ws[last]
	s.ws[w.pos] = moved
	moved.pos = w.pos
	s.ws[last] = nil
	s.ws = s.ws[:last]
	w.set = nil
	w.pos = -1
}

// index finds the watchers whose range contains a key without looking at
// the others: single-key watchers in a map (O(1)), range and prefix
// watchers in an interval tree (a stabbing query, O(log N + matches)).
//
// The zero value is not ready; use newIndex. It is not safe for concurrent
// use; the hub guards it with its mutex.
type index struct {
	keys map[string]*watcherSet
	tree intervalTree
	n    int
}

func newIndex() index {
	return index{keys: make(map[string]*watcherSet)}
}

// add puts w in the index; w must not be in any index.
func (ix *index) add(w *watcher) {
	ix.n++
	if w.single {
		set := ix.keys[w.key]
		if set == nil {
			set = &watcherSet{}
			ix.keys[w.key] = set
		}
		set.add(w)
		return
	}
	ix.tree.getOrInsert(w.key, w.end, w.endInf).add(w)
}

// remove takes w out of the index; w must be in it.
func (ix *index) remove(w *watcher) {
	ix.n--
	set := w.set
	set.remove(w)
	if len(set.ws) > 0 {
		return
	}
	if w.single {
		delete(ix.keys, w.key)
		return
	}
	ix.tree.delete(w.key, w.end, w.endInf)
}

// match appends to dst every watcher whose range contains key.
func (ix *index) match(key []byte, dst []*watcher) []*watcher {
	if ix.n == 0 {
		return dst
	}
	if set := ix.keys[string(key)]; set != nil {
		dst = append(dst, set.ws...)
	}
	if ix.tree.n > 0 {
		dst = ix.tree.stab(bytesString(key), dst)
	}
	return dst
}

// len reports the number of watchers in the index.
func (ix *index) len() int { return ix.n }

// bytesString views b as a string without copying. The store never modifies
// an event's key once it is committed, and the string does not outlive the
// call that made it.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
