package watchhub

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

// ivl is an interval of the model the tree is checked against.
type ivl struct {
	lo, hi string
	inf    bool
}

func (v ivl) contains(k string) bool { return k >= v.lo && (v.inf || k < v.hi) }

// addIvl adds val to the interval v of t.
func addIvl(t *intervalTree, v ivl, val int32) int32 {
	return t.add(v.lo+v.hi, len(v.lo), v.inf, val)
}

// checkTree verifies the AVL and max invariants of every node below i and
// returns the subtree's height.
func checkTree(tb testing.TB, t *intervalTree, i int32) int8 {
	tb.Helper()
	if i == 0 {
		return 0
	}
	n := &t.nodes[i]
	lh, rh := checkTree(tb, t, n.left), checkTree(tb, t, n.right)
	if d := lh - rh; d > 1 || d < -1 {
		tb.Fatalf("node [%q,%q) unbalanced: %d vs %d", n.lo(), n.hi(), lh, rh)
	}
	if n.height != 1+max(lh, rh) {
		tb.Fatalf("node [%q,%q) height %d, want %d", n.lo(), n.hi(), n.height, 1+max(lh, rh))
	}
	wantMax, wantInf := n.hi(), n.hiInf
	for _, c := range []int32{n.left, n.right} {
		if c == 0 {
			continue
		}
		m := &t.nodes[t.nodes[c].max]
		if cmpHi(m.hi(), m.hiInf, wantMax, wantInf) > 0 {
			wantMax, wantInf = m.hi(), m.hiInf
		}
	}
	if m := &t.nodes[n.max]; m.hiInf != wantInf || (!wantInf && m.hi() != wantMax) {
		tb.Fatalf("node [%q,%q) max %q/%v, want %q/%v", n.lo(), n.hi(), m.hi(), m.hiInf, wantMax, wantInf)
	}
	if l := n.left; l != 0 && cmpInterval(t.nodes[l].lo(), t.nodes[l].hi(), t.nodes[l].hiInf, n) >= 0 {
		tb.Fatalf("left child [%q,%q) not below [%q,%q)", t.nodes[l].lo(), t.nodes[l].hi(), n.lo(), n.hi())
	}
	if r := n.right; r != 0 && cmpInterval(t.nodes[r].lo(), t.nodes[r].hi(), t.nodes[r].hiInf, n) <= 0 {
		tb.Fatalf("right child [%q,%q) not above [%q,%q)", t.nodes[r].lo(), t.nodes[r].hi(), n.lo(), n.hi())
	}
	return n.height
}

func TestIntervalTreeStab(t *testing.T) {
	tests := []struct {
		name string
		ivls []ivl
		key  string
		want []string
	}{
		{"empty", nil, "a", nil},
		{"inside", []ivl{{"a", "c", false}}, "b", []string{"a-c"}},
		{"end is exclusive", []ivl{{"a", "c", false}}, "c", nil},
		{"start is inclusive", []ivl{{"a", "c", false}}, "a", []string{"a-c"}},
		{"near prefix", []ivl{{"ns1/", "ns10", false}}, "ns10", nil},
		{"near prefix inside", []ivl{{"ns1/", "ns10", false}}, "ns1/x", []string{"ns1/-ns10"}},
		{"infinite end", []ivl{{"m", "", true}}, "\xff\xff", []string{"m-inf"}},
		{"all keys", []ivl{{"", "", true}}, "", []string{"-inf"}},
		{"several", []ivl{{"a", "z", false}, {"b", "c", false}, {"c", "d", false}, {"", "", true}}, "c", []string{"-inf", "a-z", "c-d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tree intervalTree
			var names []string
			for i, v := range tt.ivls {
				name := v.lo + "-" + v.hi
				if v.inf {
					name = v.lo + "-inf"
				}
				names = append(names, name)
				addIvl(&tree, v, int32(i))
			}
			var got []string
			for _, i := range tree.stab(tt.key, nil) {
				got = append(got, names[i])
			}
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("stab(%q) (-want +got):\n%s", tt.key, diff)
			}
		})
	}
}

