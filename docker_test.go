package main

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/watchgate/watchgate/internal/testbin"
)

// dockerInstr is one instruction of a Dockerfile: its keyword and the rest
// of its (joined) line.
type dockerInstr struct {
	cmd, args string
}

// dockerStage is one FROM ... [AS name] stage.
type dockerStage struct {
	from, name string
	instrs     []dockerInstr
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining
// continued lines and dropping comments.
func parseDockerfile(t *testing.T, text string) []dockerStage {
	t.Helper()
	var stages []dockerStage
	var line strings.Builder
	flush := func() {
		l := strings.TrimSpace(line.String())
		line.Reset()
		if l == "" {
			return
		}
		cmd, args, _ := strings.Cut(l, " ")
		cmd = strings.ToUpper(cmd)
		args = strings.TrimSpace(args)
		if cmd == "FROM" {
			f := strings.Fields(args)
			st := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", cmd)
		}
		st := &stages[len(stages)-1]
		st.instrs = append(st.instrs, dockerInstr{cmd, args})
	}
	for _, raw := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(raw)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			line.WriteString(cont + " ")
			continue
		}
		line.WriteString(trimmed)
		flush()
	}
	flush()
	return stages
}

// get returns the arguments of the stage's instructions cmd.
func (s dockerStage) get(cmd string) []string {
	var out []string
	for _, in := range s.instrs {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// dockerEnv parses ENV lines (KEY=VALUE pairs, as this Dockerfile writes
// them).
func dockerEnv(lines []string) map[string]string {
	env := map[string]string{}
	for _, l := range lines {
		for _, kv := range strings.Fields(l) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = strings.Trim(v, `"`)
			}
		}
	}
	return env
}

