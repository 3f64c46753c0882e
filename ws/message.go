package ws

import (
	"strconv"

	"github.com/watchgate/watchgate/kvjson"
)

// Server message types, the "type" member of every message the server
// sends.
const (
	TypeCreated   = "created"
	TypeEvents    = "events"
	TypeProgress  = "progress"
	TypeReset     = "reset"
	TypeSynced    = "synced"
	TypeCompacted = "compacted"
	TypeCanceled  = "canceled"
	TypeError     = "error"
	TypePong      = "pong"
)

// Message is the decoded form of any message the server sends, for clients
// and tests; the server itself encodes with the append functions below and
// never through this type.
type Message struct {
	Type            string   `json:"type"`
	ID              string   `json:"id,omitempty"`
	Revision        int64    `json:"revision,omitempty"`
	CompactRevision int64    `json:"compact_revision,omitempty"`
	Reason          string   `json:"reason,omitempty"`
	Events          []Event  `json:"events,omitempty"`
	Error           *Problem `json:"error,omitempty"`
}

// Event is the decoded form of one event of an events message.
type Event struct {
	Type   string           `json:"type"`
	KV     kvjson.KeyValue  `json:"kv"`
	PrevKV *kvjson.KeyValue `json:"prev_kv,omitempty"`
}

// appendHead appends the opening of a message, {"type":typ and, when id
// is not empty, "id":id.
func appendHead(dst []byte, typ string, id string) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, typ...)
	dst = append(dst, '"')
	if id != "" {
		dst = append(dst, `,"id":`...)
		dst = appendJSONString(dst, id)
	}
	return dst
}

// appendRevMessage appends {"type":typ,"id":id,"revision":rev}, the form of
// created, reset and synced.
func appendRevMessage(dst []byte, typ string, id string, rev int64) []byte {
	dst = appendHead(dst, typ, id)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, rev, 10)
	return append(dst, '}')
}

// appendEventsStart appends the start of an events message, up to and
// including the opening bracket of its events array. The caller appends
// the pre-encoded events, separated by commas, then appendEventsEnd.
func appendEventsStart(dst []byte, id string, rev int64) []byte {
	dst = appendHead(dst, TypeEvents, id)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, rev, 10)
	return append(dst, `,"events":[`...)
}

func appendEventsEnd(dst []byte) []byte { return append(dst, ']', '}') }

// appendProgress appends {"type":"progress","revision":rev}.
func appendProgress(dst []byte, rev int64) []byte {
	return appendRevMessage(dst, TypeProgress, "", rev)
}

// appendCompacted appends {"type":"compacted","id":id,
// "compact_revision":compact,"revision":rev}.
func appendCompacted(dst []byte, id string, compact, rev int64) []byte {
	dst = appendHead(dst, TypeCompacted, id)
	dst = append(dst, `,"compact_revision":`...)
	dst = strconv.AppendInt(dst, compact, 10)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendInt(dst, rev, 10)
	return append(dst, '}')
}

// appendCanceled appends {"type":"canceled","id":id,"reason":reason}.
func appendCanceled(dst []byte, id string, reason string) []byte {
	dst = appendHead(dst, TypeCanceled, id)
	dst = append(dst, `,"reason":`...)
	dst = appendJSONString(dst, reason)
	return append(dst, '}')
}

// appendError appends {"type":"error","id":id,"error":{...}}; an empty id
// is left out.
func appendError(dst []byte, id string, p *Problem) []byte {
	dst = appendHead(dst, TypeError, id)
	dst = append(dst, `,"error":`...)
	dst = p.appendJSON(dst)
	return append(dst, '}')
}

// appendPong appends {"type":"pong"}.
func appendPong(dst []byte) []byte { return append(dst, `{"type":"pong"}`...) }
