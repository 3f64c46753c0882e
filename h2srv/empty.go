package h2srv

import (
	"errors"
	"io"

	"golang.org/x/net/http2"
)

// maxEmptyFrames bounds the frames in a row that carry nothing and make
// no progress (CVE-2019-9518, the "empty frames flood"): DATA without
// payload or END_STREAM, HEADERS without a field or END_STREAM,
// CONTINUATION without payload or END_HEADERS, and frames the Framer
// rejects as malformed stream errors (a zero WINDOW_UPDATE increment).
// DATA with payload and a request that opens a stream start the count
// again; past it the connection gets GOAWAY ENHANCE_YOUR_CALM.
const maxEmptyFrames = 100

// errEmptyFrames is the frameSniffer's read error past maxEmptyFrames.
var errEmptyFrames = errors.New("h2srv: flood of empty frames")

// emptyFrames counts the frames in a row that carried nothing; it is
// owned by the connection's reader.
type emptyFrames struct{ n int }

// note counts a frame that carried nothing; it returns a connection error
// past maxEmptyFrames.
func (e *emptyFrames) note() error {
	e.n++
	if e.n > maxEmptyFrames {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// progress starts the count again after a frame that did work.
func (e *emptyFrames) progress() { e.n = 0 }

// frameSniffer is the Framer's reader: it follows the frame boundaries in
// the bytes it passes on, to count the empty CONTINUATION frames that
// the Framer reads within one ReadFrame (they reach the server only as
// part of a whole header block). Past maxEmptyFrames its next Read
// fails, and so does ReadFrame.
type frameSniffer struct {
	r      io.Reader
	empty  *emptyFrames
	hdr    [frameHeaderLen]byte
	nhdr   int    // bytes of hdr seen
	remain uint32 // payload bytes of the current frame still to pass
	err    error
}

func (s *frameSniffer) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.scan(p[:n])
	return n, err
}

// scan follows the frames in b.
func (s *frameSniffer) scan(b []byte) {
	for len(b) > 0 {
		if s.remain > 0 {
			k := min(uint32(len(b)), s.remain)
			b = b[k:]
			s.remain -= k
			continue
		}
		k := copy(s.hdr[s.nhdr:], b)
		b = b[k:]
		s.nhdr += k
		if s.nhdr < frameHeaderLen {
			return
		}
		s.nhdr = 0
		s.remain = uint32(s.hdr[0])<<16 | uint32(s.hdr[1])<<8 | uint32(s.hdr[2])
		if http2.FrameType(s.hdr[3]) == http2.FrameContinuation && s.remain == 0 &&
			!http2.Flags(s.hdr[4]).Has(http2.FlagContinuationEndHeaders) && s.empty.note() != nil {
			s.err = errEmptyFrames
		}
	}
}
