package sse

import (
	"bytes"
	"testing"

	"github.com/watchgate/watchgate/kv"
)

// benchEvent is a put of a 100-byte value under a typical key.
var benchEvent = kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("config/service/a"), Value: bytes.Repeat([]byte("v"), 100), CreateRevision: 2, ModRevision: 4, Version: 2},
	PrevKV: &kv.KeyValue{Key: []byte("config/service/a"), Value: bytes.Repeat([]byte("w"), 100), CreateRevision: 2, ModRevision: 2, Version: 1}}

func BenchmarkEncoderEvent(b *testing.B) {
	for _, bc := range []struct {
		name string
		enc  Encoder
	}{
		{"sse", Encoder{}},
		{"sse_prev_kv", Encoder{PrevKV: true}},
		{"ndjson", Encoder{Format: FormatNDJSON}},
		{"ndjson_prev_kv", Encoder{Format: FormatNDJSON, PrevKV: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := bc.enc
			p := Position{Rev: 4}
			b.ReportAllocs()
			for b.Loop() {
				e.Reset()
				e.WriteEvent(p, &benchEvent)
			}
			b.SetBytes(int64(e.Len()))
		})
	}
}

// BenchmarkEncoderBatch encodes a drained batch of 64 events, one flush's
// worth.
func BenchmarkEncoderBatch(b *testing.B) {
	evs := make([]kv.Event, 64)
	for i := range evs {
		evs[i] = benchEvent
		evs[i].Sub = int32(i)
	}
	var e Encoder
	b.ReportAllocs()
	for b.Loop() {
		e.Reset()
		e.WriteRevision(evs)
	}
	b.SetBytes(int64(e.Len()))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(evs)), "ns/event")
}

func BenchmarkAppendFrame(b *testing.B) {
	data := bytes.Repeat([]byte(`{"key":"config/service/a","value":"vvvv"}`), 4)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendFrame(buf[:0], "1234.5", "put", data)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkParsePosition(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePosition("123456789.12"); err != nil {
			b.Fatal(err)
		}
	}
}
