package h2srv_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/watchgate/watchgate/h2srv"
	"github.com/watchgate/watchgate/httpapi"
	"github.com/watchgate/watchgate/kv"
	"github.com/watchgate/watchgate/watchhub"
)

// An http.Server keeps HTTP/1.1 (and so the WebSocket) and hands every
// HTTP/2 connection, cleartext with prior knowledge here, to the Server,
// which serves the whole API over it: a watch over Server-Sent Events and
// a write on one connection.
func Example() {
	dir, err := os.MkdirTemp("", "h2srv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := kv.Open(dir, kv.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	hub, err := watchhub.New(store, watchhub.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	api, err := httpapi.New(store, httpapi.Options{Hub: hub, TempDir: dir})
	if err != nil {
		log.Fatal(err)
	}

	h2 := h2srv.New(nil, h2srv.Options{MaxConcurrentStreams: 1000})
	srv := &http.Server{Handler: api, Protocols: new(http.Protocols), TLSNextProto: h2.TLSNextProto()}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	srv.RegisterOnShutdown(api.Shutdown)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	api.SetReady(true)

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: tr}
	base := "http://" + ln.Addr().String()

	watch, err := client.Get(base + "/v1/watch/config/a")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(watch.Proto, watch.StatusCode, watch.Header.Get("Content-Type"))

	req, _ := http.NewRequest(http.MethodPut, base+"/v1/kv/config/a", strings.NewReader("on"))
	put, err := client.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	put.Body.Close()
	fmt.Println(put.Proto, put.StatusCode)

	events := bufio.NewScanner(watch.Body)
	for events.Scan() {
		if line := events.Text(); strings.HasPrefix(line, "event:") || strings.HasPrefix(line, "data:") {
			fmt.Println(line)
			if strings.HasPrefix(line, "data:") {
				break
			}
		}
	}
	watch.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr.CloseIdleConnections()
	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	if err := h2.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	if err := api.WaitStreams(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// HTTP/2.0 200 text/event-stream
	// HTTP/2.0 201
	// event: put
	// data: {"key":"config/a","value":"on","create_revision":2,"mod_revision":2,"version":1}
}
