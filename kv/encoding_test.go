package kv

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEscapeOrder(t *testing.T) {
	keys := [][]byte{{0}, {0, 0}, {0, 1}, {0, 0xff}, {1}, {'a'}, {'a', 0}, {'a', 0, 0}, {'a', 0, 1}, {'a', 1}, {'a', 0xff}, {0xff}, {0xff, 0}, {0xff, 0xff}}
	for i := range keys {
		for j := range keys {
			ei, ej := appendEscaped(nil, keys[i]), appendEscaped(nil, keys[j])
			if got, want := bytes.Compare(ei, ej), bytes.Compare(keys[i], keys[j]); got != want {
				t.Errorf("escaped %x vs %x compares %d, keys %d", keys[i], keys[j], got, want)
			}
			// No key's entries fall inside another key's run.
			if i != j && bytes.HasPrefix(ej, ei) {
				t.Errorf("escaped %x is a prefix of escaped %x", keys[i], keys[j])
			}
		}
		if n := escapedLen(keys[i]); n != len(appendEscaped(nil, keys[i])) {
			t.Errorf("escapedLen(%x) = %d", keys[i], n)
		}
		if got := unescape(t, appendEscaped(nil, keys[i])[:escapedLen(keys[i])-2]); !bytes.Equal(got, keys[i]) {
			t.Errorf("unescape(escape(%x)) = %x", keys[i], got)
		}
	}
}

// FuzzDecodeEvent checks that decoding any bytes returns an error or a
// record, never panics, and that encoded records decode to what was
// encoded.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(appendEvent(nil, EventPut, []byte("k"), 2, 1, []byte("v"), nil))
	f.Add(appendEvent(nil, EventDelete, []byte("k\x00"), 0, 0, nil, &KeyValue{CreateRevision: 2, ModRevision: 3, Version: 2, Value: []byte("old")}))
	f.Add([]byte{0, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rec eventRecord
		if err := decodeEvent(b, &rec, false); err != nil {
			return
		}
		var prev *KeyValue
		if rec.hasPrev {
			p := rec.prev
			prev = &p
		}
		again := appendEvent(nil, rec.typ, rec.key, rec.create, rec.version, rec.value, prev)
		var rec2 eventRecord
		if err := decodeEvent(again, &rec2, false); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if diff := cmp.Diff(rec, rec2, cmp.AllowUnexported(eventRecord{}), cmpOpts[0]); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// FuzzDecodeCurrent checks the kv bucket record decoder the same way.
func FuzzDecodeCurrent(f *testing.F) {
	f.Add(appendCurrent(nil, 2, 5, 3, []byte("value")))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, m, v, val, err := decodeCurrent(b)
		if err != nil {
			return
		}
		c2, m2, v2, val2, err := decodeCurrent(appendCurrent(nil, c, m, v, val))
		if err != nil || c2 != c || m2 != m || v2 != v || !bytes.Equal(val2, val) {
			t.Fatalf("round trip: %d %d %d %q, %v", c2, m2, v2, val2, err)
		}
	})
}
