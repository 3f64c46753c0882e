package access

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestRangesCovers(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	inf := []byte{0}
	for _, tc := range []struct {
		name     string
		prefixes []string
		key, end []byte
		want     bool
	}{
		{"single key under prefix", []string{"ns1/"}, b("ns1/a"), nil, true},
		{"empty range end is a single key", []string{"ns1/"}, b("ns1/a"), []byte{}, true},
		{"the prefix itself", []string{"ns1/"}, b("ns1/"), nil, true},
		{"near prefix ns1 vs ns10", []string{"ns1"}, b("ns10"), nil, true},
		{"near prefix ns1/ vs ns10", []string{"ns1/"}, b("ns10"), nil, false},
		{"near prefix range", []string{"ns1/"}, b("ns1"), kvPrefixEnd("ns1"), false},
		{"prefix watch of the prefix", []string{"ns1/"}, b("ns1/"), kvPrefixEnd("ns1/"), true},
		{"narrower prefix watch", []string{"ns1/"}, b("ns1/x"), kvPrefixEnd("ns1/x"), true},
		{"wider prefix watch", []string{"ns1/x"}, b("ns1/"), kvPrefixEnd("ns1/"), false},
		{"range up to the prefix end", []string{"a"}, b("a"), b("b"), true},
		{"range one past the prefix end", []string{"a"}, b("a"), b("b\x00"), false},
		{"adjacent prefixes join", []string{"a", "b"}, b("a"), b("c"), true},
		{"adjacent prefixes, gap after", []string{"a", "b"}, b("a"), b("c\x00"), false},
		{"gap between prefixes", []string{"a", "c"}, b("a"), b("d"), false},
		{"nested prefixes", []string{"a", "ab"}, b("a"), b("b"), true},
		{"to the end needs the end", []string{"a"}, b("a"), inf, false},
		{"to the end with 0xff prefix", []string{"a", "b", "\xff"}, b("\xff"), inf, true},
		{"prefix 0xff covers to the end", []string{"\xff"}, b("\xff\x00"), inf, true},
		{"prefix a\\xff", []string{"a\xff"}, b("a\xff"), kvPrefixEnd("a\xff"), true},
		{"prefix a\\xff ends at b", []string{"a\xff"}, b("a\xff"), b("b"), true},
		{"prefix a\\xff does not hold b", []string{"a\xff"}, b("b"), nil, false},
		{"range crossing 0xff", []string{"a\xfe", "a\xff"}, b("a\xfe"), b("b"), true},
		{"range crossing 0xff, missing half", []string{"a\xfe"}, b("a\xfe"), b("b"), false},
		{"all keys", []string{""}, b(""), inf, true},
		{"all keys single", []string{""}, b("anything"), nil, true},
		{"everything but the empty prefix", []string{"a"}, b(""), inf, false},
		{"empty range is vacuous", []string{"x"}, b("b"), b("a"), true},
		{"no prefixes", nil, b("a"), nil, false},
		{"no prefixes, empty range", nil, b("b"), b("b"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ps [][]byte
			for _, p := range tc.prefixes {
				ps = append(ps, []byte(p))
			}
			r := NewRanges(ps)
			if got := r.Covers(tc.key, tc.end); got != tc.want {
				t.Errorf("Covers(%q, %q) with prefixes %q = %v, want %v", tc.key, tc.end, tc.prefixes, got, tc.want)
			}
			if got := modelCovers(ps, tc.key, tc.end); got != tc.want {
				t.Errorf("the model says %v for Covers(%q, %q) with prefixes %q: the table is wrong", got, tc.key, tc.end, tc.prefixes)
			}
		})
	}
}

func kvPrefixEnd(s string) []byte {
	// kv.PrefixEnd, restated so the table does not lean on the code under
	// test's helper.
	b := []byte(s)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return b[:i+1]
		}
	}
	return []byte{0}
}

// modelKeys is the brute-force model's key space for a question about
// prefixes and a range: every string, up to the longest input, over the
// bytes of the inputs, each of those bytes plus one, 0x00 and 0xff. The
// model's answer can only change at a key, a prefix or a prefix end
// (kv.PrefixEnd adds one to a byte and cuts the rest), all of which are in
// it, and the leftmost key of any part of a range that no prefix holds is
// the range's key or a prefix end: so the model is exact, not a sample.
func modelKeys(inputs ...[]byte) [][]byte {
	seen := map[byte]bool{0x00: true, 0xff: true}
	maxLen := 0
	for _, in := range inputs {
		maxLen = max(maxLen, len(in))
		for _, c := range in {
			seen[c] = true
			if c < 0xff {
				seen[c+1] = true
			}
		}
	}
	var alphabet []byte
	for c := range seen {
		alphabet = append(alphabet, c)
	}
	keys := [][]byte{{}}
	last := [][]byte{{}}
	for n := 1; n <= maxLen; n++ {
		var next [][]byte
		for _, k := range last {
			for _, c := range alphabet {
				next = append(next, append(bytes.Clone(k), c))
			}
		}
		keys = append(keys, next...)
		last = next
	}
	return keys
}

