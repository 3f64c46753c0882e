package ws

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

func TestServerMessages(t *testing.T) {
	id := "w\"1"
	put := kv.Event{Type: kv.EventPut, KV: kv.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 2, ModRevision: 42, Version: 1}}
	del := kv.Event{Type: kv.EventDelete, KV: kv.KeyValue{Key: []byte{0xff}, ModRevision: 43}}
	events := appendEventsStart(nil, id, 43)
	events = kvjson.AppendEvent(events, &put, false)
	events = append(events, ',')
	events = kvjson.AppendEvent(events, &del, false)
	events = appendEventsEnd(events)
	str := func(s string) *string { return &s }
	tests := []struct {
		name string
		got  []byte
		want string
		msg  Message
	}{
		{"created", appendRevMessage(nil, TypeCreated, id, 41), `{"type":"created","id":"w\"1","revision":41}`,
			Message{Type: TypeCreated, ID: "w\"1", Revision: 41}},
		{"events", events,
			`{"type":"events","id":"w\"1","revision":43,"events":[{"type":"put","kv":{"key":"k","value":"v","create_revision":2,"mod_revision":42,"version":1}},{"type":"delete","kv":{"key_b64":"/w==","mod_revision":43}}]}`,
			Message{Type: TypeEvents, ID: "w\"1", Revision: 43, Events: []Event{
				{Type: "put", KV: kvjson.KeyValue{Key: str("k"), Value: str("v"), CreateRevision: 2, ModRevision: 42, Version: 1}},
				{Type: "delete", KV: kvjson.KeyValue{KeyB64: str("/w=="), ModRevision: 43}},
			}}},
		{"progress", appendProgress(nil, 50), `{"type":"progress","revision":50}`, Message{Type: TypeProgress, Revision: 50}},
		{"reset", appendRevMessage(nil, TypeReset, id, 60), `{"type":"reset","id":"w\"1","revision":60}`, Message{Type: TypeReset, ID: "w\"1", Revision: 60}},
		{"synced", appendRevMessage(nil, TypeSynced, id, 60), `{"type":"synced","id":"w\"1","revision":60}`, Message{Type: TypeSynced, ID: "w\"1", Revision: 60}},
		{"compacted", appendCompacted(nil, id, 70, 90), `{"type":"compacted","id":"w\"1","compact_revision":70,"revision":90}`,
			Message{Type: TypeCompacted, ID: "w\"1", CompactRevision: 70, Revision: 90}},
		{"canceled", appendCanceled(nil, id, "canceled by the client"), `{"type":"canceled","id":"w\"1","reason":"canceled by the client"}`,
			Message{Type: TypeCanceled, ID: "w\"1", Reason: "canceled by the client"}},
		{"error with id", appendError(nil, id, newProblem(ErrBadRevision, "bad")),
			`{"type":"error","id":"w\"1","error":{"type":"urn:watchgate:problem:invalid-revision","title":"Invalid revision","status":400,"detail":"bad"}}`,
			Message{Type: TypeError, ID: "w\"1", Error: &Problem{Type: ProblemTypePrefix + "invalid-revision", Title: "Invalid revision", Status: 400, Detail: "bad"}}},
		{"error without id", appendError(nil, "", newProblem(ErrBadMessage, "not \xffUTF-8")),
			`{"type":"error","error":{"type":"urn:watchgate:problem:malformed-message","title":"Malformed message","status":400,"detail":"not ` + "\uFFFD" + `UTF-8"}}`,
			Message{Type: TypeError, Error: &Problem{Type: ProblemTypePrefix + "malformed-message", Title: "Malformed message", Status: 400, Detail: "not \uFFFDUTF-8"}}},
		{"pong", appendPong(nil), `{"type":"pong"}`, Message{Type: TypePong}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, string(tt.got)); diff != "" {
				t.Errorf("encoding (-want +got):\n%s", diff)
			}
			var m Message
			if err := json.Unmarshal(tt.got, &m); err != nil {
				t.Fatalf("decode %s: %v", tt.got, err)
			}
			if diff := cmp.Diff(tt.msg, m, cmpopts.IgnoreFields(Problem{}, "Err")); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
}
