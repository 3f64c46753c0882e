// Package sse serves watches as Server-Sent Events (text/event-stream) and
// as newline-delimited JSON, the two stream forms of GET /v1/watch/{key}.
//
// The package has four layers:
//
//   - framing: AppendFrame, AppendComment and AppendRetry write the
//     text/event-stream syntax. No value can start a new field or event:
//     data is split into one "data:" line per line (a client joins them back
//     with LF), and an id or event name holding CR, LF or NUL is rejected.
//   - resume ids: Position is the id of an event, "R" for the last (or only)
//     event of revision R on this stream and "R.S" for the others (S is the
//     event's sub-revision). PositionOf computes it and Position.Unseen drops
//     what a client resuming from a Last-Event-ID has already seen, so the
//     same event always gets the same id whatever point a stream resumed
//     from.
//   - Encoder: the watch stream's messages (put, delete, progress,
//     compacted, reset, synced, error) in either wire Format, appended to one
//     reusable buffer that the stream handler flushes once per batch.
//   - Handler: the http.Handler of GET /v1/watch/{key}. It parses the
//     request (ParseRequest), opens one watch on the hub, and streams the
//     hub's responses with one write and one flush per drained batch, each
//     under the write timeout. Errors before streaming are answered with a
//     status through Options.WriteError; after, with an error event.
//     Served by package h2srv, a stream is detached from its handler's
//     goroutine once its header is out: the connection's writer drains the
//     hub stream when the hub signals it (StreamOptions.OnReady) and
//     encodes straight into the connection's buffer, and one timer of the
//     Handler sends the heartbeats of every detached stream.
//
// The package knows nothing of routers: ServeHTTP takes the key from the
// escaped path after Options.PathPrefix, and Serve takes a Request parsed
// by whoever routed it.
package sse
