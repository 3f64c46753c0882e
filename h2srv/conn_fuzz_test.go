package h2srv

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzConn feeds arbitrary bytes after the preface and an empty
// SETTINGS: the connection must end or keep serving, never panic or
// hang.
func FuzzConn(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/echo"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	fr.WriteData(1, true, []byte("hello"))
	f.Add(bytes.Clone(seed.Bytes()))
	fr.WriteWindowUpdate(0, 1000)
	fr.WriteRSTStream(1, http2.ErrCodeCancel)
	fr.WritePing(false, [8]byte{1})
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	f.Add(bytes.Clone(seed.Bytes()))
	fr.WriteContinuation(3, false, []byte{0x82})
	f.Add(bytes.Clone(seed.Bytes()))
	f.Add([]byte{0, 0, 0, 4, 1, 0, 0, 0, 0})
	f.Add([]byte{})
	// Floods of empty frames, a zero WINDOW_UPDATE, the acknowledgement
	// of a shutdown's PING.
	seed.Reset()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes()})
	for range 3 {
		fr.WriteContinuation(1, false, nil)
	}
	fr.WriteContinuation(1, true, nil)
	for range 3 {
		fr.WriteData(1, false, nil)
	}
	seed.Write([]byte{0, 0, 4, byte(http2.FrameWindowUpdate), 0, 0, 0, 0, 1, 0, 0, 0, 0})
	fr.WritePing(true, noticePing)
	f.Add(bytes.Clone(seed.Bytes()))

	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(echoHandler(), Options{MaxConcurrentStreams: 10})
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(a, nil)
		}()
		go io.Copy(io.Discard, b)
		b.SetWriteDeadline(time.Now().Add(5 * time.Second))
		b.Write([]byte(clientPreface))
		http2.NewFramer(b, nil).WriteSettings()
		b.Write(data)
		// Let the server act on the input, then hang up.
		time.Sleep(time.Millisecond)
		b.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn does not return after the peer closed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}
