package sse

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/watchgate/watchgate/kv"
)

func newRequest(rawQuery string, hdr map[string]string) *http.Request {
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/v1/watch/k", RawQuery: rawQuery}, Header: http.Header{}}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	return r
}

func TestParseRequest(t *testing.T) {
	h := NewHandler(nil, nil, Options{})
	const def = 15 * time.Second
	tests := []struct {
		name  string
		key   string
		query string
		hdr   map[string]string
		want  Request
	}{
		{"defaults", "k", "", nil, Request{Key: []byte("k"), Progress: def}},
		{"prefix", "k/", "prefix", nil, Request{Key: []byte("k/"), End: []byte("k0"), Progress: def}},
		{"all keys", "", "prefix=true", nil, Request{Key: []byte(""), End: []byte{0}, Progress: def}},
		{"range", "a", "range_end=c", nil, Request{Key: []byte("a"), End: []byte("c"), Progress: def}},
		{"from key on", "a", "range_end=%00", nil, Request{Key: []byte("a"), End: []byte{0}, Progress: def}},
		{"options", "k", "prev_kv=1&snapshot=true&events=delete&progress=0", nil,
			Request{Key: []byte("k"), PrevKV: true, Snapshot: true, NoPut: true}},
		{"progress seconds", "k", "progress=30", nil, Request{Key: []byte("k"), Progress: 30 * time.Second}},
		{"progress duration", "k", "progress=1m30s", nil, Request{Key: []byte("k"), Progress: 90 * time.Second}},
		{"ndjson", "k", "format=ndjson", nil, Request{Key: []byte("k"), Format: FormatNDJSON, Progress: def}},
		{"accept ndjson", "k", "", map[string]string{"Accept": "application/x-ndjson"}, Request{Key: []byte("k"), Format: FormatNDJSON, Progress: def}},
		{"format wins", "k", "format=sse", map[string]string{"Accept": "application/x-ndjson"}, Request{Key: []byte("k"), Progress: def}},
		{"browser", "k", "", map[string]string{"Accept": "text/event-stream"}, Request{Key: []byte("k"), Progress: def}},
		{"rev", "k", "rev=7", nil, Request{Key: []byte("k"), Rev: 7, Progress: def}},
		{"resume", "k", "rev=7&last_event_id=9", map[string]string{"Last-Event-ID": "8.2"},
			Request{Key: []byte("k"), Rev: 7, Resume: Position{Rev: 8, Sub: 2, HasSub: true}, Progress: def}},
		{"resume query", "k", "rev=7&last_event_id=9", nil, Request{Key: []byte("k"), Rev: 7, Resume: Position{Rev: 9}, Progress: def}},
		{"compacted", "k", "", map[string]string{"Last-Event-ID": "compacted"}, Request{Key: []byte("k"), Resume: Position{Compacted: true}, Progress: def}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.ParseRequest(newRequest(tt.query, tt.hdr), []byte(tt.key))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestStart(t *testing.T) {
	tests := []struct {
		req Request
		rev int64
		sub int32
	}{
		{Request{}, 0, 0},
		{Request{Rev: 7}, 7, 0},
		{Request{Rev: 7, Resume: Position{Rev: 9}}, 10, 0},
		{Request{Rev: 7, Resume: Position{Rev: 9, Sub: 1, HasSub: true}}, 9, 2},
	}
	for _, tt := range tests {
		if rev, sub := tt.req.Start(); rev != tt.rev || sub != tt.sub {
			t.Errorf("%+v.Start() = %d, %d; want %d, %d", tt.req, rev, sub, tt.rev, tt.sub)
		}
	}
}

// FuzzParseRequest checks that any query and headers either fail with an
// error a server can classify, or give a request the hub can serve.
func FuzzParseRequest(f *testing.F) {
	f.Add("k", "prefix=true&rev=5", "", "")
	f.Add("", "range_end=%00&events=put", "12.3", "")
	f.Add("a", "progress=15s&format=ndjson&prev_kv", "compacted", "application/x-ndjson")
	f.Add("a", "events=put,delete&events=&last_event_id=01", "", "*/*")
	f.Add("z", "range_end=a&progress=9223372036854775807", "", "")
	f.Fuzz(func(t *testing.T, key, rawQuery, lastEventID, accept string) {
		h := NewHandler(nil, nil, Options{MaxKeySize: 64})
		req, err := h.ParseRequest(newRequest(rawQuery, map[string]string{"Last-Event-ID": lastEventID, "Accept": accept}), []byte(key))
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, kv.ErrKeyTooLarge) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		switch {
		case req.End == nil && len(req.Key) == 0:
			t.Fatalf("empty single key accepted: %+v", req)
		case req.End != nil && !bytes.Equal(req.End, []byte{0}) && bytes.Compare(req.End, req.Key) <= 0:
			t.Fatalf("empty range accepted: %+v", req)
		case len(req.Key) > 64 || len(req.End) > 64:
			t.Fatalf("key over the limit accepted: %+v", req)
		case req.NoPut && req.NoDelete:
			t.Fatalf("every event type filtered out: %+v", req)
		case req.Progress < 0 || (req.Progress > 0 && req.Progress < time.Second):
			t.Fatalf("progress %v accepted", req.Progress)
		case req.Rev < 0:
			t.Fatalf("negative rev accepted")
		}
		if rev, sub := req.Start(); rev < 0 || sub < 0 {
			t.Fatalf("start %d.%d", rev, sub)
		}
	})
}
