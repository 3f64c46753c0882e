package sse

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// Format is a wire form of a watch stream.
type Format uint8

const (
	// FormatSSE is text/event-stream: one event a message, its id in the
	// "id:" field, its type in "event:" and its JSON in "data:".
	FormatSSE Format = iota
	// FormatNDJSON is application/x-ndjson: one JSON object a line, with
	// the SSE id as "id" (absent when the SSE message has none) and the
	// SSE event type as "type". Retry fields and comments have no NDJSON
	// form and are not written.
	FormatNDJSON
)

// ContentType is the Content-Type of a response in the format.
func (f Format) ContentType() string {
	if f == FormatNDJSON {
		return "application/x-ndjson"
	}
	return "text/event-stream"
}

func (f Format) String() string {
	if f == FormatNDJSON {
		return "ndjson"
	}
	return "sse"
}

// Encoder appends the messages of one watch stream to a buffer, in its
// Format. A stream handler writes every message of a batch, sends Bytes in
// one write and one flush, then calls Reset: the buffer is reused and
// encoding allocates nothing once it has grown to the size of a batch.
//
// The messages, in SSE form (NDJSON carries the same members in one object
// a line, see each method):
//
//	id: R[.S]      event: put|delete  data: {kv..., "prev_kv":{...}}
//	               event: put         data: {kv}            (snapshot)
//	id: R          event: progress    data: {"revision":R}
//	id: compacted  event: compacted   data: {"compact_revision":C,"revision":R}
//	               event: reset       data: {"revision":S}
//	id: S          event: synced      data: {"revision":S}
//	               event: error       data: {problem}
//
// The zero Encoder writes SSE without prev_kv. An Encoder is not safe for
// concurrent use.
type Encoder struct {
	// Format is the wire form; the zero value is FormatSSE.
	Format Format
	// PrevKV puts the key's previous version as "prev_kv" inside the kv
	// of put and delete events (when the key had one), in both formats.
	PrevKV bool

	buf     []byte
	scratch []byte
}

// Bytes returns the encoded messages since the last Reset. The slice is
// valid until the next call of a Write method or Reset.
func (e *Encoder) Bytes() []byte { return e.buf }

// Len is len(e.Bytes()).
func (e *Encoder) Len() int { return len(e.buf) }

// Reset empties the buffer and keeps its memory for the next batch.
func (e *Encoder) Reset() { e.buf = e.buf[:0] }

// WriteRetry writes the SSE "retry:" field that sets a client's
// reconnection time (nothing in NDJSON).
func (e *Encoder) WriteRetry(d time.Duration) {
	if e.Format == FormatSSE {
		e.buf = AppendRetry(e.buf, d)
	}
}

// WriteComment writes an SSE comment, which clients ignore: a heartbeat
// that keeps proxies from closing an idle stream (nothing in NDJSON).
func (e *Encoder) WriteComment(text string) {
	if e.Format == FormatSSE {
		e.buf = AppendComment(e.buf, text)
	}
}

// WriteRevision writes the events of one revision that match the stream,
// in sub-revision order, each with its id (PositionOf). events may be a
// suffix left by Position.Unseen: the ids stay those of the whole revision.
func (e *Encoder) WriteRevision(events []kv.Event) {
	for i := range events {
		e.WriteEvent(PositionOf(events, i), &events[i])
	}
}

// WriteEvent writes one put or delete event with id p. Its data is the
// event's kv (kvjson.AppendEventKV), with "prev_kv" inside when PrevKV is
// set. NDJSON:
//
//	{"id":"R[.S]","type":"put"|"delete","revision":R,"kv":{...}}
func (e *Encoder) WriteEvent(p Position, ev *kv.Event) {
	if e.Format == FormatNDJSON {
		e.beginNDJSONEvent(p, ev.Type, ev.Revision())
		e.buf = kvjson.AppendEventKV(e.buf, ev, e.PrevKV)
		e.buf = append(e.buf, "}\n"...)
		return
	}
	e.beginSSEEvent(p, ev.Type)
	start := e.beginData()
	e.buf = kvjson.AppendEventKV(e.buf, ev, e.PrevKV)
	e.endData(start)
}

