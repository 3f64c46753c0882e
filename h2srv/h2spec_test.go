package h2srv

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestH2Spec runs the h2spec conformance tool against the server over
// cleartext HTTP/2 and over TLS. The binary is H2SPEC, else the one
// `make deps` installs in .tools, else h2spec on the PATH; the test fails
// without one, as conformance is not optional:
//
//	GOBIN=$PWD/.tools go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible
func TestH2Spec(t *testing.T) {
	bin := os.Getenv("H2SPEC")
	if bin == "" {
		if _, err := os.Stat("../.tools/h2spec"); err == nil {
			bin = "../.tools/h2spec"
		} else if p, err := exec.LookPath("h2spec"); err == nil {
			bin = p
		}
	}
	if bin == "" {
		t.Fatal("no h2spec binary: run `make deps`, or set H2SPEC")
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
