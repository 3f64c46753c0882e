package sse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden with the current output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(tb testing.TB, name string, got []byte) {
	tb.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		tb.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

var (
	prevA = &kv.KeyValue{Key: []byte("config/a"), Value: []byte("off"), CreateRevision: 5, ModRevision: 9, Version: 2}
	putA  = kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("config/a"), Value: []byte("on"), CreateRevision: 5, ModRevision: 42, Version: 3}, PrevKV: prevA}
	delB  = kv.Event{Type: kv.EventDelete, KV: kv.KeyValue{Key: []byte("config/b"), ModRevision: 43}, PrevKV: &kv.KeyValue{Key: []byte("config/b"), Value: []byte{0xff, 0x00}, CreateRevision: 7, ModRevision: 7, Version: 1}}
	// txn44 is a transaction of three operations whose subs 0 and 2
	// match the stream.
	txn44 = []kv.Event{
		{Type: kv.EventPut, Sub: 0, KV: kv.KeyValue{Key: []byte("config/c"), Value: []byte("line1\nline2"), CreateRevision: 44, ModRevision: 44, Version: 1}},
		{Type: kv.EventDelete, Sub: 2, KV: kv.KeyValue{Key: []byte("config/a"), ModRevision: 44}, PrevKV: &putA.KV},
	}
)

// writeSample writes one message of every kind.
func writeSample(tb testing.TB, e *Encoder) {
	tb.Helper()
	e.WriteRetry(1834 * time.Millisecond)
	e.WriteReset(41)
	e.WriteSnapshotKV(41, prevA)
	e.WriteSynced(41)
	e.WriteRevision([]kv.Event{putA})
	e.WriteRevision([]kv.Event{delB})
	e.WriteRevision(txn44)
	e.WriteComment("keep-alive")
	e.WriteProgress(50)
	e.WriteCompacted(60, 75)
	if err := e.WriteError([]byte("{\n  \"type\": \"about:blank\",\n  \"title\": \"Internal Server Error\",\n  \"status\": 500\n}")); err != nil {
		tb.Fatal(err)
	}
}

func TestEncoderGolden(t *testing.T) {
	tests := []struct {
		name string
		enc  Encoder
	}{
		{"stream.sse.golden", Encoder{}},
		{"stream_prev_kv.sse.golden", Encoder{PrevKV: true}},
		{"stream.ndjson.golden", Encoder{Format: FormatNDJSON}},
		{"stream_prev_kv.ndjson.golden", Encoder{Format: FormatNDJSON, PrevKV: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeSample(t, &tt.enc)
			golden(t, tt.name, tt.enc.Bytes())
		})
	}
}

func str(s string) *string { return &s }