// modelCovers is the brute-force answer: every key of the model's key
// space in the range has one of the prefixes.
func modelCovers(prefixes [][]byte, key, end []byte) bool {
	held := func(k []byte) bool {
		for _, p := range prefixes {
			if bytes.HasPrefix(k, p) {
				return true
			}
		}
		return false
	}
	if len(end) == 0 {
		return held(key)
	}
	inf := len(end) == 1 && end[0] == 0
	for _, k := range modelKeys(append([][]byte{key, end}, prefixes...)...) {
		if bytes.Compare(k, key) >= 0 && (inf || bytes.Compare(k, end) < 0) && !held(k) {
			return false
		}
	}
	return true
}

// randString is a string of up to 3 bytes over {0, 1, 0xfe, 0xff}.
func randString(r *rand.Rand) []byte {
	alpha := []byte{0x00, 0x01, 0xfe, 0xff}
	b := make([]byte, r.IntN(4))
	for i := range b {
		b[i] = alpha[r.IntN(len(alpha))]
	}
	return b
}

// TestRangesCoversModel checks Covers against the brute-force model on
// random prefix sets and ranges: single keys, prefixes (through
// kv.PrefixEnd, as the hub normalises them), ranges, ranges to the end,
// and empty ranges.
func TestRangesCoversModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := 0; i < n; i++ {
		var ps [][]byte
		for j := r.IntN(4); j > 0; j-- {
			ps = append(ps, randString(r))
		}
		key := randString(r)
		var end []byte
		switch r.IntN(5) {
		case 0: // single key
		case 1:
			end = kvPrefixEnd(string(key))
		case 2:
			end = []byte{0}
		default:
			end = randString(r)
		}
		got, want := NewRanges(ps).Covers(key, end), modelCovers(ps, key, end)
		if got != want {
			t.Fatalf("prefixes %q: Covers(%q, %q) = %v, the model says %v", ps, key, end, got, want)
		}
	}
}

// FuzzRangesCovers checks Covers against the model on fuzzed inputs, each
// byte mapped into the model's alphabet.
func FuzzRangesCovers(f *testing.F) {
	f.Add([]byte("a"), []byte("b"), []byte("a"), []byte("c"), uint8(3))
	f.Add([]byte{0xff}, []byte{}, []byte{0xff, 0}, []byte{0}, uint8(2))
	f.Add([]byte{1, 0xff}, []byte{1, 0xfe}, []byte{1, 0xfe}, []byte{2}, uint8(3))
	f.Fuzz(func(t *testing.T, p1, p2, key, end []byte, mode uint8) {
		norm := func(b []byte) []byte {
			alpha := []byte{0x00, 0x01, 0xfe, 0xff}
			if len(b) > 3 {
				b = b[:3]
			}
			out := make([]byte, len(b))
			for i, c := range b {
				out[i] = alpha[c%4]
			}
			return out
		}
		ps := [][]byte{norm(p1)}
		if mode&4 != 0 {
			ps = append(ps, norm(p2))
		}
		key = norm(key)
		switch mode % 4 {
		case 0:
			end = nil
		case 1:
			end = kvPrefixEnd(string(key))
		case 2:
			end = []byte{0}
		default:
			end = norm(end)
		}
		if got, want := NewRanges(ps).Covers(key, end), modelCovers(ps, key, end); got != want {
			t.Fatalf("prefixes %q: Covers(%q, %q) = %v, the model says %v", ps, key, end, got, want)
		}
	})
}

func BenchmarkRangesCovers(b *testing.B) {
	var ps [][]byte
	for i := 0; i < 100; i++ {
		ps = append(ps, []byte(fmt.Sprintf("tenant%03d/", i)))
	}
	r := NewRanges(ps)
	key, end := []byte("tenant042/config/"), kvPrefixEnd("tenant042/config/")
	b.ReportAllocs()
	for b.Loop() {
		if !r.Covers(key, end) {
			b.Fatal("not covered")
		}
	}
}
