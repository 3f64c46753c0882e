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
// stream's receive window, and up to the connection's (1 MiB by default,
// as in net/http) for all of them. The writer owns the socket's writes, the
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
// handlers, all ending in GOAWAY with ENHANCE_YOUR_CALM; and more:
//
//   - more than 100 frames in a row that carry nothing (DATA without
//     payload or END_STREAM, HEADERS without a field, CONTINUATION
//     without payload or END_HEADERS, a zero WINDOW_UPDATE increment;
//     CVE-2019-9518) get ENHANCE_YOUR_CALM. Empty CONTINUATION frames,
//     which the Framer reads within one ReadFrame, are counted by a
//     reader beneath it that follows the frame boundaries;
//   - a connection whose send window stays at zero for WriteTimeout while
//     streams have bytes ready gets ENHANCE_YOUR_CALM (RFC 9113 section
//     10.5): a peer that opens the streams' windows but never the
//     connection's would otherwise hold them all with no write in
//     progress, so with no deadline running;
//   - the server's SETTINGS not acknowledged within PingTimeout end the
//     connection with SETTINGS_TIMEOUT (section 6.5.3; net/http has no
//     such timer), and an acknowledgement of SETTINGS never sent is a
//     PROTOCOL_ERROR (as in net/http);
//   - over TLS, a version older than 1.2, or TLS 1.2 with a cipher suite
//     of appendix A (all but ECDHE with AES-GCM or ChaCha20-Poly1305
//     among those crypto/tls has) get INADEQUATE_SECURITY as the only
//     frame (section 9.2), as in net/http, unless
//     Options.PermitProhibitedCipherSuites (the http.Server's
//     HTTP2.PermitProhibitedCipherSuites) lets the suites through.
//
// Graceful shutdown (Shutdown, the http.Server's Shutdown, the idle
// timeout) takes two steps, so that a request crossing the GOAWAY is
// served rather than ignored (section 6.8): GOAWAY NO_ERROR with the last
// stream 2^31-1 and a PING, then, when the PING is acknowledged or after
// a second, GOAWAY NO_ERROR with the last stream the server took. The
// peer's own GOAWAY gets the final one at once.
//
// The http.Server's HTTP2 settings MaxConcurrentStreams,
// MaxReadFrameSize, MaxReceiveBufferPerStream and PerConnection,
// SendPingTimeout, PingTimeout, WriteByteTimeout and
// PermitProhibitedCipherSuites, and its MaxHeaderBytes and IdleTimeout,
// apply where Options leaves a field zero; its CountError is told of
// every connection and stream error the server sends ("conn_" or
// "stream_" and the code in lower case, "conn_ping_timeout").
// MaxDecoderHeaderTableSize and MaxEncoderHeaderTableSize are not used
// (the HPACK tables are 4 KiB). GODEBUG=http2server=0 does not turn this server off: net/http
// keeps an "h2" entry of TLSNextProto; leave TLSNextProto unset (or drop
// HTTP2 from the http.Server's Protocols) to serve HTTP/1.1 only.
//
// Response bodies past 1 KiB a stream are kept in pooled 32 KiB arrays,
// given back as soon as the writer has sent them; the ready list keeps
// its array across rounds.
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
// Informational (1xx) responses (so 100-continue), server push,
// extended CONNECT (WebSocket over HTTP/2) and http.Hijacker are not
// supported.
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
// of them). A stream whose send window stays at zero, with bytes to send
// (a handler's output, or a detached stream's Source ready), for
// Options.WriteTimeout is reset (RST_STREAM CANCEL): the handler's Write
// fails, a detached stream's Source is closed, as a blocked write fails
// at its deadline. The socket's write deadline alone bounds only a peer
// that stops reading the whole connection; the connection's own window
// is watched too (see above).
//
// # Not done
//
//   - 1xx responses (100-continue), extended CONNECT and server push;
//   - the HPACK table sizes of HTTP2Config;
//   - PRIORITY and unknown frames are read and ignored without a limit of
//     their own (they make the server do no work; the control-frame and
//     empty-frame bounds do not count them);
//   - a Source's Fill and Close, and so what package sse does in them
//     (OnSend, its error log), run on the connection's writer under its
//     lock.
package h2srv
