package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/watchgate/watchgate/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// process is a running watchgate binary.
type process struct {
	cmd    *exec.Cmd
	base   string
	logs   *testbin.LogBuffer
	exited chan struct{}
	err    error // of Wait, after exited is closed
}

// startBinary runs the binary on a loopback port with its store in dir,
// configured through the environment and args, and waits until it listens.
func startBinary(t *testing.T, dir string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(testbin.Build(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WATCHGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "WATCHGATE_ADDR=127.0.0.1:0", "WATCHGATE_DATA="+dir, "WATCHGATE_LOG_LEVEL=info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, logs: &testbin.LogBuffer{}, exited: make(chan struct{})}
	addr := make(chan string, 1)
	logsDone := make(chan struct{})
	go func() {
		scanLogs(stderr, addr, p.logs)
		close(logsDone)
	}()
	go func() {
		<-logsDone
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	select {
	case a, ok := <-addr:
		if !ok {
			<-p.exited
			t.Fatalf("the binary exited before listening: %v\n%s", p.err, p.logs.String())
		}
		p.base = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatalf("the binary did not start:\n%s", p.logs.String())
	}
	return p
}

// wait waits for the process to exit, at most d.
func (p *process) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		t.Fatalf("the binary did not exit in %v:\n%s", d, p.logs.String())
		return nil
	}
}

// TestBinaryServesAndStops runs the built binary as a user would and stops
// it with SIGTERM.
func TestBinaryServesAndStops(t *testing.T) {
	p := startBinary(t, t.TempDir())
	client := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/hello", strings.NewReader("world"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	resp, err = client.Get(p.base + "/v1/kv/hello")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "world" || resp.Header.Get("X-Revision") != "2" {
		t.Errorf("GET: %q, X-Revision %s", b, resp.Header.Get("X-Revision"))
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
	}
	for _, msg := range []string{`"message":"shutting down"`, `"message":"store closed"`, `"message":"stopped"`} {
		if !strings.Contains(p.logs.String(), msg) {
			t.Errorf("log lacks %s:\n%s", msg, p.logs.String())
		}
	}
}

// TestRestartKeepsAcknowledgedWrites writes concurrently over HTTP, kills
// the server with SIGKILL in the middle, restarts it on the same data
// directory and checks that every write that was acknowledged (2xx) is
// there with its value.
func TestRestartKeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	p := startBinary(t, dir)

	const writers = 16
	tr := &http.Transport{MaxIdleConnsPerHost: writers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		count atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w/%02d/%06d", g, i)
				val := fmt.Sprintf("value-%d-%d", g, i)
				req, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/"+key, strings.NewReader(val))
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
					count.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for count.Load() < 400 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 10*time.Second)
	close(stop)
	wg.Wait()
	if len(acked) < 100 {
		t.Fatalf("only %d writes were acknowledged before the kill", len(acked))
	}
	tr.CloseIdleConnections()

	q := startBinary(t, dir)
	var missing []string
	for key, val := range acked {
		resp, err := client.Get(q.base + "/v1/kv/" + key)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != val {
			missing = append(missing, fmt.Sprintf("%s: %d %q", key, resp.StatusCode, b))
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged writes lost after SIGKILL, e.g. %v", len(missing), len(acked), missing[:min(5, len(missing))])
	}
	resp, err := client.Get(q.base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Revision int64 `json:"revision"`
		Keys     int64 `json:"keys"`
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	// Every key was written once, so keys = revisions used; writes in
	// flight at the kill may have landed without their acknowledgement.
	if st.Keys < int64(len(acked)) || st.Revision != st.Keys+1 {
		t.Errorf("after restart: %d keys at revision %d, want >= %d keys at revision keys+1", st.Keys, st.Revision, len(acked))
	}
	t.Logf("%d acknowledged writes survived SIGKILL; %d keys on disk", len(acked), st.Keys)
	if err := q.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := q.wait(t, 20*time.Second); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// curlStream runs curl -N on url with extra arguments and sends every line
// it prints; the process is killed when the test ends.
func curlStream(t *testing.T, url string, args ...string) <-chan string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (make deps installs it): %v", err)
	}
	cmd := exec.Command(curl, append(append([]string{"-sN", "--include"}, args...), url)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string, 256)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	return lines
}

