package reliability

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/watchgate/watchgate/kv"
)

// The keyspace is small, so that requests collide, conditions fail and
// succeed, and watches of every shape see traffic. The x/ keys are not
// valid UTF-8 or not ASCII, to exercise key_b64 and percent-encoding.
var (
	groupA = []string{"a/0", "a/1", "a/2", "a/3", "a/4", "a/5", "a/6", "a/7"}
	groupB = []string{"b/0", "b/1", "b/2", "b/3", "b/4", "b/5"}
	groupC = []string{"c/x", "c/y", "c/z"}
	groupX = []string{"x/\xff\x01", "x/\u00fcn\u00ef", "x/sp ace%"}
	allKey = concat(groupA, groupB, groupC, groupX)
	// deletePrefixes are the prefixes of range deletes.
	deletePrefixes = []string{"b/", "c/", "a/1", "x/"}
	// readPrefixes are the prefixes of range reads.
	readPrefixes = []string{"a/", "b/", "c/", "x/"}
)

// The static keys are written once at the start and never again: enough
// of them (with large enough values) that a snapshot of every key takes
// several chunks and a client that stops reading in the middle of one
// holds it up, so that compaction can strike during a snapshot. They stay
// out of the linearizability model, which they would only slow down.
const (
	staticPrefix = "s/"
	staticKeys   = 600
	staticValue  = 1000
)

// staticOps are the transactions that write the static keys.
func staticOps() []opInput {
	var out []opInput
	for i := 0; i < staticKeys; i += 100 {
		in := opInput{Kind: opTxn}
		for j := i; j < min(i+100, staticKeys); j++ {
			v := fmt.Sprintf("static-%d|%s", j, strings.Repeat("s", staticValue))
			in.Success = append(in.Success, txnOp{Type: kv.OpPut, Key: fmt.Sprintf("%s%03d", staticPrefix, j), Value: v})
		}
		out = append(out, in)
	}
	return out
}

// withoutStatic drops the static keys from a read of every key.
func withoutStatic(kvs []kvRec) []kvRec {
	out := kvs[:0:0]
	for _, k := range kvs {
		if !strings.HasPrefix(k.Key, staticPrefix) {
			out = append(out, k)
		}
	}
	return out
}