// TestEncoderSSE parses the SSE form with sseclient's parser and checks
// every event's id, type and data (decoded as JSON).
func TestEncoderSSE(t *testing.T) {
	var e Encoder
	e.PrevKV = true
	writeSample(t, &e)
	got := parseAll(t, e.Bytes())

	type msg struct {
		ID, Type string
		Data     map[string]any
	}
	kvMap := func(ev *kv.Event, prev bool) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(kvjson.AppendEventKV(nil, ev, prev), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	snap := kv.Event{Type: kv.EventPut, KV: *prevA}
	want := []msg{
		{"", "reset", map[string]any{"revision": 41.0}},
		{"", "put", kvMap(&snap, false)},
		{"41", "synced", map[string]any{"revision": 41.0}},
		{"42", "put", kvMap(&putA, true)},
		{"43", "delete", kvMap(&delB, true)},
		{"44.0", "put", kvMap(&txn44[0], true)},
		{"44", "delete", kvMap(&txn44[1], true)},
		{"50", "progress", map[string]any{"revision": 50.0}},
		{"compacted", "compacted", map[string]any{"compact_revision": 60.0, "revision": 75.0}},
		{"compacted", "error", map[string]any{"type": "about:blank", "title": "Internal Server Error", "status": 500.0}},
	}
	var msgs []msg
	for _, ev := range got {
		var m map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
			t.Fatalf("event %+v: data is not JSON: %v", ev, err)
		}
		if ev.Retry != 1834*time.Millisecond {
			t.Errorf("event %+v: retry %v, want 1.834s", ev, ev.Retry)
		}
		msgs = append(msgs, msg{ev.ID, ev.Type, m})
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// The kv of a put decodes to the store's kv, prev_kv inside it.
	var put kvjson.KeyValue
	if err := json.Unmarshal([]byte(got[3].Data), &put); err != nil {
		t.Fatal(err)
	}
	wantPut := kvjson.KeyValue{Key: str("config/a"), Value: str("on"), CreateRevision: 5, ModRevision: 42, Version: 3,
		PrevKV: &kvjson.KeyValue{Key: str("config/a"), Value: str("off"), CreateRevision: 5, ModRevision: 9, Version: 2}}
	if diff := cmp.Diff(wantPut, put); diff != "" {
		t.Errorf("put data (-want +got):\n%s", diff)
	}
}

// ndjsonLine is the NDJSON form of every message.
type ndjsonLine struct {
	ID              *string          `json:"id"`
	Type            string           `json:"type"`
	Revision        int64            `json:"revision"`
	CompactRevision int64            `json:"compact_revision"`
	KV              *kvjson.KeyValue `json:"kv"`
	Error           map[string]any   `json:"error"`
}

func TestEncoderNDJSON(t *testing.T) {
	e := Encoder{Format: FormatNDJSON, PrevKV: true}
	writeSample(t, &e)
	var got []ndjsonLine
	sc := bufio.NewScanner(bytes.NewReader(e.Bytes()))
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var l ndjsonLine
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		got = append(got, l)
	}
	deleted := func(key string, rev int64, prev *kvjson.KeyValue) *kvjson.KeyValue {
		return &kvjson.KeyValue{Key: str(key), ModRevision: rev, PrevKV: prev}
	}
	want := []ndjsonLine{
		{Type: "reset", Revision: 41},
		{Type: "put", Revision: 41, KV: &kvjson.KeyValue{Key: str("config/a"), Value: str("off"), CreateRevision: 5, ModRevision: 9, Version: 2}},
		{ID: str("41"), Type: "synced", Revision: 41},
		{ID: str("42"), Type: "put", Revision: 42, KV: &kvjson.KeyValue{Key: str("config/a"), Value: str("on"), CreateRevision: 5, ModRevision: 42, Version: 3,
			PrevKV: &kvjson.KeyValue{Key: str("config/a"), Value: str("off"), CreateRevision: 5, ModRevision: 9, Version: 2}}},
		{ID: str("43"), Type: "delete", Revision: 43, KV: deleted("config/b", 43, &kvjson.KeyValue{Key: str("config/b"), ValueB64: str("/wA="), CreateRevision: 7, ModRevision: 7, Version: 1})},
		{ID: str("44.0"), Type: "put", Revision: 44, KV: &kvjson.KeyValue{Key: str("config/c"), Value: str("line1\nline2"), CreateRevision: 44, ModRevision: 44, Version: 1}},
		{ID: str("44"), Type: "delete", Revision: 44, KV: deleted("config/a", 44, &kvjson.KeyValue{Key: str("config/a"), Value: str("on"), CreateRevision: 5, ModRevision: 42, Version: 3})},
		{ID: str("50"), Type: "progress", Revision: 50},
		{ID: str("compacted"), Type: "compacted", Revision: 75, CompactRevision: 60},
		{Type: "error", Error: map[string]any{"type": "about:blank", "title": "Internal Server Error", "status": 500.0}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestEncoderWriteErrorInvalid(t *testing.T) {
	for _, f := range []Format{FormatSSE, FormatNDJSON} {
		for _, p := range []string{"", "{", `{"a":1} {"b":2}`, "{\"a\":\"x\ny\"}", "{\"a\":\"\xff\"}"} {
			e := Encoder{Format: f}
			e.WriteProgress(3)
			before := string(e.Bytes())
			if err := e.WriteError([]byte(p)); !errors.Is(err, ErrInvalidProblem) {
				t.Errorf("%v WriteError(%q) = %v, want ErrInvalidProblem", f, p, err)
			}
			if got := string(e.Bytes()); got != before {
				t.Errorf("%v WriteError(%q) wrote %q", f, p, got[len(before):])
			}
		}
	}
}

// TestEncoderDataLineBreak checks the guard for JSON holding a line break,
// which kvjson never produces: it is split into data lines all the same.
func TestEncoderDataLineBreak(t *testing.T) {
	var e Encoder
	e.buf = append(e.buf, "event: put\n"...)
	start := e.beginData()
	e.buf = append(e.buf, "{\"a\":\n1}\r\nid: 9"...)
	e.endData(start)
	want := "event: put\ndata: {\"a\":\ndata: 1}\ndata: id: 9\n\n"
	if diff := cmp.Diff(want, string(e.Bytes())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEncoderResetReusesBuffer(t *testing.T) {
	var e Encoder
	e.WriteRevision([]kv.Event{putA})
	first := &e.Bytes()[0]
	e.Reset()
	if e.Len() != 0 {
		t.Fatalf("Len after Reset = %d", e.Len())
	}
	e.WriteRevision([]kv.Event{putA})
	if &e.Bytes()[0] != first {
		t.Error("Reset did not keep the buffer")
	}
}

func TestEncoderNoRetryOrCommentInNDJSON(t *testing.T) {
	e := Encoder{Format: FormatNDJSON}
	e.WriteRetry(time.Second)
	e.WriteComment("hb")
	if e.Len() != 0 {
		t.Errorf("NDJSON got %q", e.Bytes())
	}
}

func TestFormat(t *testing.T) {
	if got := FormatSSE.ContentType(); got != "text/event-stream" {
		t.Errorf("SSE content type %q", got)
	}
	if got := FormatNDJSON.ContentType(); got != "application/x-ndjson" {
		t.Errorf("NDJSON content type %q", got)
	}
}

// TestEncoderAllocs checks that encoding an event into a grown buffer
// allocates nothing, in both formats and with prev_kv.
func TestEncoderAllocs(t *testing.T) {
	for _, e := range []*Encoder{{}, {PrevKV: true}, {Format: FormatNDJSON, PrevKV: true}} {
		writeSample(t, e)
		allocs := testing.AllocsPerRun(100, func() {
			e.Reset()
			e.WriteRevision(txn44)
			e.WriteRevision([]kv.Event{putA})
			e.WriteProgress(50)
			e.WriteSynced(51)
			e.WriteSnapshotKV(51, prevA)
			e.WriteComment("keep-alive")
		})
		if allocs != 0 {
			t.Errorf("%v prev_kv=%v: %v allocs per batch, want 0", e.Format, e.PrevKV, allocs)
		}
	}
}

// FuzzEncoderEvent encodes an event with any key and value in both forms
// and checks that a client gets it back: through the SSE parser and
// encoding/json for SSE, and encoding/json line by line for NDJSON.
func FuzzEncoderEvent(f *testing.F) {
	f.Add([]byte("config/a"), []byte("on"), int64(42), int32(0), true, false)
	f.Add([]byte("k\r\nid: 1"), []byte("\n\ndata: x\r"), int64(7), int32(3), false, true)
	f.Add([]byte{0xff, 0x00}, []byte("\u2028\x00"), int64(1), int32(1), true, true)
	f.Fuzz(func(t *testing.T, key, value []byte, rev int64, sub int32, del, partial bool) {
		rev = 1 + int64(uint64(rev)%(1<<63-2))
		sub &= 1<<31 - 1
		ev := kv.Event{Type: kv.EventPut, Sub: sub, KV: kv.KeyValue{Key: key, Value: value, CreateRevision: 1, ModRevision: rev, Version: 2},
			PrevKV: &kv.KeyValue{Key: key, Value: value, CreateRevision: 1, ModRevision: 1, Version: 1}}
		if del {
			ev.Type = kv.EventDelete
			ev.KV = kv.KeyValue{Key: key, ModRevision: rev}
		}
		p := Position{Rev: rev, Sub: sub, HasSub: partial}
		if !partial {
			p.Sub = 0
		}

		e := Encoder{PrevKV: true}
		e.WriteEvent(p, &ev)
		evs := parseAll(t, e.Bytes())
		if len(evs) != 1 || evs[0].ID != p.String() || evs[0].Type != ev.Type.String() {
			t.Fatalf("SSE %q parsed as %+v", e.Bytes(), evs)
		}
		checkKV(t, []byte(evs[0].Data), &ev)

		n := Encoder{Format: FormatNDJSON, PrevKV: true}
		n.WriteEvent(p, &ev)
		out := n.Bytes()
		if bytes.IndexByte(out, '\n') != len(out)-1 || bytes.IndexByte(out, '\r') >= 0 {
			t.Fatalf("NDJSON %q is not one line", out)
		}
		var l ndjsonLine
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatalf("NDJSON %q: %v", out, err)
		}
		if l.ID == nil || *l.ID != p.String() || l.Type != ev.Type.String() || l.Revision != rev || l.KV == nil {
			t.Fatalf("NDJSON %q decoded as %+v", out, l)
		}
		kvOut, _ := json.Marshal(l.KV)
		checkKV(t, kvOut, &ev)
	})
}

// checkKV decodes the JSON of an event's kv and compares it with ev.
func checkKV(tb testing.TB, data []byte, ev *kv.Event) {
	tb.Helper()
	var got kvjson.KeyValue
	if err := json.Unmarshal(data, &got); err != nil {
		tb.Fatalf("data %q: %v", data, err)
	}
	k, err := got.KeyBytes()
	if err != nil || !bytes.Equal(k, ev.KV.Key) {
		tb.Fatalf("key %q from %s, want %q (%v)", k, data, ev.KV.Key, err)
	}
	v, err := got.ValueBytes()
	wantV := ev.KV.Value
	if ev.Type == kv.EventDelete {
		if got.Value != nil || got.ValueB64 != nil {
			tb.Fatalf("delete has a value: %s", data)
		}
		wantV = nil
	}
	if err != nil || !bytes.Equal(v, wantV) {
		tb.Fatalf("value %q from %s, want %q (%v)", v, data, wantV, err)
	}
	if got.ModRevision != ev.KV.ModRevision || got.PrevKV == nil {
		tb.Fatalf("revision or prev_kv lost: %s", data)
	}
	pv, err := got.PrevKV.ValueBytes()
	if err != nil || !bytes.Equal(pv, ev.PrevKV.Value) {
		tb.Fatalf("prev value %q from %s, want %q (%v)", pv, data, ev.PrevKV.Value, err)
	}
}
