package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// machine describes where and when a run was made.
type machine struct {
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	CPUs        int       `json:"cpus"`
	CPUModel    string    `json:"cpu_model"`
	MemTotal    string    `json:"mem_total"`
	Kernel      string    `json:"kernel"`
	LoadStart   string    `json:"load_start"`
	LoadEnd     string    `json:"load_end"`
	Commit      string    `json:"commit"`
	Toolchain   string    `json:"toolchain"`
	EtcdVersion string    `json:"etcd_version,omitempty"`
	// Loads is the 1-minute load average when each scenario started and
	// ended: the machine is shared, and figures move with it.
	Loads []scenarioLoad `json:"scenario_loads,omitempty"`
	Args  []string       `json:"args"`
}

func describeMachine(cfg *config) *machine {
	m := &machine{
		Start:     time.Now(),
		CPUs:      runtime.NumCPU(),
		CPUModel:  procField("/proc/cpuinfo", "model name"),
		MemTotal:  procField("/proc/meminfo", "MemTotal"),
		Kernel:    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		LoadStart: loadavg(),
		Toolchain: cfg.toolchain,
		Args:      os.Args[1:],
	}
	if cfg.etcd {
		m.EtcdVersion, _ = checkEtcd(cfg.etcdBin)
	}
	switch {
	case cfg.wgBin != "" && !cfg.built:
		m.Commit = "binary " + cfg.wgBin
	case cfg.src != "" && cfg.rev != "":
		if out, err := exec.Command("git", "-C", cfg.src, "rev-parse", "--short", cfg.rev+"^{commit}").Output(); err == nil {
			m.Commit = strings.TrimSpace(string(out))
		}
	case cfg.src != "":
		if out, err := exec.Command("git", "-C", cfg.src, "rev-parse", "--short", "HEAD").Output(); err == nil {
			m.Commit = strings.TrimSpace(string(out))
			if st, err := exec.Command("git", "-C", cfg.src, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
				m.Commit += " with the working tree's uncommitted changes"
			}
		}
	}
	return m
}

// scenarioLoad is the load around one scenario.
type scenarioLoad struct {
	Scenario   string `json:"scenario"`
	Start, End string
}

// load1 is the 1-minute load average.
func load1() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 1 {
		return "?"
	}
	return f[0]
}

func (m *machine) finish() {
	m.End = time.Now()
	m.LoadEnd = loadavg()
}

func (m *machine) summary() string {
	s := fmt.Sprintf("%d CPUs (%s), memory %s, kernel %s; load average %s at start",
		m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.LoadStart)
	if m.LoadEnd != "" {
		s += ", " + m.LoadEnd + " at end"
	}
	if strings.HasPrefix(m.Commit, "binary ") {
		s += "; watchgate " + m.Commit
	} else {
		s += fmt.Sprintf("; watchgate %s built with %s", m.Commit, m.Toolchain)
	}
	if m.EtcdVersion != "" {
		s += "; etcd " + m.EtcdVersion
	}
	return s
}

func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// procField returns the value of the first "name: value" line of a /proc
// file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}
