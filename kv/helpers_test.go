package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("KV_CHILD") == "1" {
		os.Exit(crashChild())
	}
	goleak.VerifyTestMain(m)
}

// cmpOpts compares results treating nil and empty slices alike (a put of
// an empty value has an empty, not nil, Value).
var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

// openStore opens a store in a fresh temporary directory. Cleanup checks the
// file (bbolt's check and the store's own invariants) and closes it.
func openStore(tb testing.TB, opts Options) *Store {
	tb.Helper()
	s, err := Open(tb.TempDir(), opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { checkAndClose(tb, s) })
	return s
}

// checkAndClose checks a store that is still open and closes it.
func checkAndClose(tb testing.TB, s *Store) {
	tb.Helper()
	if !s.closed.Load() {
		waitCompacted(tb, s)
		if err := s.Check(); err != nil {
			tb.Errorf("Check: %v", err)
		}
		checkInvariants(tb, s)
	}
	if err := s.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}

// waitCompacted waits until the compactor has finished the compaction to the
// current compact revision.
func waitCompacted(tb testing.TB, s *Store) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var done, compact int64
		err := s.view(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			var err error
			if done, err = getUint64(meta.Get(metaCompactDone)); err != nil {
				return err
			}
			compact, err = getUint64(meta.Get(metaCompact))
			return err
		})
		if err != nil {
			tb.Fatalf("reading compaction state: %v", err)
		}
		if done == compact {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("compaction to %d not finished (done %d)", compact, done)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// unescape inverts appendEscaped on an escaped key without terminator.
func unescape(tb testing.TB, p []byte) []byte {
	tb.Helper()
	var k []byte
	for i := 0; i < len(p); i++ {
		if p[i] == 0 {
			if i+1 >= len(p) || p[i+1] != 0xff {
				tb.Fatalf("bad escaped key %x", p)
			}
			i++
			k = append(k, 0)
			continue
		}
		k = append(k, p[i])
	}
	return k
}

// checkInvariants checks the relations between the buckets: every index
// entry has its history record and the reverse (for revisions at or after
// the compact revision), the kv bucket is the latest version of each key,
// the key count is right, and after a finished compaction nothing obsolete
// is left.
func checkInvariants(tb testing.TB, s *Store) {
	tb.Helper()
	err := s.view(func(tx *bolt.Tx) error {
		rev, compact, err := readRevs(tx)
		if err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		keys, _ := getUint64(meta.Get(metaKeys))
		done, _ := getUint64(meta.Get(metaCompactDone))
		hist, idx, kvb := tx.Bucket(bucketHistory), tx.Bucket(bucketIndex), tx.Bucket(bucketKV)

		var rec eventRecord
		// History records: decodable, at or below rev, indexed.
		nHist := 0
		if err := hist.ForEach(func(k, v []byte) error {
			nHist++
			r, sub := parseRevKey(k)
			if r > rev || r < 2 {
				return fmt.Errorf("history at %d.%d outside [2, %d]", r, sub, rev)
			}
			if err := decodeEvent(v, &rec, false); err != nil {
				return err
			}
			ik := append(appendEscaped(nil, rec.key), k...)
			iv := idx.Get(ik)
			if iv == nil || EventType(iv[0]) != rec.typ {
				return fmt.Errorf("history at %d.%d (%q) has index value %v", r, sub, rec.key, iv)
			}
			return nil
		}); err != nil {
			return err
		}
		// Index entries: each has its history record; per key, collect
		// versions.
		type version struct {
			rev int64
			sub int32
			typ EventType
		}
		perKey := map[string][]version{}
		var order []string
		nIdx := 0
		if err := idx.ForEach(func(k, v []byte) error {
			nIdx++
			p, r, sub, err := splitIndexKey(k)
			if err != nil {
				return err
			}
			key := unescape(tb, p[:len(p)-2])
			hv := hist.Get(k[len(p):])
			if hv == nil {
				return fmt.Errorf("index entry %q at %d.%d without history", key, r, sub)
			}
			if err := decodeEvent(hv, &rec, false); err != nil {
				return err
			}
			if !bytes.Equal(rec.key, key) || rec.typ != EventType(v[0]) {
				return fmt.Errorf("index entry %q at %d.%d: history has %q %v", key, r, sub, rec.key, rec.typ)
			}
			if _, ok := perKey[string(key)]; !ok {
				order = append(order, string(key))
			}
			perKey[string(key)] = append(perKey[string(key)], version{r, sub, rec.typ})
			return nil
		}); err != nil {
			return err
		}
		if nIdx != nHist {
			return fmt.Errorf("%d index entries, %d history records", nIdx, nHist)
		}
		for i := 1; i < len(order); i++ {
			if order[i-1] >= order[i] {
				return fmt.Errorf("index keys out of order: %q, %q", order[i-1], order[i])
			}
		}
		// kv bucket: the latest version of each live key.
		live := int64(0)
		for key, vs := range perKey {
			last := vs[len(vs)-1]
			raw := kvb.Get([]byte(key))
			if last.typ == EventDelete {
				if raw != nil {
					return fmt.Errorf("key %q deleted at %d but live", key, last.rev)
				}
			} else {
				if raw == nil {
					return fmt.Errorf("key %q put at %d but not live", key, last.rev)
				}
				_, mod, _, _, err := decodeCurrent(raw)
				if err != nil {
					return err
				}
				if mod != last.rev {
					return fmt.Errorf("key %q: kv mod %d, index %d", key, mod, last.rev)
				}
				live++
			}
			if done == compact {
				below := 0
				for _, v := range vs {
					if v.rev < compact {
						below++
						if v.typ == EventDelete {
							return fmt.Errorf("key %q: tombstone at %d below compact %d", key, v.rev, compact)
						}
					}
				}
				if below > 1 {
					return fmt.Errorf("key %q: %d versions below compact %d", key, below, compact)
				}
			}
		}
		if n := int64(kvb.Stats().KeyN); n != live || n != keys {
			return fmt.Errorf("kv bucket has %d keys, index says %d live, meta %d", n, live, keys)
		}
		return nil
	})
	if err != nil {
		tb.Errorf("invariants: %v", err)
	}
}

// mustPut puts and fails the test on error.
func mustPut(tb testing.TB, s *Store, key, value string) TxnResponse {
	tb.Helper()
	resp, err := s.Put(context.Background(), []byte(key), []byte(value))
	if err != nil {
		tb.Fatalf("Put(%q): %v", key, err)
	}
	return resp
}

// mustRange reads and fails the test on error.
func mustRange(tb testing.TB, s *Store, r RangeRequest) RangeResult {
	tb.Helper()
	res, err := s.Range(context.Background(), r)
	if err != nil {
		tb.Fatalf("Range(%+v): %v", r, err)
	}
	return res
}

func kv(key, value string, create, mod, version int64) KeyValue {
	return KeyValue{Key: []byte(key), Value: []byte(value), CreateRevision: create, ModRevision: mod, Version: version}
}

func kvp(key, value string, create, mod, version int64) *KeyValue {
	k := kv(key, value, create, mod, version)
	return &k
}

// errIs reports whether err matches want (nil matches only nil).
func errIs(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}
