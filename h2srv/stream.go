package h2srv

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// stream is one request stream of a connection. Every field is guarded
// by its connection's mu.
type stream struct {
	id uint32

	// sendWindow is what the peer lets the server send on the stream;
	// recvWindow what the server still lets the peer send, and credit
	// what the handler has read but not yet returned to the peer.
	sendWindow int64
	recvWindow int64
	credit     int64

	// declaredLen is the request's Content-Length, -1 without one;
	// recvLen what DATA has carried so far.
	declaredLen int64
	recvLen     int64

	remoteClosed bool // the peer sent END_STREAM
	endSent      bool // the server sent END_STREAM
	closed       bool // gone from the connection (ended or reset)
	running      bool // the handler has not returned

	body   *requestBody // nil when the request had no body
	cancel context.CancelFunc

	// The response: the header block to send (hdrPending), then out,
	// then, once handlerDone, trailers or an empty END_STREAM.
	hdrPending  bool
	status      int
	header      http.Header
	out         []byte
	outBuf      *[]byte // from outPool, the array beneath out; nil if out is small
	handlerDone bool
	trailers    http.Header

	// src supplies the body after Detach; srcReady says it may have
	// bytes, srcFlag that ready was called and the writer has not taken
	// the stream yet.
	src      Source
	srcReady bool
	srcFlag  srcFlag

	queued  bool // on the connection's ready list
	blocked bool // waits for the connection's send window
	// stalled is when a detached stream found its send window at zero
	// with its source ready, zero otherwise: see conn.onStall.
	stalled time.Time
	wake    chan struct{} // wakes the handler waiting to write

	writeDeadline time.Time
	readDeadline  time.Time
}

func (st *stream) signal() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// hasOutput reports whether the writer has something to send now that
// does not need the send windows.
func (st *stream) hasControlOutput() bool {
	return st.hdrPending || (st.handlerDone && len(st.out) == 0 && !st.endSent)
}

// outPool holds the arrays of responses larger than keptOutBuffer: a
// stream takes one when its output grows past that, and gives it back as
// soon as the writer has sent it all, so that a streaming handler does
// not allocate a buffer a flush nor an idle stream keep a large one.
var outPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 2*responseBuffer)
	return &b
}}

// growOut moves out to the start of a pooled array of 2*responseBuffer
// bytes, the most a stream's output holds.
func (st *stream) growOut() {
	if st.outBuf == nil {
		st.outBuf = outPool.Get().(*[]byte)
	}
	b := (*st.outBuf)[:len(st.out)]
	copy(b, st.out) // may overlap: out lies within the same array
	st.out = b
}

// releaseOut drops the stream's output, giving a pooled array back.
func (st *stream) releaseOut() {
	st.out = nil
	if st.outBuf != nil {
		outPool.Put(st.outBuf)
		st.outBuf = nil
	}
}
