// Package ws serves watchgate's multiplexed WebSocket watch protocol,
// subprotocol watchgate.v1: one socket carries many watches, each named by
// the client's id, in JSON text messages.
//
// Client to server:
//
//	{"op":"watch","id":"w1","key":"config/","prefix":true,"rev":0,"prev_kv":false,
//	 "events":["put","delete"],"snapshot":false}
//	{"op":"cancel","id":"w1"}
//	{"op":"progress"}
//	{"op":"ping"}
//
// A watch selects one key (key), a prefix (prefix true; the empty key with
// prefix is every key) or a range [key, range_end) (range_end "\u0000" is
// every key from key on). Keys that are not valid UTF-8 are given as
// key_b64 / range_end_b64 in standard base64. rev 0 starts at the next
// revision; rev R replays history from R inclusive. events filters event
// types, prev_kv adds each event's previous kv, snapshot asks for the
// range's current kvs first (reset, puts, synced), then live events.
//
// Server to client:
//
//	{"type":"created","id":"w1","revision":41}
//	{"type":"events","id":"w1","revision":42,"events":[{"type":"put","kv":{...}}]}
//	{"type":"progress","revision":50}
//	{"type":"reset","id":"w1","revision":60}
//	{"type":"synced","id":"w1","revision":60}
//	{"type":"compacted","id":"w1","compact_revision":70,"revision":90}
//	{"type":"canceled","id":"w1","reason":"..."}
//	{"type":"error","id":"w1","error":{"title":"...","status":400,"detail":"..."}}
//	{"type":"pong"}
//
// An events message never splits a revision; its revision is the last one
// it completes, so a client resumes a watch with rev = that revision + 1.
// Events are encoded once per event and spliced into every watch's
// message. An events message over Options.MaxEventsMessage is split
// between revisions. Between a snapshot watch's reset and synced, events
// messages carry the snapshot's puts and the snapshot's revision; the
// watch is resumable from synced on. A progress message is sent only when
// every watch on the socket has been sent everything up to its revision,
// on request or after Options.ProgressInterval of silence. compacted ends
// its watch, except a snapshot watch, which heals with reset ... synced.
//
// # Serving
//
// Handler serves GET /v1/ws. A handshake from an Origin that is not
// allowed (Options.OriginPatterns; same origin and no Origin are allowed)
// is refused with 403, one that does not offer watchgate.v1 with 400, one
// that is no WebSocket handshake with 426, all as application/problem+json
// before any upgrade.
//
// Each socket has one read loop and one write loop. Control replies and
// events go out in one order: what the client asked for is answered in
// the order it asked (an error for a watch id comes before the created of
// the next watch with that id). The write loop gathers the messages it
// has into a few large writes, each with the write deadline; a client that
// reads nothing for Options.WriteTimeout is disconnected (its watches
// resume by revision). A client that reads slowly is never sent a partial
// or reordered stream and never loses events: once its queue on the hub is
// full, the hub stops pushing live events to it and catches its watches up
// from history when it reads again, so a socket's memory stays bounded. A
// client that sends watches faster than it reads their answers is read
// from more slowly.
//
// Close codes: 1000 normal, 1001 server shutting down (Handler.Shutdown,
// or the hub closed), 1008 access expired (Options.Expires), 1009 a client
// message over Options.MaxMessageSize.
//
// # Validation
//
// Client messages are parsed strictly (ParseRequest): a message must be one
// UTF-8 JSON object; each member may appear once; a member whose value is
// null counts as absent; a member the op does not take, unknown members
// included, is an error. etcd ignores unknown fields; watchgate does not,
// because a misspelt option ("prefx") would otherwise silently watch
// something else, and the subprotocol name (watchgate.v1) versions the
// message set. Ids are non-empty strings of at most MaxIDSize bytes; keys
// and range ends are bounded as in the REST API (4 KiB by default). There
// is no per-watch progress interval: progress is a property of the socket.
//
// Every rejected message gets an error message whose error member is an
// RFC 9457 problem with a 4xx status, carrying the watch's id when the
// message had a valid one; the socket stays open.
package ws
