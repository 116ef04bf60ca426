package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCPUCgroupStartsTheProcessInIt: the server joins its cgroup before it runs (the shell that
// becomes it writes its own PID, which the server keeps), so the Go runtime sees the limit from
// its first instruction.
func TestCPUCgroupStartsTheProcessInIt(t *testing.T) {
	dir := t.TempDir()
	g := &cpuCgroup{dir: dir}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()
	p, err := g.start("/bin/sh", log, nil, "-c", `echo "$$" > "$0/self"`, dir)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !p.Exited(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.Kill()
			t.Fatal("the command did not exit")
		}
	}
	joined, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(filepath.Join(dir, "self"))
	if err != nil {
		t.Fatalf("the command did not run after joining: %v", err)
	}
	want := strconv.Itoa(p.Pid())
	if got := strings.TrimSpace(string(joined)); got != want {
		t.Errorf("cgroup.procs holds %q, want the process's PID %s", got, want)
	}
	if got := strings.TrimSpace(string(self)); got != want {
		t.Errorf("the command ran as PID %s, want the process that joined, %s", got, want)
	}
}

// TestCPUCgroupThrottled reads both cgroup versions' cpu.stat.
func TestCPUCgroupThrottled(t *testing.T) {
	for _, c := range []struct{ name, stat string }{
		{"v1", "nr_periods 1194\nnr_throttled 7\nthrottled_time 12500000\nnr_bursts 0\nburst_time 0\n"},
		{"v2", "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 1194\nnr_throttled 7\nthrottled_usec 12500\n"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte(c.stat), 0o600); err != nil {
			t.Fatal(err)
		}
		periods, throttled, ms, err := (&cpuCgroup{dir: dir}).throttled()
		if err != nil || periods != 1194 || throttled != 7 || ms != 12.5 {
			t.Errorf("%s: %d periods, %d throttled, %.1f ms, %v; want 1194, 7, 12.5 ms", c.name, periods, throttled, ms, err)
		}
	}
}
