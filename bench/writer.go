package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// writer puts keys on one system; put is safe for concurrent use and
// returns the revision the write made.
type writer interface {
	put(ctx context.Context, key string, value []byte) (int64, error)
	close()
}

// restWriter writes to watchgate with PUT /v1/kv/{key} over HTTP/1.1
// keep-alive connections, one per concurrent caller.
type restWriter struct {
	base   string
	client *http.Client
}

func newRESTWriter(addr string, conns int) *restWriter {
	return newRESTWriterProto(addr, conns, false)
}

// newRESTWriterProto is newRESTWriter over cleartext HTTP/2 when h2 is
// set: every caller's request multiplexed on one connection.
func newRESTWriterProto(addr string, conns int, h2 bool) *restWriter {
	p := new(http.Protocols)
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tr := &http.Transport{
		Protocols:           p,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	return &restWriter{base: "http://" + addr + "/v1/kv/", client: &http.Client{Transport: tr}}
}

func (w *restWriter) put(ctx context.Context, key string, value []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, w.base+key, bytes.NewReader(value))
	if err != nil {
		return 0, err
	}
	req.ContentLength = int64(len(value))
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	var buf [512]byte
	n, rerr := io.ReadFull(resp.Body, buf[:])
	if rerr == nil {
		// A longer answer than expected: drain it to keep the connection.
		_, rerr = io.Copy(io.Discard, resp.Body)
	} else if errors.Is(rerr, io.ErrUnexpectedEOF) || errors.Is(rerr, io.EOF) {
		rerr = nil
	}
	resp.Body.Close()
	if rerr != nil {
		return 0, rerr
	}
	body := buf[:n]
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return 0, fmt.Errorf("PUT %s: %s: %s", key, resp.Status, body)
	}
	rev, ok := jsonInt(body, `"revision":`)
	if !ok {
		return 0, fmt.Errorf("PUT %s: no revision in %q", key, body)
	}
	return rev, nil
}

func (w *restWriter) close() { w.client.CloseIdleConnections() }

// etcdWriter writes to etcd with clientv3 Put over a few client
// connections, used in turn.
type etcdWriter struct {
	clients []*clientv3.Client
	next    atomic.Uint32
}

func newEtcdWriter(addr string, conns int) (*etcdWriter, error) {
	w := &etcdWriter{}
	for range max(conns, 1) {
		c, err := newEtcdClient(addr)
		if err != nil {
			w.close()
			return nil, err
		}
		w.clients = append(w.clients, c)
	}
	return w, nil
}

func newEtcdClient(addr string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:          []string{"http://" + addr},
		DialTimeout:        5 * time.Second,
		MaxCallSendMsgSize: 4 << 20,
		MaxCallRecvMsgSize: 64 << 20,
		Logger:             quietZap(),
	})
}

func (w *etcdWriter) put(ctx context.Context, key string, value []byte) (int64, error) {
	c := w.clients[int(w.next.Add(1))%len(w.clients)]
	resp, err := c.Put(ctx, key, string(value))
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

func (w *etcdWriter) close() {
	for _, c := range w.clients {
		c.Close()
	}
}

// jsonInt finds name (as `"name":`) in a flat JSON text and parses the
// integer after it.
func jsonInt(b []byte, name string) (int64, bool) {
	i := bytes.Index(b, []byte(name))
	if i < 0 {
		return 0, false
	}
	v, _, ok := parseInt(b[i+len(name):])
	return v, ok
}

// parseInt parses the decimal integer at the start of b and returns it
// and the bytes after it.
func parseInt(b []byte) (int64, []byte, bool) {
	var v int64
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		v = v*10 + int64(b[i]-'0')
		i++
	}
	return v, b[i:], i > 0
}

// benchValue is a value of n bytes.
func benchValue(n int) []byte {
	v := bytes.Repeat([]byte("x"), n)
	return v
}

// itoa is strconv.Itoa.
func itoa(i int) string { return strconv.Itoa(i) }
