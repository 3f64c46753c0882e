package watchhub

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ivl is an interval of the model the tree is checked against.
type ivl struct {
	lo, hi string
	inf    bool
}

func (v ivl) contains(k string) bool { return k >= v.lo && (v.inf || k < v.hi) }

// checkTree verifies the AVL and max invariants of every node and returns
// the subtree's height.
func checkTree(tb testing.TB, n *ivNode) int8 {
	tb.Helper()
	if n == nil {
		return 0
	}
	lh, rh := checkTree(tb, n.left), checkTree(tb, n.right)
	if d := lh - rh; d > 1 || d < -1 {
		tb.Fatalf("node [%q,%q) unbalanced: %d vs %d", n.lo, n.hi, lh, rh)
	}
	if n.height != 1+max(lh, rh) {
		tb.Fatalf("node [%q,%q) height %d, want %d", n.lo, n.hi, n.height, 1+max(lh, rh))
	}
	wantMax, wantInf := n.hi, n.hiInf
	for _, c := range []*ivNode{n.left, n.right} {
		if c != nil && cmpHi(c.max, c.maxInf, wantMax, wantInf) > 0 {
			wantMax, wantInf = c.max, c.maxInf
		}
	}
	if n.maxInf != wantInf || (!wantInf && n.max != wantMax) {
		tb.Fatalf("node [%q,%q) max %q/%v, want %q/%v", n.lo, n.hi, n.max, n.maxInf, wantMax, wantInf)
	}
	if n.left != nil && cmpInterval(n.left.lo, n.left.hi, n.left.hiInf, n) >= 0 {
		tb.Fatalf("left child [%q,%q) not below [%q,%q)", n.left.lo, n.left.hi, n.lo, n.hi)
	}
	if n.right != nil && cmpInterval(n.right.lo, n.right.hi, n.right.hiInf, n) <= 0 {
		tb.Fatalf("right child [%q,%q) not above [%q,%q)", n.right.lo, n.right.hi, n.lo, n.hi)
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
			for _, v := range tt.ivls {
				name := v.lo + "-" + v.hi
				if v.inf {
					name = v.lo + "-inf"
				}
				tree.getOrInsert(v.lo, v.hi, v.inf).add(&watcher{id: name})
			}
			var got []string
			for _, w := range tree.stab(tt.key, nil) {
				got = append(got, w.id)
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
	model := map[ivl]*watcher{}
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
		if w, ok := model[v]; ok && rng.IntN(2) == 0 {
			w.set.remove(w)
			if !tree.delete(v.lo, v.hi, v.inf) {
				t.Fatalf("step %d: delete %v: not found", step, v)
			}
			delete(model, v)
		} else if !ok {
			w := &watcher{id: fmt.Sprint(v)}
			tree.getOrInsert(v.lo, v.hi, v.inf).add(w)
			model[v] = w
		}
		checkTree(t, tree.root)
		if tree.len() != len(model) {
			t.Fatalf("step %d: len %d, want %d", step, tree.len(), len(model))
		}
		k := key()[:1+rng.IntN(2)]
		var want, got []string
		for v, w := range model {
			if v.contains(k) {
				want = append(want, w.id)
			}
		}
		for _, w := range tree.stab(k, nil) {
			got = append(got, w.id)
		}
		slices.Sort(want)
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("step %d: stab(%q) (-want +got):\n%s", step, k, diff)
		}
	}
}

// TestIntervalTreeSharedNode checks that watchers of one interval share
// its node and that the node goes when the last one leaves.
func TestIntervalTreeSharedNode(t *testing.T) {
	var tree intervalTree
	w1, w2 := &watcher{id: "1"}, &watcher{id: "2"}
	tree.getOrInsert("a", "b", false).add(w1)
	tree.getOrInsert("a", "b", false).add(w2)
	if tree.len() != 1 {
		t.Fatalf("len = %d, want 1", tree.len())
	}
	if got := len(tree.stab("a", nil)); got != 2 {
		t.Fatalf("stab found %d watchers, want 2", got)
	}
	w1.set.remove(w1)
	if got := tree.stab("a", nil); len(got) != 1 || got[0] != w2 {
		t.Fatalf("stab after removing one = %v, want [w2]", got)
	}
}
