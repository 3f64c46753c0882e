package watchhub

import (
	"hash/maphash"
	"unsafe"
)

// index finds the watchers whose range contains a key without looking at
// the others: single-key watchers in a map (O(1)), range and prefix
// watchers in an interval tree (a stabbing query, O(log N + matches)).
//
// It holds its watchers by number: reg maps a number to its watcher; the
// key map, keyed by a hash of the key, and the tree's nodes hold sets of
// numbers (idSet), whose first number is inline. An idle watcher so costs
// the garbage collector, which marks all of this at every cycle, one
// pointer in reg, none in the key map and one (the node's bounds) in the
// tree, besides the watcher's own fields. A watcher knows its number (ri)
// and its position in its set (pos), so removal is O(1) for a key and
// O(log N) for an interval.
//
// Keys whose hashes collide share a set; match checks the key of the
// watchers it finds there.
//
// The zero value is not ready; use newIndex. It is not safe for concurrent
// use; the hub guards it with its mutex.
type index struct {
	seed maphash.Seed
	keys map[uint64]idSet
	tree intervalTree
	// reg holds the watchers by number; free lists the numbers to reuse.
	reg  []*watcher
	free []int32
	// found is the scratch buffer of match's set reads and tree query.
	found []int32
	n     int
}

func newIndex() index {
	return index{seed: maphash.MakeSeed(), keys: make(map[uint64]idSet)}
}

func (ix *index) hash(key string) uint64 { return maphash.String(ix.seed, key) }

// add puts w in the index; w must not be in any index.
func (ix *index) add(w *watcher) {
	ix.n++
	if k := len(ix.free); k > 0 {
		w.ri = ix.free[k-1]
		ix.free = ix.free[:k-1]
		ix.reg[w.ri] = w
	} else {
		w.ri = int32(len(ix.reg))
		ix.reg = append(ix.reg, w)
	}
	if w.single {
		h := ix.hash(w.key())
		set := ix.keys[h]
		w.pos = set.add(w.ri)
		ix.keys[h] = set
		return
	}
	w.pos = ix.tree.add(w.bounds, int(w.keyLen), w.endInf, w.ri)
}

// remove takes w out of the index; w must be in it.
func (ix *index) remove(w *watcher) {
	ix.n--
	if w.single {
		h := ix.hash(w.key())
		set := ix.keys[h]
		ix.reg[set.removeAt(w.pos)].pos = w.pos
		if set.len() == 0 {
			delete(ix.keys, h)
		} else {
			ix.keys[h] = set
		}
	} else {
		node := ix.tree.find(w.key(), w.end(), w.endInf)
		set := &ix.tree.nodes[node].set
		ix.reg[set.removeAt(w.pos)].pos = w.pos
		if set.len() == 0 {
			ix.tree.delete(w.key(), w.end(), w.endInf)
		}
	}
	ix.reg[w.ri] = nil
	ix.free = append(ix.free, w.ri)
	w.ri, w.pos = -1, -1
}

// match appends to dst every watcher whose range contains key.
func (ix *index) match(key []byte, dst []*watcher) []*watcher {
	if ix.n == 0 {
		return dst
	}
	k := bytesString(key)
	if len(ix.keys) > 0 {
		if set, ok := ix.keys[ix.hash(k)]; ok {
			ix.found = set.appendTo(ix.found[:0])
			for _, i := range ix.found {
				if w := ix.reg[i]; w.bounds == k {
					dst = append(dst, w)
				}
			}
		}
	}
	if ix.tree.n > 0 {
		ix.found = ix.tree.stab(k, ix.found[:0])
		for _, i := range ix.found {
			dst = append(dst, ix.reg[i])
		}
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
