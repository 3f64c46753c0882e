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
// goroutine with its stack and buffers (see "Watch streams" below).
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
// # Watch streams (not built yet)
//
// The next step is a stream with no goroutine: a watch request is
// recognised on the reader (a Hook in Options decides from the request
// whether it is a watch and opens the hub's stream), and the stream
// struct keeps the hub stream, its resume position and its send window:
//
//	// A WatchSource is a stream of pre-encoded event bytes (the hub's
//	// watchhub.Stream behind an SSE encoder).
//	type WatchSource interface {
//		// Next appends the next events' wire bytes to dst, at most max
//		// bytes of them, and reports whether the source has ended.
//		Next(dst []byte, max int) (out []byte, ended bool)
//		// Close releases the hub's stream.
//		Close()
//	}
//
//	// OpenWatch decides, on the reader, whether r is a watch: it returns
//	// the response's status and header and the source, or ok false to
//	// run the ordinary handler.
//	OpenWatch func(r *http.Request, ready func()) (status int, h http.Header, src WatchSource, ok bool)
//
// The hub calls ready (StreamOptions.OnReady, a hook called when the
// stream's queue goes from empty to non-empty) to put the stream on the
// connection's ready list and wake the writer, exactly as a flushing
// handler does now through readyLocked. The writer, for a ready watch
// stream, calls Next straight into its write buffer behind a 9-byte DATA
// header, up to min(stream window, connection window, MAX_FRAME_SIZE):
// no copy into a per-stream buffer and no goroutine. A stream out of
// window keeps its events in the hub's bounded queue (then victim and
// catch-up, as today) and is put back on the ready list by WINDOW_UPDATE.
// Heartbeats and bookmarks come from one timer wheel per connection; a
// stream whose window stays at zero for the write timeout is reset.
package h2srv
