package h2srv

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestH2Spec runs the h2spec conformance tool, whose binary H2SPEC names,
// against the server over cleartext HTTP/2 and over TLS:
//
//	GOBIN=/tmp/h2spec go install github.com/summerwind/h2spec/cmd/h2spec@latest
//	H2SPEC=/tmp/h2spec/h2spec go test -run H2Spec -v ./h2srv/
func TestH2Spec(t *testing.T) {
	bin := os.Getenv("H2SPEC")
	if bin == "" {
		t.Skip("H2SPEC names no h2spec binary")
	}
	for _, useTLS := range []bool{false, true} {
		name := "cleartext"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			// h2spec's test 4.2/3 assumes the default SETTINGS_MAX_FRAME_SIZE.
			ts := newTestServer(t, echoHandler(), Options{MaxReadFrameSize: 16384}, useTLS)
			_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())
			args := []string{"-p", port, "-o", "3"}
			if useTLS {
				args = append(args, "-t", "-k")
			}
			cmd := exec.Command(bin, args...)
			done := make(chan struct{})
			var out []byte
			var err error
			go func() {
				out, err = cmd.CombinedOutput()
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				cmd.Process.Kill()
				<-done
			}
			failed := map[string]bool{}
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "tests,") {
					t.Log(strings.TrimSpace(l))
				}
				if _, title, ok := strings.Cut(l, "× "); ok {
					failed[strings.TrimSpace(title)] = true
				}
			}
			// Over cleartext, net/http reads the preface before the handoff
			// and answers a bad one as an HTTP/1.1 request.
			if !useTLS {
				delete(failed, "2: Sends invalid connection preface")
			}
			for title := range failed {
				t.Errorf("h2spec failed: %s", title)
			}
			if err != nil && len(failed) == 0 && useTLS {
				t.Errorf("h2spec: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "tests,") {
				t.Errorf("h2spec ran no tests: %v\n%s", err, out)
			}
		})
	}
}