// TestIntervalTreeRandom checks inserts, deletes and stabs against a brute
// force model, and the tree's invariants after every change.
func TestIntervalTreeRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() string { return fmt.Sprintf("%c%c", 'a'+rng.IntN(6), 'a'+rng.IntN(6)) }
	var tree intervalTree
	model := map[ivl]int32{}
	for step := range 1500 {
		a, b := key(), key()
		if a > b {
			a, b = b, a
		}
		v := ivl{lo: a, hi: b, inf: rng.IntN(10) == 0}
		if v.inf {
			v.hi = ""
		} else if a == b {
			continue
		}
		if _, ok := model[v]; ok && rng.IntN(2) == 0 {
			if !tree.delete(v.lo, v.hi, v.inf) {
				t.Fatalf("step %d: delete %v: not found", step, v)
			}
			if tree.find(v.lo, v.hi, v.inf) != 0 {
				t.Fatalf("step %d: %v found after its delete", step, v)
			}
			delete(model, v)
		} else if !ok {
			addIvl(&tree, v, int32(step))
			model[v] = int32(step)
		}
		checkTree(t, &tree, tree.root)
		if tree.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, tree.len(), len(model))
		}
		if live := len(tree.nodes) - 1 - len(tree.free); live != len(model) {
			t.Fatalf("step %d: %d nodes in use, want %d", step, live, len(model))
		}
		k := key()[:1+rng.IntN(2)]
		var want, got []int32
		for v, val := range model {
			if v.contains(k) {
				want = append(want, val)
			}
		}
		got = tree.stab(k, nil)
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d: stab(%q) (-want +got):\n%s", step, k, diff)
		}
	}
}

// TestIntervalTreeSharedNode checks that values of one interval share its
// node.
func TestIntervalTreeSharedNode(t *testing.T) {
	var tree intervalTree
	if p := tree.add("ab", 1, false, 7); p != 0 {
		t.Fatalf("first value at %d, want 0", p)
	}
	if p := tree.add("ab", 1, false, 8); p != 1 {
		t.Fatalf("second value at %d, want 1", p)
	}
	if tree.len() != 1 {
		t.Fatalf("len = %d, want 1", tree.len())
	}
	if got := tree.stab("a", nil); !slices.Equal(got, []int32{7, 8}) {
		t.Fatalf("stab = %v, want [7 8]", got)
	}
}

// TestIndexRandom adds and removes single-key, prefix, range and open
// watchers in an index at random, several a key or interval, and checks
// every match against a brute-force scan, and the index's numbering.
func TestIndexRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	key := func() string { return fmt.Sprintf("%c%c", 'a'+rng.IntN(4), 'a'+rng.IntN(4)) }
	ix := newIndex()
	var live []*watcher
	for step := range 4000 {
		if len(live) > 0 && rng.IntN(5) < 2 {
			i := rng.IntN(len(live))
			ix.remove(live[i])
			if live[i].ri != -1 || live[i].pos != -1 {
				t.Fatalf("step %d: removed watcher keeps ri %d pos %d", step, live[i].ri, live[i].pos)
			}
			live = slices.Delete(live, i, i+1)
		} else {
			a, b := key(), key()
			req := WatchRequest{ID: fmt.Sprint(step), Key: []byte(a)}
			switch rng.IntN(4) {
			case 1:
				req.End = kv.PrefixEnd([]byte(a[:1]))
				req.Key = []byte(a[:1])
			case 2:
				if a >= b {
					continue
				}
				req.End = []byte(b)
			case 3:
				req.End = []byte{0}
			}
			w, err := newWatcher(nil, &req)
			if err != nil {
				t.Fatal(err)
			}
			ix.add(w)
			live = append(live, w)
		}
		if ix.len() != len(live) {
			t.Fatalf("step %d: len %d, want %d", step, ix.len(), len(live))
		}
		for _, w := range live {
			if ix.reg[w.ri] != w {
				t.Fatalf("step %d: watcher %s not at its number %d", step, w.id, w.ri)
			}
		}
		k := []byte(key())
		var want, got []string
		for _, w := range live {
			if w.contains(k) {
				want = append(want, w.id)
			}
		}
		for _, w := range ix.match(k, nil) {
			got = append(got, w.id)
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d: match(%q) (-want +got):\n%s", step, k, diff)
		}
	}
	for _, w := range live {
		ix.remove(w)
	}
	if len(ix.keys) != 0 || ix.tree.len() != 0 || ix.len() != 0 {
		t.Fatalf("index not empty after removing every watcher: %d keys, %d intervals", len(ix.keys), ix.tree.len())
	}
}

// TestIdSet checks idSet against a slice with the same swap removal.
func TestIdSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var s idSet
	var model []int32
	for step := range 3000 {
		if len(model) > 0 && rng.IntN(2) == 0 {
			pos := rng.IntN(len(model))
			last := model[len(model)-1]
			if moved := s.removeAt(int32(pos)); moved != last {
				t.Fatalf("step %d: removeAt(%d) moved %d, want %d", step, pos, moved, last)
			}
			model[pos] = last
			model = model[:len(model)-1]
		} else {
			if pos := s.add(int32(step)); int(pos) != len(model) {
				t.Fatalf("step %d: add at %d, want %d", step, pos, len(model))
			}
			model = append(model, int32(step))
		}
		if got := s.appendTo(nil); !slices.Equal(got, model) || s.len() != len(model) {
			t.Fatalf("step %d: set %v (len %d), want %v", step, got, s.len(), model)
		}
		for i, v := range model {
			if s.at(int32(i)) != v {
				t.Fatalf("step %d: at(%d) = %d, want %d", step, i, s.at(int32(i)), v)
			}
		}
	}
}
