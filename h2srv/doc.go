// Package h2srv is an HTTP/2 server (RFC 9113) for net/http's
// TLSNextProto hook: an http.Server keeps HTTP/1.1 (and so the
// WebSocket) and hands every HTTP/2 connection, over TLS ("h2" by ALPN)
// or cleartext with prior knowledge ("unencrypted_http2"), to a Server:
//
//	h2 := h2srv.New(nil, h2srv.Options{MaxConcurrentStreams: 1000})
//	srv := &http.Server{Handler: api, Protocols: new(http.Protocols), TLSNextProto: h2.TLSNextProto()}
//	srv.Protocols.SetHTTP1(true)
//	srv.Protocols.SetUnencryptedHTTP2(true)
//	...
//	srv.Shutdown(ctx) // sends GOAWAY on every HTTP/2 connection too
//	h2.Shutdown(ctx)  // waits for the handlers
//
// It exists so that a watch stream can cost a small struct rather than a
// goroutine with its stack and buffers (see "Streams without a
// goroutine" below).
//
// # Connections
//
// Each connection has one reading goroutine (the one net/http hands it
// over on) and one writing goroutine. The reader parses frames with
// x/net/http2's Framer (HPACK and CONTINUATION through ReadMetaHeaders),
// keeps the stream table, the flow-control windows and the stream state
// machine under the connection's mutex, and never blocks on anything but
// the socket and that mutex: request bodies are buffered up to the
// stream's receive window. The writer owns the socket's writes, the
// write buffer and the HPACK encoder; each round it gathers the queued
// control frames (SETTINGS and PING acknowledgements, WINDOW_UPDATE,
// RST_STREAM, GOAWAY) and the ready streams' HEADERS and DATA, within
// the peer's send windows and MAX_FRAME_SIZE, into one buffer of up to
// 64 KiB and writes it with one write(2) under Options.WriteTimeout.
//
// Errors follow RFC 9113: a connection error sends GOAWAY with its code
// and closes the connection after the peer has read it; a stream error
// sends RST_STREAM. The defences are net/http's: SETTINGS_MAX_HEADER_LIST_SIZE
// and the Framer's CONTINUATION limits (CVE-2023-45288), REFUSED_STREAM
// over MaxConcurrentStreams, a token bucket for resets of streams whose
// handler has not finished (rapid reset, CVE-2023-44487), a bound on
// queued control frames (PING and SETTINGS floods) and on running
// handlers, all ending in GOAWAY with ENHANCE_YOUR_CALM.
//
// # Requests
//
// A request stream becomes an *http.Request (Proto "HTTP/2.0", TLS
// state, RemoteAddr, a Context cancelled when the stream is reset or the
// connection closes, a Body fed by DATA frames) and runs the handler on
// its own goroutine. Its ResponseWriter implements http.Flusher and what
// http.ResponseController needs (FlushError, SetWriteDeadline,
// SetReadDeadline, EnableFullDuplex); it buffers up to 16 KiB before the
// first flush, so that a short response gets a Content-Length and a
// sniffed Content-Type, and supports trailers (the Trailer header and
// http.TrailerPrefix). A Write waits while 32 KiB of the stream wait for
// the peer's window; a write deadline in the past fails it at once and
// resets the stream, which is how package sse aborts a stuck write.
// Informational (1xx) responses, server push and extended CONNECT are
// not supported.
//
// # Streams without a goroutine
//
// A handler may hand the rest of its response to a Source with Detach
// and return: the stream stays open as a struct on its connection, and
// the connection's writer calls Source.Fill straight into its write
// buffer, behind a 9-byte DATA header, up to min(stream window,
// connection window, MAX_FRAME_SIZE). The Source's ready function (for a
// watch, the hub's StreamOptions.OnReady, called when the stream's queue
// goes from empty to non-empty) puts the stream on a pending list under
// its own small lock and wakes the writer; it never takes the
// connection's lock, so it may be called from within Fill. A stream out
// of window keeps its bytes in the Source (for a watch, the hub's bounded
// queue, then victim and catch-up as today) and is made ready again by
// WINDOW_UPDATE. The Source is closed when it reports the end, when the
// peer resets the stream and when the connection closes.
//
// Package sse's Handler detaches its watch streams when CanDetach reports
// that the ResponseWriter is this package's (its Source drains the hub
// stream on OnReady; one timer of the Handler sends the heartbeats of all
// of them). A detached stream whose send window stays at zero, with its
// Source ready, for Options.WriteTimeout is reset (RST_STREAM CANCEL) and
// its Source closed, as a handler's blocked write fails at its deadline:
// the socket's write deadline alone bounds only a peer that stops reading
// the whole connection.
package h2srv
