package watchhub

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/kvjson"
)

// Event is one change of one key as the hub hands it to transports: the
// store's event (its fields are promoted: e.Type, e.KV, e.Sub, e.PrevKV)
// plus its JSON encodings. The hub makes one Event per
// committed event and every watcher and every stream that receives the
// change gets the same *Event, so each encoding is computed at most once
// however many clients receive it (encode once).
//
// An Event and the byte slices its methods return are shared and read-only:
// callers must not modify them.
type Event struct {
	*kv.Event

	size int
	// notified is when the hub was notified of the event's commit, as
	// nanoseconds since notifyEpoch plus one; 0 for events the hub read
	// from history or a snapshot.
	notified int64

	// arena, when set, holds the encodings (events read from history
	// together share one).
	arena *encArena

	mu  sync.Mutex // serialises the first encoding of each form
	enc [4]atomic.Pointer[[]byte]
}

// encArena hands out the encodings of a group of events read together from
// the store's history, carved from shared chunks: one allocation for a few
// hundred small encodings instead of one each, for the events that are
// encoded once and sent once by a watcher catching up. A chunk stays alive
// as long as any encoding carved from it. Its methods may be called
// concurrently.
type encArena struct {
	mu   sync.Mutex
	free []byte // the rest of the current chunk, empty
}

// encChunk is the size of an encArena chunk: the largest small-object size
// class.
const encChunk = 32 << 10

// encode appends an encoding to the arena's free space with enc and returns
// it, with its capacity cut to its length. An encoding larger than what is
// left, or than a quarter of a chunk, gets its own allocation of size bytes
// (its likely length) instead.
func (a *encArena) encode(size int, enc func([]byte) []byte) []byte {
	if size > encChunk/4 {
		return enc(make([]byte, 0, size))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if cap(a.free) < size {
		a.free = make([]byte, 0, encChunk)
	}
	b := enc(a.free)
	if cap(b) != cap(a.free) {
		// enc outgrew the free space and reallocated: keep the chunk's
		// free space for the next one.
		return b
	}
	a.free = a.free[len(b):len(b)]
	return b[:len(b):len(b)]
}

// The encoded forms, index into Event.enc.
const (
	formData = iota
	formDataPrev
	formJSON
	formJSONPrev
)

// notifyEpoch is the origin of Event.notified. Stamps are taken with
// time.Since, so Notified's result carries a monotonic clock reading and
// time.Since(e.Notified()) is immune to wall clock changes.
var notifyEpoch = time.Now()

// notifyStamp is the current time as an Event.notified value.
func notifyStamp() int64 { return int64(time.Since(notifyEpoch)) + 1 }

// Notified returns when the hub was notified of the event's commit by the
// store: one time shared by every event of a group commit. It is the zero
// time for an event the hub did not receive from a commit notification
// (one read back from the store's history for a watcher catching up, or a
// snapshot's put).
func (e *Event) Notified() time.Time {
	if e.notified == 0 {
		return time.Time{}
	}
	return notifyEpoch.Add(time.Duration(e.notified - 1))
}

// eventSize approximates the memory an event holds, for queue and buffer
// bounds.
func eventSize(ev *kv.Event) int {
	n := 128 + len(ev.KV.Key) + len(ev.KV.Value)
	if ev.PrevKV != nil {
		n += 64 + len(ev.PrevKV.Key) + len(ev.PrevKV.Value)
	}
	return n
}

// Data returns the event's kv object as the SSE data line carries it:
// kvjson.AppendEventKV, with "prev_kv" inside when prevKV is set (and the
// key had a previous version). The bytes are computed once and shared.
func (e *Event) Data(prevKV bool) []byte {
	if prevKV {
		return e.encoded(formDataPrev)
	}
	return e.encoded(formData)
}

// JSON returns the event in the WebSocket form
// {"type":"put"|"delete","kv":{...},"prev_kv":{...}} (kvjson.AppendEvent),
// prev_kv only when prevKV is set. The bytes are computed once and shared.
func (e *Event) JSON(prevKV bool) []byte {
	if prevKV {
		return e.encoded(formJSONPrev)
	}
	return e.encoded(formJSON)
}

func (e *Event) encoded(form int) []byte {
	if p := e.enc[form].Load(); p != nil {
		return *p
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.enc[form].Load(); p != nil {
		return *p
	}
	prev := form == formDataPrev || form == formJSONPrev
	enc := func(b []byte) []byte {
		if form == formData || form == formDataPrev {
			return kvjson.AppendEventKV(b, e.Event, prev)
		}
		return kvjson.AppendEvent(b, e.Event, prev)
	}
	size := encodedSize(e.Event, prev)
	var b []byte
	if e.arena != nil {
		b = e.arena.encode(size, enc)
	} else {
		b = enc(make([]byte, 0, size))
	}
	e.enc[form].Store(&b)
	return b
}

// encodedSize is the likely length of an event's JSON: the members' names
// and revisions (under 128 bytes with revisions below 10^9) plus its keys
// and values, so that the encoding is one allocation unless escapes or
// base64 lengthen them.
func encodedSize(ev *kv.Event, prev bool) int {
	n := 128 + len(ev.KV.Key) + len(ev.KV.Value)
	if prev && ev.PrevKV != nil {
		n += 96 + len(ev.PrevKV.Key) + len(ev.PrevKV.Value)
	}
	return n
}
