package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// rawClient is a minimal WebSocket client written against RFC 6455
// directly: a TCP connection, no goroutine, no per-message allocation.
// Benchmarks use it so that they measure the server, and a thousand of
// them cost next to nothing in the process they share with the server.
type rawClient struct {
	conn net.Conn
	br   *bufio.Reader
	wbuf []byte
	msg  []byte
	// pending counts messages sent whose answer was read (benchmarks).
	pending int64
	hdr     [8]byte
}

// dialRaw connects with a read buffer of bufSize bytes.
func dialRaw(tb testing.TB, wsURL string, bufSize int) *rawClient {
	tb.Helper()
	u, err := url.Parse(wsURL)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		tb.Fatal(err)
	}
	req := "GET " + u.Path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: " + Subprotocol + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, bufSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Protocol") != Subprotocol {
		tb.Fatalf("handshake: %s", resp.Status)
	}
	return &rawClient{conn: conn, br: br}
}

// queue adds a text message to the write buffer, masked with the zero key
// (a client must mask; any key is allowed).
func (c *rawClient) queue(msg string) {
	c.wbuf = append(c.wbuf, 0x81) // FIN, text
	switch n := len(msg); {
	case n < 126:
		c.wbuf = append(c.wbuf, 0x80|byte(n))
	case n < 1<<16:
		c.wbuf = append(c.wbuf, 0x80|126, byte(n>>8), byte(n))
	default:
		c.wbuf = append(c.wbuf, 0x80|127)
		c.wbuf = binary.BigEndian.AppendUint64(c.wbuf, uint64(n))
	}
	c.wbuf = append(c.wbuf, 0, 0, 0, 0)
	c.wbuf = append(c.wbuf, msg...)
}

// flush writes the queued messages.
func (c *rawClient) flush() error {
	_, err := c.conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return err
}

// read returns the next data message; the slice is valid until the next
// call. Control frames other than close are skipped. It reads within the
// deadline set by the caller.
func (c *rawClient) read() ([]byte, error) {
	c.msg = c.msg[:0]
	for {
		h, err := c.br.Peek(2)
		if err != nil {
			return nil, err
		}
		h0, h1 := h[0], h[1]
		hlen, n := 2, int(h1&0x7f)
		switch n {
		case 126:
			hlen = 4
		case 127:
			hlen = 10
		}
		if hlen > 2 {
			if h, err = c.br.Peek(hlen); err != nil {
				return nil, err
			}
			if hlen == 4 {
				n = int(binary.BigEndian.Uint16(h[2:]))
			} else {
				n = int(binary.BigEndian.Uint64(h[2:]))
			}
		}
		if h1&0x80 != 0 {
			return nil, errors.New("masked frame from the server")
		}
		c.br.Discard(hlen)
		start := len(c.msg)
		c.msg = append(c.msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, c.msg[start:]); err != nil {
			return nil, err
		}
		switch op := h0 & 0x0f; {
		case op == 8:
			return nil, fmt.Errorf("closed: %x", c.msg[start:])
		case op >= 8: // ping, pong
			c.msg = c.msg[:start]
			continue
		}
		if h0&0x80 != 0 { // FIN
			return c.msg, nil
		}
	}
}

// expectPrefix reads n messages that must all start with prefix.
func (c *rawClient) expectPrefix(n int, prefix string) error {
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := range n {
		m, err := c.read()
		if err != nil {
			return fmt.Errorf("message %d of %d: %w", i, n, err)
		}
		if !bytes.HasPrefix(m, []byte(prefix)) {
			return fmt.Errorf("message %d of %d: %.200s, want %s...", i, n, m, prefix)
		}
	}
	return nil
}

func (c *rawClient) close() { c.conn.Close() }