// WriteEventData is WriteEvent for an event whose kv JSON is already
// encoded (encode once: watchhub.Event.Data gives every stream the same
// bytes); data is written as is, whatever PrevKV says. data must be one
// JSON value in UTF-8, as kvjson writes it. In SSE a line break in it is
// split into data lines like any other; in NDJSON, where it would end the
// line, data is compacted, and if that fails nothing is written and
// ErrInvalidData is returned.
func (e *Encoder) WriteEventData(p Position, typ kv.EventType, rev int64, data []byte) error {
	if e.Format == FormatNDJSON {
		if indexLineBreak(data) >= 0 {
			var compact bytes.Buffer
			if err := json.Compact(&compact, data); err != nil {
				return ErrInvalidData
			}
			data = compact.Bytes()
		}
		e.beginNDJSONEvent(p, typ, rev)
		e.buf = append(e.buf, data...)
		e.buf = append(e.buf, "}\n"...)
		return nil
	}
	e.beginSSEEvent(p, typ)
	start := e.beginData()
	e.buf = append(e.buf, data...)
	e.endData(start)
	return nil
}

func (e *Encoder) beginNDJSONEvent(p Position, typ kv.EventType, rev int64) {
	e.buf = append(e.buf, `{"id":"`...)
	e.buf = p.AppendText(e.buf)
	e.buf = append(e.buf, `","type":"`...)
	e.buf = append(e.buf, typ.String()...)
	e.buf = append(e.buf, `","revision":`...)
	e.buf = strconv.AppendInt(e.buf, rev, 10)
	e.buf = append(e.buf, `,"kv":`...)
}

func (e *Encoder) beginSSEEvent(p Position, typ kv.EventType) {
	e.buf = append(e.buf, "id: "...)
	e.buf = p.AppendText(e.buf)
	e.buf = append(e.buf, "\nevent: "...)
	e.buf = append(e.buf, typ.String()...)
	e.buf = append(e.buf, '\n')
}

// WriteSnapshotKV writes one key of a snapshot taken at revision rev, as a
// put without id: a client cut off in the middle of a snapshot resumes
// from the id it had before it, which restarts the snapshot. NDJSON:
//
//	{"type":"put","revision":S,"kv":{...}}
func (e *Encoder) WriteSnapshotKV(rev int64, kv *kv.KeyValue) {
	if e.Format == FormatNDJSON {
		e.buf = append(e.buf, `{"type":"put","revision":`...)
		e.buf = strconv.AppendInt(e.buf, rev, 10)
		e.buf = append(e.buf, `,"kv":`...)
		e.buf = kvjson.AppendKV(e.buf, kv, false)
		e.buf = append(e.buf, "}\n"...)
		return
	}
	e.buf = append(e.buf, "event: put\n"...)
	start := e.beginData()
	e.buf = kvjson.AppendKV(e.buf, kv, false)
	e.endData(start)
}

// WriteProgress writes a bookmark: everything up to rev that matches the
// stream has been sent. Its id is rev. NDJSON:
//
//	{"id":"R","type":"progress","revision":R}
func (e *Encoder) WriteProgress(rev int64) {
	e.writeRevisionMessage(true, rev, "progress", rev)
}

// WriteSynced writes the end of a snapshot taken at rev; its id is rev.
// NDJSON: {"id":"S","type":"synced","revision":S}
func (e *Encoder) WriteSynced(rev int64) {
	e.writeRevisionMessage(true, rev, "synced", rev)
}

// WriteReset writes the start of a snapshot taken at rev, without id.
// NDJSON: {"type":"reset","revision":S}
func (e *Encoder) WriteReset(rev int64) {
	e.writeRevisionMessage(false, rev, "reset", rev)
}

