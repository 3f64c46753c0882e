package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// leanWriter writes to watchgate with PUT /v1/kv/{key} over HTTP/1.1
// keep-alive connections, one per concurrent caller, with a minimal
// client: one write(2) a request, the response read from a buffer. It
// measures the server as wrk would: net/http's client costs about as much
// CPU a request as the server, which on two shared cores halves what the
// server can be shown to do. Every response is still checked: status 200
// or 201 and the revision it reports.
type leanWriter struct {
	addr string
	mu   sync.Mutex
	idle []*leanConn
}

// leanConn is one keep-alive connection and its buffers.
type leanConn struct {
	c   net.Conn
	r   *bufio.Reader
	req []byte
}

func newLeanWriter(addr string) *leanWriter { return &leanWriter{addr: addr} }

func (w *leanWriter) get(ctx context.Context) (*leanConn, error) {
	w.mu.Lock()
	if n := len(w.idle); n > 0 {
		lc := w.idle[n-1]
		w.idle = w.idle[:n-1]
		w.mu.Unlock()
		return lc, nil
	}
	w.mu.Unlock()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", w.addr)
	if err != nil {
		return nil, err
	}
	return &leanConn{c: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

func (w *leanWriter) put(ctx context.Context, key string, value []byte) (int64, error) {
	lc, err := w.get(ctx)
	if err != nil {
		return 0, err
	}
	rev, err := lc.put(ctx, w.addr, key, value)
	if err != nil {
		lc.c.Close()
		return 0, fmt.Errorf("PUT %s: %w", key, err)
	}
	w.mu.Lock()
	w.idle = append(w.idle, lc)
	w.mu.Unlock()
	return rev, nil
}

// put sends one request and reads its response; on any error the
// connection is not reusable.
func (lc *leanConn) put(ctx context.Context, host, key string, value []byte) (int64, error) {
	if dl, ok := ctx.Deadline(); ok {
		lc.c.SetDeadline(dl)
	} else {
		lc.c.SetDeadline(time.Now().Add(time.Minute))
	}
	b := lc.req[:0]
	b = append(b, "PUT /v1/kv/"...)
	b = append(b, key...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nContent-Type: application/octet-stream\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(value)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, value...)
	lc.req = b
	if _, err := lc.c.Write(b); err != nil {
		return 0, err
	}
	status, body, err := readResponse(lc.r)
	if err != nil {
		return 0, err
	}
	if status != 200 && status != 201 {
		return 0, fmt.Errorf("status %d: %s", status, body)
	}
	rev, ok := jsonInt(body, `"revision":`)
	if !ok {
		return 0, fmt.Errorf("no revision in %q", body)
	}
	return rev, nil
}

// readResponse reads one HTTP/1.1 response with a Content-Length body (all
// of watchgate's answers to PUT have one) and returns its status and body;
// the body is valid until the next read from r.
func readResponse(r *bufio.Reader) (int, []byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil || length < 0 {
				return 0, nil, fmt.Errorf("bad Content-Length %q", value)
			}
		}
	}
	if length < 0 {
		return 0, nil, errors.New("response without Content-Length")
	}
	if length > r.Size() {
		// Longer than the buffer: not a PUT's answer; read it whole.
		body := make([]byte, length)
		_, err := io.ReadFull(r, body)
		return status, body, err
	}
	body, err := r.Peek(length)
	if err != nil {
		return 0, nil, err
	}
	r.Discard(length)
	return status, body, nil
}

func (w *leanWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, lc := range w.idle {
		lc.c.Close()
	}
	w.idle = nil
}