// waitLine reads lines until one equals want, failing after 15 seconds; it
// returns the lines read before it.
func waitLine(t *testing.T, lines <-chan string, want string) []string {
	t.Helper()
	var seen []string
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended before %q; got %q", want, seen)
			}
			if l == want {
				return seen
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no line %q within 15s; got %q", want, seen)
		}
	}
}

// TestBinaryWatches runs the built binary and watches a prefix with curl
// -N over HTTP/1.1 and over cleartext HTTP/2 (prior knowledge), and over a
// WebSocket: each must receive the PUT that follows, with its revision as
// the resume id. Then SIGTERM must close the socket with 1001 (going away)
// and end the SSE streams.
func TestBinaryWatches(t *testing.T) {
	p := startBinary(t, t.TempDir())
	h1 := curlStream(t, p.base+"/v1/watch/app/?prefix=true", "--http1.1")
	h2 := curlStream(t, p.base+"/v1/watch/app/?prefix=true", "--http2-prior-knowledge")
	for name, lines := range map[string]<-chan string{"HTTP/1.1": h1, "HTTP/2": h2} {
		head := waitLine(t, lines, "")
		if len(head) == 0 || !strings.HasPrefix(head[0], "HTTP/") || !strings.Contains(head[0], " 200") ||
			(name == "HTTP/2") != strings.HasPrefix(head[0], "HTTP/2") {
			t.Fatalf("%s: response head %q", name, head)
		}
		if !slices.Contains(head, "content-type: text/event-stream") && !slices.Contains(head, "Content-Type: text/event-stream") {
			t.Errorf("%s: no text/event-stream in %q", name, head)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sock, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.base, "http")+"/v1/ws",
		&websocket.DialOptions{Subprotocols: []string{"watchgate.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.CloseNow()
	if err := sock.Write(ctx, websocket.MessageText, []byte(`{"op":"watch","id":"w","key":"app/","prefix":true}`)); err != nil {
		t.Fatal(err)
	}
	readWS := func() map[string]any {
		t.Helper()
		for {
			_, b, err := sock.Read(ctx)
			if err != nil {
				t.Fatalf("websocket read: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if m["type"] != "progress" {
				return m
			}
		}
	}
	if m := readWS(); m["type"] != "created" || m["id"] != "w" {
		t.Fatalf("first message %v, want created", m)
	}

	client := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodPut, p.base+"/v1/kv/app/x", strings.NewReader("on"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rev := resp.Header.Get("X-Revision")
	if resp.StatusCode != http.StatusCreated || rev == "" {
		t.Fatalf("PUT: %d, X-Revision %q", resp.StatusCode, rev)
	}
	for name, lines := range map[string]<-chan string{"HTTP/1.1": h1, "HTTP/2": h2} {
		waitLine(t, lines, "id: "+rev)
		if l := <-lines; l != "event: put" {
			t.Errorf("%s: %q after the id, want event: put", name, l)
		}
		want := `data: {"key":"app/x","value":"on","create_revision":` + rev + `,"mod_revision":` + rev + `,"version":1}`
		if l := <-lines; l != want {
			t.Errorf("%s: %q, want %q", name, l, want)
		}
	}
	m := readWS()
	evs, _ := m["events"].([]any)
	if m["type"] != "events" || fmt.Sprint(m["revision"]) != rev || len(evs) != 1 {
		t.Fatalf("websocket message %v, want the events of revision %s", m, rev)
	}

	// SIGTERM: the socket is closed with 1001, the SSE streams end.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _, err = sock.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway {
		t.Errorf("socket ended with %v (code %d), want 1001", err, code)
	}
	for name, lines := range map[string]<-chan string{"HTTP/1.1": h1, "HTTP/2": h2} {
		timeout := time.After(15 * time.Second)
	drain:
		for {
			select {
			case _, ok := <-lines:
				if !ok {
					break drain
				}
			case <-timeout:
				t.Errorf("%s: the stream did not end at shutdown", name)
				break drain
			}
		}
	}
	if err := p.wait(t, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
	}
	logs := p.logs.String()
	order := []string{`"message":"shutting down"`, `"message":"watch hub closed"`, `"message":"store closed"`, `"message":"stopped"`}
	last := -1
	for _, msg := range order {
		i := strings.Index(logs, msg)
		if i <= last {
			t.Errorf("log lacks %s after the previous step (order %v):\n%s", msg, order, logs)
		}
		last = i
	}
}