// writeRevisionMessage writes a message whose data is {"revision":rev},
// with id idRev when withID is set.
func (e *Encoder) writeRevisionMessage(withID bool, idRev int64, event string, rev int64) {
	if e.Format == FormatNDJSON {
		e.buf = append(e.buf, '{')
		if withID {
			e.buf = append(e.buf, `"id":"`...)
			e.buf = strconv.AppendInt(e.buf, idRev, 10)
			e.buf = append(e.buf, `",`...)
		}
		e.buf = append(e.buf, `"type":"`...)
		e.buf = append(e.buf, event...)
		e.buf = append(e.buf, `","revision":`...)
		e.buf = strconv.AppendInt(e.buf, rev, 10)
		e.buf = append(e.buf, "}\n"...)
		return
	}
	if withID {
		e.buf = append(e.buf, "id: "...)
		e.buf = strconv.AppendInt(e.buf, idRev, 10)
		e.buf = append(e.buf, '\n')
	}
	e.buf = append(e.buf, "event: "...)
	e.buf = append(e.buf, event...)
	e.buf = append(e.buf, "\ndata: {\"revision\":"...)
	e.buf = strconv.AppendInt(e.buf, rev, 10)
	e.buf = append(e.buf, "}\n\n"...)
}

// WriteCompacted writes that the stream's next revision was compacted:
// compact is the compact revision, rev the store's revision. Its id is
// "compacted"; the stream must end after it. NDJSON:
//
//	{"id":"compacted","type":"compacted","compact_revision":C,"revision":R}
func (e *Encoder) WriteCompacted(compact, rev int64) {
	if e.Format == FormatNDJSON {
		e.buf = append(e.buf, `{"id":"compacted","type":"compacted","compact_revision":`...)
	} else {
		e.buf = append(e.buf, "id: compacted\nevent: compacted\ndata: {\"compact_revision\":"...)
	}
	e.buf = strconv.AppendInt(e.buf, compact, 10)
	e.buf = append(e.buf, `,"revision":`...)
	e.buf = strconv.AppendInt(e.buf, rev, 10)
	if e.Format == FormatNDJSON {
		e.buf = append(e.buf, "}\n"...)
	} else {
		e.buf = append(e.buf, "}\n\n"...)
	}
}

// WriteError writes an error that ends the stream; problem is an RFC 9457
// problem object, written compacted (so it stays on one line). NDJSON:
//
//	{"type":"error","error":{problem}}
//
// A problem that is not one valid JSON value in UTF-8 is not written and
// ErrInvalidProblem is returned.
func (e *Encoder) WriteError(problem []byte) error {
	var compact bytes.Buffer
	if err := json.Compact(&compact, problem); err != nil || !utf8.Valid(compact.Bytes()) {
		return ErrInvalidProblem
	}
	if e.Format == FormatNDJSON {
		e.buf = append(e.buf, `{"type":"error","error":`...)
		e.buf = append(e.buf, compact.Bytes()...)
		e.buf = append(e.buf, "}\n"...)
		return nil
	}
	e.buf = appendFrame(e.buf, "", "error", compact.Bytes())
	return nil
}

// beginData starts the "data:" line of a message whose JSON the caller
// appends straight to the buffer before calling endData with the returned
// offset.
func (e *Encoder) beginData() int {
	start := len(e.buf)
	e.buf = append(e.buf, "data: "...)
	return start
}

// endData ends the message begun at start. Should the JSON hold a line
// break (kvjson never writes one), it is moved to scratch and split into
// lines as AppendFrame does, so no input can start a field or event.
func (e *Encoder) endData(start int) {
	mark := start + len("data: ")
	if indexLineBreak(e.buf[mark:]) >= 0 {
		e.scratch = append(e.scratch[:0], e.buf[mark:]...)
		e.buf = appendDataLines(e.buf[:start], e.scratch)
		e.buf = append(e.buf, '\n')
		return
	}
	e.buf = append(e.buf, '\n', '\n')
}
