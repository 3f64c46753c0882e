package kv

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPut measures durable (fsync per group commit) and NoSync Put
// throughput with 1 and 256 concurrent writers, 100-byte values over 10,000
// keys. puts/s is the figure to compare; durable/nosync at 256 writers is
// the cost of durability under load.
func BenchmarkPut(b *testing.B) {
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"durable", false}, {"nosync", true}} {
		for _, clients := range []int{1, 256} {
			b.Run(fmt.Sprintf("%s/clients=%d", mode.name, clients), func(b *testing.B) {
				benchPut(b, mode.noSync, clients)
			})
		}
	}
}

func benchPut(b *testing.B, noSync bool, clients int) {
	s := openStore(b, Options{NoSync: noSync})
	ctx := context.Background()
	value := make([]byte, 100)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := make([]byte, 0, 32)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				key = strconv.AppendInt(append(key[:0], "bench/key/"...), i%10000, 10)
				if _, err := s.Put(ctx, key, value); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cpu := processCPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the CPU time (user and system) the process has used, which
// unlike the elapsed time does not grow when other processes share the
// cores.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fill writes n revisions of batch puts each (NoSync store), keys cycling
// over keys.
func fill(b *testing.B, s *Store, revs, batch, keys int) {
	b.Helper()
	value := make([]byte, 100)
	ops := make([]Op, batch)
	n := 0
	for r := 0; r < revs; r++ {
		for i := range ops {
			ops[i] = Op{Type: OpPut, Key: []byte(fmt.Sprintf("bench/%06d", n%keys)), Value: value}
			n++
		}
		if _, err := s.Txn(context.Background(), TxnRequest{Success: ops}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHistory measures the History scan rate: catching up from the
// first revision to the current one in pages of 1,000 events, as the watch
// hub does, over 100,000 events of 100-byte values (with their PrevKV).
func BenchmarkHistory(b *testing.B) {
	s := openStore(b, Options{NoSync: true})
	const revs, batch = 10000, 10
	fill(b, s, revs, batch, 5000)
	ctx := context.Background()
	for _, page := range []int{1000, 0} {
		b.Run(fmt.Sprintf("page=%d", page), func(b *testing.B) {
			b.ReportAllocs()
			events := 0
			for b.Loop() {
				for from := int64(1); from <= revs+1; {
					bs, next, err := s.History(ctx, from, 0, page)
					if err != nil {
						b.Fatal(err)
					}
					for _, bt := range bs {
						events += len(bt.Events)
					}
					from = next
				}
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkRange measures reads: one key and a 100-key prefix range, at the
// current revision (kv bucket) and at a past revision (index), over 10,000
// keys of 3 versions each.
func BenchmarkRange(b *testing.B) {
	s := openStore(b, Options{NoSync: true})
	const keys = 10000
	fill(b, s, 3*keys/100, 100, keys)
	cur, _ := s.Revisions()
	past := cur - keys/100 - 1 // before the last round of versions
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		req  RangeRequest
		n    int64
	}{
		{"key/current", RangeRequest{Key: []byte("bench/004242")}, 1},
		{"key/past", RangeRequest{Key: []byte("bench/004242"), Rev: past}, 1},
		{"prefix100/current", RangeRequest{Key: []byte("bench/0042"), End: PrefixEnd([]byte("bench/0042"))}, 100},
		{"prefix100/past", RangeRequest{Key: []byte("bench/0042"), End: PrefixEnd([]byte("bench/0042")), Rev: past}, 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := s.Range(ctx, bc.req)
				if err != nil {
					b.Fatal(err)
				}
				if res.Count != bc.n {
					b.Fatalf("count %d, want %d", res.Count, bc.n)
				}
			}
			b.ReportMetric(float64(b.N*int(bc.n))/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
