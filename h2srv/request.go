package h2srv

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http2"
)

// processHeaders opens a stream for a request, or takes a request's
// trailers.
func (c *conn) processHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if len(f.Fields) == 0 && !f.Truncated && !f.StreamEnded() {
		if err := c.empty.note(); err != nil {
			return err
		}
	}
	if id%2 != 1 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if st := c.streams[id]; st != nil {
		return c.processTrailers(st, f)
	}
	if id <= c.lastStreamID {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if c.goAwaySent {
		// Past the GOAWAY's last stream: ignored (RFC 9113 section 6.8).
		return nil
	}
	c.lastStreamID = id
	o := c.opts
	if len(c.streams) >= int(o.MaxConcurrentStreams) {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	if c.running >= 4*int(o.MaxConcurrentStreams) {
		// Handlers of reset streams that do not return.
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	handler := c.handler
	req, err := c.newRequest(f)
	if err != nil {
		return err
	}
	if f.Truncated {
		handler = http.HandlerFunc(headerListTooLong)
	}
	st := &stream{id: id, sendWindow: c.peerWindow, recvWindow: int64(o.StreamWindow),
		declaredLen: req.ContentLength, running: true, wake: make(chan struct{}, 1)}
	if f.StreamEnded() {
		st.remoteClosed = true
		if req.ContentLength > 0 {
			return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
		}
		req.ContentLength = 0
		req.Body = http.NoBody
	} else {
		st.body = &requestBody{c: c, st: st, wait: make(chan struct{}, 1), trailer: req.Trailer}
		req.Body = st.body
	}
	ctx, cancel := context.WithCancel(c.base)
	st.cancel = cancel
	req = req.WithContext(ctx)
	c.streams[id] = st
	c.empty.progress()
	c.running++
	c.srv.handlers.Add(1)
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	go c.runHandler(st, req, handler)
	return nil
}

func headerListTooLong(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "request header fields too large", http.StatusRequestHeaderFieldsTooLarge)
}

func (c *conn) processTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	if st.remoteClosed {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeStreamClosed}
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	if st.body != nil && st.body.trailer != nil {
		for _, hf := range f.RegularFields() {
			k := http.CanonicalHeaderKey(hf.Name)
			if _, ok := st.body.trailer[k]; ok {
				st.body.trailer[k] = append(st.body.trailer[k], hf.Value)
			}
		}
	}
	return c.endRemoteLocked(st)
}

// endRemoteLocked handles the peer's END_STREAM.
func (c *conn) endRemoteLocked(st *stream) error {
	if st.declaredLen >= 0 && st.recvLen != st.declaredLen {
		return http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	}
	st.remoteClosed = true
	if st.body != nil {
		st.body.endLocked()
	}
	if st.endSent {
		c.closeStreamLocked(st, errConnClosed)
	}
	return nil
}

// connectionHeaders are the fields HTTP/2 forbids (RFC 9113 section
// 8.2.2).
var connectionHeaders = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"transfer-encoding": true, "upgrade": true,
}

// newRequest builds the request of a HEADERS frame; a malformed request
// is a stream error PROTOCOL_ERROR.
func (c *conn) newRequest(f *http2.MetaHeadersFrame) (*http.Request, error) {
	bad := http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
	var method, path, scheme, authority string
	for _, hf := range f.PseudoFields() {
		var p *string
		switch hf.Name {
		case ":method":
			p = &method
		case ":path":
			p = &path
		case ":scheme":
			p = &scheme
		case ":authority":
			p = &authority
		default:
			return nil, bad
		}
		if *p != "" {
			return nil, bad
		}
		*p = hf.Value
	}
	if method == "" {
		return nil, bad
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, bad
		}
	} else if path == "" || scheme == "" {
		return nil, bad
	}
	header := make(http.Header, len(f.Fields))
	var cookies []string
	for _, hf := range f.RegularFields() {
		if connectionHeaders[hf.Name] || (hf.Name == "te" && hf.Value != "trailers") {
			return nil, bad
		}
		if hf.Name == "cookie" {
			cookies = append(cookies, hf.Value)
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		header[k] = append(header[k], hf.Value)
	}
	if len(cookies) > 0 {
		header.Set("Cookie", strings.Join(cookies, "; "))
	}
	if authority == "" {
		authority = header.Get("Host")
	}
	header.Del("Host")
	var u *url.URL
	var err error
	switch {
	case method == http.MethodConnect:
		u = &url.URL{Host: authority}
	case method == http.MethodOptions && path == "*":
		u = &url.URL{Path: "*"}
	default:
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, bad
		}
	}
	cl := int64(-1)
	if vv := header["Content-Length"]; len(vv) > 0 {
		if len(vv) > 1 {
			return nil, bad
		}
		n, err := strconv.ParseUint(vv[0], 10, 63)
		if err != nil {
			return nil, bad
		}
		cl = int64(n)
	}
	req := &http.Request{
		Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2,
		Header: header, Host: authority, RequestURI: path,
		RemoteAddr: c.remote, TLS: c.tlsState, ContentLength: cl,
	}
	if vv := header["Trailer"]; len(vv) > 0 {
		req.Trailer = http.Header{}
		for _, v := range vv {
			for k := range strings.SplitSeq(v, ",") {
				if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
					req.Trailer[k] = nil
				}
			}
		}
	}
	return req, nil
}

// processData feeds a DATA frame to its stream's body, within the
// receive windows.
func (c *conn) processData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length)
	if len(f.Data()) > 0 {
		c.empty.progress()
	} else if !f.StreamEnded() {
		if err := c.empty.note(); err != nil {
			return err
		}
	}
	if n > c.recvWindow {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	st := c.streams[id]
	if st == nil || st.remoteClosed {
		c.creditLocked(nil, n)
		if id > c.lastStreamID {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if n > st.recvWindow {
		c.creditLocked(nil, n)
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	st.recvWindow -= n
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		c.creditLocked(st, pad)
	}
	st.recvLen += int64(len(data))
	if st.declaredLen >= 0 && st.recvLen > st.declaredLen {
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if len(data) > 0 {
		if !st.body.writeLocked(data) {
			c.creditLocked(st, int64(len(data)))
		}
	}
	if f.StreamEnded() {
		return c.endRemoteLocked(st)
	}
	return nil
}

// creditLocked returns n consumed bytes to the peer's send windows, of
// the connection and of st (nil: the connection only), in WINDOW_UPDATE
// frames once half a window has been consumed.
func (c *conn) creditLocked(st *stream, n int64) {
	o := c.opts
	c.connCredit += n
	if c.connCredit >= min(int64(o.ConnWindow)/2, 4<<20) {
		c.recvWindow += c.connCredit
		_ = c.queueCtrl(ctrlFrame{typ: http2.FrameWindowUpdate, val: uint32(c.connCredit)})
		c.connCredit = 0
	}
	if st == nil || st.closed || st.remoteClosed {
		return
	}
	st.credit += n
	if st.credit >= int64(o.StreamWindow)/2 {
		st.recvWindow += st.credit
		_ = c.queueCtrl(ctrlFrame{typ: http2.FrameWindowUpdate, id: st.id, val: uint32(st.credit)})
		st.credit = 0
	}
}