func concat(groups ...[]string) []string {
	var out []string
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// opGen generates one client's requests from its seeded generator and
// what the client learnt of the keys' mod revisions (for If-Match and
// transactions).
type opGen struct {
	client   int
	rnd      *rand.Rand
	seq      int
	readOnly bool
	mods     map[string]int64 // last mod revision seen, 0: missing
	lastRev  int64            // highest revision seen
}

func newOpGen(client int, seed uint64, readOnly bool) *opGen {
	return &opGen{client: client, rnd: rand.New(rand.NewPCG(seed, uint64(client)+100)), readOnly: readOnly,
		mods: map[string]int64{}}
}

func (g *opGen) pick(keys []string) string { return keys[g.rnd.IntN(len(keys))] }

// value makes a value no other request writes: the client, a sequence
// number, and sometimes padding, now and then large enough to fill the
// connections' buffers.
func (g *opGen) value() string {
	g.seq++
	v := fmt.Sprintf("c%d-%d", g.client, g.seq)
	var n int
	switch r := g.rnd.IntN(100); {
	case r < 75:
		n = g.rnd.IntN(48)
	case r < 97:
		n = 200 + g.rnd.IntN(1800)
	default:
		n = 16<<10 + g.rnd.IntN(48<<10)
	}
	if n > 0 {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
		var b strings.Builder
		b.Grow(n + len(v) + 1)
		b.WriteString(v)
		b.WriteByte('|')
		for range n {
			b.WriteByte(letters[g.rnd.IntN(len(letters))])
		}
		v = b.String()
	}
	return v
}

// next returns the next request.
func (g *opGen) next() opInput {
	r := g.rnd.IntN(100)
	if g.readOnly {
		r = 75 + g.rnd.IntN(25)
	}
	switch {
	case r < 33:
		return opInput{Kind: opPut, Key: g.pick(allKey), Value: g.value()}
	case r < 43:
		k := g.pick(allKey)
		return opInput{Kind: opPut, Key: k, Value: g.value(), Cond: condIfMatch, Match: g.mods[k]}
	case r < 46:
		return opInput{Kind: opPut, Key: g.pick(allKey), Value: g.value(), Cond: condIfAbsent}
	case r < 48:
		return opInput{Kind: opPut, Key: g.pick(allKey), Value: g.value(), Cond: condIfExists}
	case r < 55:
		return opInput{Kind: opDelete, Key: g.pick(allKey)}
	case r < 57:
		k := g.pick(allKey)
		return opInput{Kind: opDelete, Key: k, Cond: condIfMatch, Match: g.mods[k]}
	case r < 59:
		return opInput{Kind: opDeleteRange, Key: g.pick(deletePrefixes)}
	case r < 75:
		return g.txn()
	case r < 84:
		return opInput{Kind: opGet, Key: g.pick(allKey)}
	case r < 91:
		return opInput{Kind: opRange, Key: g.pick(readPrefixes)}
	default:
		back := g.rnd.Int64N(20)
		if g.rnd.IntN(3) == 0 {
			back = g.rnd.Int64N(300)
		}
		rev := max(1, g.lastRev-back)
		return opInput{Kind: opRangeAt, Key: g.pick(readPrefixes), Rev: rev}
	}
}

// txn is a compare-and-swap over two keys of one group, sometimes with the
// delete of a key (or prefix) of another group; its failure branch reads
// both keys.
func (g *opGen) txn() opInput {
	groups := [][]string{groupA, groupB}
	grp := groups[g.rnd.IntN(2)]
	i := g.rnd.IntN(len(grp))
	j := (i + 1 + g.rnd.IntN(len(grp)-1)) % len(grp)
	k1, k2 := grp[i], grp[j]
	in := opInput{Kind: opTxn}
	for _, k := range []string{k1, k2} {
		target := "mod"
		if g.rnd.IntN(4) == 0 {
			target = "version"
		}
		n := g.mods[k]
		if target == "version" {
			n = 0 // "does not exist"
			if g.rnd.IntN(2) == 0 && g.mods[k] > 0 {
				continue // no compare on this key
			}
		}
		in.Cmps = append(in.Cmps, txnCmp{Key: k, Target: target, Num: n})
	}
	in.Success = []txnOp{{Type: kv.OpPut, Key: k1, Value: g.value()}, {Type: kv.OpPut, Key: k2, Value: g.value()}}
	switch g.rnd.IntN(4) {
	case 0:
		in.Success = append(in.Success, txnOp{Type: kv.OpDelete, Key: g.pick(groupC)})
	case 1:
		in.Success = append(in.Success, txnOp{Type: kv.OpDelete, Key: "x/", Prefix: true})
	}
	in.Failure = []txnOp{{Type: kv.OpGet, Key: k1}, {Type: kv.OpGet, Key: k2}}
	return in
}

// observe learns mod revisions from an answer.
func (g *opGen) observe(o *op) {
	if o.Out.Unknown {
		return
	}
	g.lastRev = max(g.lastRev, o.Out.Rev)
	switch o.In.Kind {
	case opPut:
		if o.Out.KV != nil {
			g.mods[o.In.Key] = o.Out.KV.ModRevision
		} else if o.Out.Status == 412 {
			g.mods[o.In.Key] = 0
		}
	case opDelete:
		if o.Out.Status == 412 && o.Out.KV != nil {
			g.mods[o.In.Key] = o.Out.KV.ModRevision
		} else {
			g.mods[o.In.Key] = 0
		}
	case opGet:
		g.mods[o.In.Key] = 0
		if o.Out.KV != nil {
			g.mods[o.In.Key] = o.Out.KV.ModRevision
		}
	case opRange:
		for _, k := range o.Out.KVs {
			g.mods[k.Key] = k.ModRevision
		}
	case opTxn:
		if o.Out.Succeeded {
			for _, s := range o.In.Success {
				if s.Type == kv.OpPut {
					g.mods[s.Key] = o.Out.Rev
				}
			}
			return
		}
		for i, f := range o.In.Failure {
			g.mods[f.Key] = 0
			if i < len(o.Out.Gets) && len(o.Out.Gets[i]) == 1 {
				g.mods[f.Key] = o.Out.Gets[i][0].ModRevision
			}
		}
	}
}
