package watchhub

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"go.etcd.io/etcd/pkg/v3/adt"

	"github.com/watchgate/watchgate/kv"
)

// benchIntervals makes n mixed intervals as watchers use them: prefixes
// (most), short ranges, and a few open-ended ranges (beyond the keys of
// benchKeys, so that a stab matches a prefix or a range at most).
func benchIntervals(n int) []ivl {
	rng := rand.New(rand.NewPCG(7, 8))
	out := make([]ivl, n)
	for i := range out {
		base := fmt.Sprintf("app/%08d/", rng.IntN(n*4))
		switch r := rng.IntN(100); {
		case r < 70:
			out[i] = ivl{lo: base, hi: string(kv.PrefixEnd([]byte(base)))}
		case r < 99:
			out[i] = ivl{lo: base + "a", hi: base + "m"}
		default:
			out[i] = ivl{lo: "zz/" + base, inf: true}
		}
	}
	return out
}

// benchKeys makes keys to stab with, mostly matching nothing.
func benchKeys(n int) []string {
	rng := rand.New(rand.NewPCG(9, 10))
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = fmt.Sprintf("app/%08d/k", rng.IntN(n*4))
	}
	return keys
}

// BenchmarkIntervalTreeStab compares this package's interval tree with
// etcd's adt.IntervalTree (string-affine intervals, as etcd's watcher group
// uses them) on the same intervals and keys.
func BenchmarkIntervalTreeStab(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		ivls := benchIntervals(n)
		keys := benchKeys(n)
		b.Run(fmt.Sprintf("n=%d/impl=watchhub", n), func(b *testing.B) {
			var tree intervalTree
			for i, v := range ivls {
				addIvl(&tree, v, int32(i))
			}
			var buf []int32
			matches := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				buf = tree.stab(keys[i%len(keys)], buf[:0])
				matches += len(buf)
			}
			b.ReportMetric(float64(matches)/float64(b.N), "matches/op")
		})
		b.Run(fmt.Sprintf("n=%d/impl=adt", n), func(b *testing.B) {
			tree := adt.NewIntervalTree()
			for i, v := range ivls {
				hi := v.hi
				if v.inf {
					hi = ""
				}
				iv := adt.NewStringAffineInterval(v.lo, hi)
				if found := tree.Find(iv); found != nil {
					found.Val = append(found.Val.([]*watcher), &watcher{pos: int32(i)})
					continue
				}
				tree.Insert(iv, []*watcher{{pos: int32(i)}})
			}
			matches := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				for _, v := range tree.Stab(adt.NewStringAffinePoint(keys[i%len(keys)])) {
					matches += len(v.Val.([]*watcher))
				}
			}
			b.ReportMetric(float64(matches)/float64(b.N), "matches/op")
		})
	}
}

// BenchmarkIntervalTreeChurn measures adding and removing one interval in a
// tree of 100k, as a watch and its cancel do.
func BenchmarkIntervalTreeChurn(b *testing.B) {
	const n = 100_000
	ivls := benchIntervals(n)
	extra := benchIntervals(n + 1)
	b.Run("impl=watchhub", func(b *testing.B) {
		var tree intervalTree
		for i, v := range ivls {
			addIvl(&tree, v, int32(i))
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			v := extra[i%len(extra)]
			v.lo += "~"
			addIvl(&tree, v, 0)
			tree.delete(v.lo, v.hi, v.inf)
		}
	})
	b.Run("impl=adt", func(b *testing.B) {
		tree := adt.NewIntervalTree()
		for _, v := range ivls {
			hi := v.hi
			if v.inf {
				hi = ""
			}
			tree.Insert(adt.NewStringAffineInterval(v.lo, hi), nil)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			v := extra[i%len(extra)]
			hi := v.hi
			if v.inf {
				hi = ""
			}
			iv := adt.NewStringAffineInterval(v.lo+"~", hi)
			tree.Insert(iv, nil)
			tree.Delete(iv)
		}
	})
}