// TestDockerfile checks the Dockerfile's stages and runs what they run, as
// far as possible without a Docker engine: the build stage's commands
// (with /out in a temporary directory) must make a static binary, and the
// final stage's HEALTHCHECK command, run with the final stage's
// environment, must pass against that binary serving and fail once it
// stopped.
func TestDockerfile(t *testing.T) {
	text, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(t, string(text))
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a build stage and a final one", len(stages))
	}
	build, final := stages[0], stages[1]

	// The builder is golang:1.26.11 or newer.
	m := regexp.MustCompile(`^golang:(\d+)\.(\d+)\.(\d+)(-[a-z0-9]+)?$`).FindStringSubmatch(build.from)
	if m == nil || build.name == "" {
		t.Fatalf("build stage FROM %q AS %q: want golang:X.Y.Z AS name", build.from, build.name)
	}
	v := [3]int{}
	for i := range v {
		v[i], _ = strconv.Atoi(m[i+1])
	}
	if v[0] != 1 || v[1] < 26 || (v[1] == 26 && v[2] < 11) {
		t.Errorf("builder %s: want go 1.26.11 or newer", build.from)
	}
	buildEnv := dockerEnv(build.get("ENV"))
	if buildEnv["CGO_ENABLED"] != "0" {
		t.Errorf("build stage ENV CGO_ENABLED=%q, want 0 (a static binary)", buildEnv["CGO_ENABLED"])
	}

	// The final stage: distroless static (or scratch), non-root, /data.
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s: want distroless static or scratch", final.from)
	}
	if u := final.get("USER"); len(u) != 1 || strings.HasPrefix(u[0], "0") || strings.HasPrefix(u[0], "root") {
		t.Errorf("final stage USER %v: want a non-root user", u)
	}
	if vol := final.get("VOLUME"); len(vol) != 1 || vol[0] != "/data" {
		t.Errorf("VOLUME %v, want /data", vol)
	}
	finalEnv := dockerEnv(final.get("ENV"))
	if finalEnv["WATCHGATE_DATA"] != "/data" {
		t.Errorf("final stage ENV WATCHGATE_DATA=%q, want /data", finalEnv["WATCHGATE_DATA"])
	}
	var entrypoint, cmd, health []string
	jsonArgs := func(s string) []string {
		var a []string
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			t.Fatalf("%q is not an exec-form JSON array: %v", s, err)
		}
		return a
	}
	if e := final.get("ENTRYPOINT"); len(e) == 1 {
		entrypoint = jsonArgs(e[0])
	}
	if c := final.get("CMD"); len(c) == 1 {
		cmd = jsonArgs(c[0])
	}
	if h := final.get("HEALTHCHECK"); len(h) == 1 {
		_, after, ok := strings.Cut(h[0], "CMD ")
		if !ok {
			t.Fatalf("HEALTHCHECK %q without CMD", h[0])
		}
		health = jsonArgs(after)
	}
	if len(entrypoint) != 1 || strings.Join(cmd, " ") != "--data /data" {
		t.Errorf("ENTRYPOINT %q CMD %q: want the binary with --data /data", entrypoint, cmd)
	}
	if len(health) != 2 || health[0] != entrypoint[0] || health[1] != "healthcheck" {
		t.Fatalf("HEALTHCHECK CMD %q, want [%s healthcheck]", health, entrypoint[0])
	}
	// The binary the final stage copies is the one the build stage makes.
	var copied string
	for _, c := range final.get("COPY") {
		if strings.HasPrefix(c, "--from="+build.name+" ") && strings.HasSuffix(c, " "+entrypoint[0]) {
			copied = strings.Fields(c)[1]
		}
	}
	if copied == "" {
		t.Fatalf("no COPY --from=%s of %s in the final stage", build.name, entrypoint[0])
	}

	// Run the build stage's commands here, /out being a temporary
	// directory and the test's own toolchain standing in for the image's.
	out := t.TempDir()
	env := append(os.Environ(), "GOTOOLCHAIN="+runtime.Version())
	for k, v := range buildEnv {
		env = append(env, k+"="+v)
	}
	ran := 0
	for _, run := range build.get("RUN") {
		line := strings.ReplaceAll(run, "/out/", out+"/")
		c := exec.Command("sh", "-c", line)
		c.Env = env
		if b, err := c.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", run, err, b)
		}
		ran++
	}
	bin := strings.ReplaceAll(copied, "/out/", out+"/")
	if fi, err := os.Stat(filepath.Join(out, "data")); err != nil || !fi.IsDir() {
		t.Errorf("the build stage made no data directory: %v", err)
	}

	// The binary is static: no interpreter, no shared libraries.
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the build stage's binary %s: %v", bin, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a dynamic interpreter: not static", bin)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", bin, libs)
	}
	f.Close()

	// That binary serves, and the HEALTHCHECK command (with the final
	// stage's environment, its address moved to a free loopback port)
	// passes against it, then fails once it has stopped.
	dataDir := t.TempDir()
	srv := exec.Command(bin, "--addr", "127.0.0.1:0", "--data", dataDir)
	stderr, _ := srv.StderrPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	logs := &testbin.LogBuffer{}
	go scanLogs(stderr, addrc, logs)
	addr, ok := <-addrc
	if !ok {
		srv.Wait()
		t.Fatalf("the built binary did not start:\n%s", logs.String())
	}
	healthEnv := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range finalEnv {
		if k == "WATCHGATE_ADDR" {
			v = addr
		}
		healthEnv = append(healthEnv, k+"="+v)
	}
	check := func() error {
		c := exec.Command(bin, health[1:]...)
		c.Env = healthEnv
		b, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	}
	if err := check(); err != nil {
		t.Errorf("HEALTHCHECK against the serving binary: %v", err)
	}
	srv.Process.Signal(os.Interrupt)
	srv.Wait()
	if err := check(); err == nil {
		t.Errorf("HEALTHCHECK passed against a stopped server")
	}
	t.Logf("ran %d build commands; static binary %s; healthcheck at %s", ran, bin, addr)
}
