package watchhub

import "unsafe"

// index finds the watchers whose range contains a key without looking at
// the others: single-key watchers in a map (O(1)), range and prefix
// watchers in an interval tree (a stabbing query, O(log N + matches)).
//
// It holds its watchers by number: reg maps a number to its watcher, and
// the map's and the tree's sets are []int32 of numbers, which the garbage
// collector does not scan. An idle watcher so costs the collector one
// pointer in reg, one map entry or its share of a tree node, and the
// watcher's own fields. A watcher knows its number (ri) and its position in
// its set (pos), so removal is O(1) for a key and O(log N) for an interval.
//
// The zero value is not ready; use newIndex. It is not safe for concurrent
// use; the hub guards it with its mutex.
type index struct {
	keys map[string][]int32
	tree intervalTree
	// reg holds the watchers by number; free lists the numbers to reuse.
	reg  []*watcher
	free []int32
	// stabbed is the scratch buffer of match's tree query.
	stabbed []int32
	n       int
}

func newIndex() index {
	return index{keys: make(map[string][]int32)}
}

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
		set := append(ix.keys[w.key()], w.ri)
		ix.keys[w.key()] = set
		w.pos = int32(len(set) - 1)
		return
	}
	w.pos = ix.tree.add(w.bounds, int(w.keyLen), w.endInf, w.ri)
}

// remove takes w out of the index; w must be in it.
func (ix *index) remove(w *watcher) {
	ix.n--
	var set *[]int32
	var node int32
	var keySet []int32
	if w.single {
		keySet = ix.keys[w.key()]
		set = &keySet
	} else {
		node = ix.tree.find(w.key(), w.end(), w.endInf)
		set = &ix.tree.nodes[node].set
	}
	last := len(*set) - 1
	moved := (*set)[last]
	(*set)[w.pos] = moved
	ix.reg[moved].pos = w.pos
	*set = (*set)[:last]
	switch {
	case w.single && last == 0:
		delete(ix.keys, w.key())
	case w.single:
		ix.keys[w.key()] = keySet
	case last == 0:
		ix.tree.delete(w.key(), w.end(), w.endInf)
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
	for _, i := range ix.keys[string(key)] {
		dst = append(dst, ix.reg[i])
	}
	if ix.tree.n > 0 {
		ix.stabbed = ix.tree.stab(bytesString(key), ix.stabbed[:0])
		for _, i := range ix.stabbed {
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
