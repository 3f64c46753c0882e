package kvjson

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

func TestAppendKV(t *testing.T) {
	tests := []struct {
		name     string
		kv       kv.KeyValue
		keysOnly bool
		want     string
	}{
		{"text", kv.KeyValue{Key: []byte("config/a"), Value: []byte("on"), CreateRevision: 5, ModRevision: 9, Version: 3}, false,
			`{"key":"config/a","value":"on","create_revision":5,"mod_revision":9,"version":3}`},
		{"keys only", kv.KeyValue{Key: []byte("a"), Value: []byte("on"), CreateRevision: 2, ModRevision: 2, Version: 1}, true,
			`{"key":"a","create_revision":2,"mod_revision":2,"version":1}`},
		{"binary value", kv.KeyValue{Key: []byte("b"), Value: []byte{0xff, 0x00}, CreateRevision: 2, ModRevision: 2, Version: 1}, false,
			`{"key":"b","value_b64":"/wA=","create_revision":2,"mod_revision":2,"version":1}`},
		{"binary key", kv.KeyValue{Key: []byte{0xc3, 0x28}, Value: nil, CreateRevision: 2, ModRevision: 2, Version: 1}, false,
			`{"key_b64":"wyg=","value":"","create_revision":2,"mod_revision":2,"version":1}`},
		{"escapes", kv.KeyValue{Key: []byte("q\"\\\n\r\t\x00\x1f"), Value: []byte("\u2028<é>"), CreateRevision: 2, ModRevision: 3, Version: 2}, false,
			`{"key":"q\"\\\n\r\t\u0000\u001f","value":"\u2028<é>","create_revision":2,"mod_revision":3,"version":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendKV(nil, &tt.kv, tt.keysOnly))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("AppendKV (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAppendEvent(t *testing.T) {
	prev := &kv.KeyValue{Key: []byte("k"), Value: []byte("old"), CreateRevision: 2, ModRevision: 2, Version: 1}
	put := kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("k"), Value: []byte("new"), CreateRevision: 2, ModRevision: 4, Version: 2}, PrevKV: prev}
	del := kv.Event{Type: kv.EventDelete, KV: kv.KeyValue{Key: []byte("k"), ModRevision: 5}, PrevKV: prev}
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"sse put", AppendEventKV(nil, &put, false), `{"key":"k","value":"new","create_revision":2,"mod_revision":4,"version":2}`},
		{"sse put prev", AppendEventKV(nil, &put, true), `{"key":"k","value":"new","create_revision":2,"mod_revision":4,"version":2,"prev_kv":{"key":"k","value":"old","create_revision":2,"mod_revision":2,"version":1}}`},
		{"sse delete", AppendEventKV(nil, &del, false), `{"key":"k","mod_revision":5}`},
		{"ws put", AppendEvent(nil, &put, false), `{"type":"put","kv":{"key":"k","value":"new","create_revision":2,"mod_revision":4,"version":2}}`},
		{"ws delete prev", AppendEvent(nil, &del, true), `{"type":"delete","kv":{"key":"k","mod_revision":5},"prev_kv":{"key":"k","value":"old","create_revision":2,"mod_revision":2,"version":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, string(tt.got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzAppendKV checks that any key and value survive encoding and decoding
// with encoding/json, an independent parser.
func FuzzAppendKV(f *testing.F) {
	f.Add([]byte("config/a"), []byte("on"))
	f.Add([]byte{0xff}, []byte("\u2028\x00\""))
	f.Add([]byte("é"), []byte{0xed, 0xa0, 0x80})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		in := kv.KeyValue{Key: key, Value: value, CreateRevision: 2, ModRevision: 7, Version: 3}
		out := AppendKV(nil, &in, false)
		var got KeyValue
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		k, err := got.KeyBytes()
		if err != nil || !bytes.Equal(k, key) {
			t.Fatalf("key %q: got %q, %v from %s", key, k, err, out)
		}
		v, err := got.ValueBytes()
		if err != nil || !bytes.Equal(v, value) {
			t.Fatalf("value %q: got %q, %v from %s", value, v, err, out)
		}
		if got.CreateRevision != 2 || got.ModRevision != 7 || got.Version != 3 {
			t.Fatalf("revisions changed: %s", out)
		}
	})
}

func TestBytes(t *testing.T) {
	s, b := "x", "eA=="
	bad := "!!"
	if _, err := Bytes("key", &s, &b); err == nil {
		t.Error("both forms accepted")
	}
	if _, err := Bytes("key", nil, &bad); err == nil {
		t.Error("bad base64 accepted")
	}
	got, err := Bytes("key", nil, &b)
	if err != nil || string(got) != "x" {
		t.Errorf("Bytes(b64) = %q, %v", got, err)
	}
}

func BenchmarkAppendEventKV(b *testing.B) {
	ev := kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("config/service/a"), Value: bytes.Repeat([]byte("v"), 100), CreateRevision: 2, ModRevision: 4, Version: 2}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEventKV(buf[:0], &ev, false)
	}
}
