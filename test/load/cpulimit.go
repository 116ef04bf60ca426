package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/portcullis-dev/portcullis/test/cluster"
)

// serverCPULimit, when positive, is the CPUs the server may use (-server-cpu-limit): it runs in a
// cgroup of its own with that CPU quota, from its first instruction, as in a container with a
// CPU limit (the Go runtime chooses its GOMAXPROCS from it).
var serverCPULimit float64

// serverCPUs, when set, is the CPUs the server may run on (-server-cpus, taskset's list): its
// affinity from its start, as the kubelet's static CPU manager gives a container exclusive CPUs
// (the Go runtime chooses its GOMAXPROCS from them).
var serverCPUs string

// onCPUs is bin and args run by taskset on cpus, from the start.
func onCPUs(cpus, bin string, args []string) (string, []string) {
	return "taskset", append([]string{"-c", cpus, bin}, args...)
}

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cpuCgroup is a cgroup with a CPU quota, made for the server and removed once it has exited.
type cpuCgroup struct{ dir string }

// cpuPeriodUS is the quota's period, the kernel's default.
const cpuPeriodUS = 100000

// newCPUCgroup makes a cgroup that may use cpus CPUs: under cgroup v2 (enabling the cpu
// controller for the root's children) or v1's cpu hierarchy. It needs root.
func newCPUCgroup(cpus float64) (*cpuCgroup, error) {
	quota := strconv.Itoa(int(cpus * cpuPeriodUS))
	name := fmt.Sprintf("portcullis-bench-%d", os.Getpid())
	g := &cpuCgroup{}
	var files [][2]string
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err == nil {
		if err := os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+cpu"), 0o600); err != nil {
			return nil, fmt.Errorf("-server-cpu-limit: enabling the cpu controller: %w", err)
		}
		g.dir = filepath.Join(cgroupRoot, name)
		files = [][2]string{{"cpu.max", quota + " " + strconv.Itoa(cpuPeriodUS)}}
	} else {
		g.dir = filepath.Join(cgroupRoot, "cpu", name)
		files = [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriodUS)}, {"cpu.cfs_quota_us", quota}}
	}
	if err := os.Mkdir(g.dir, 0o750); err != nil {
		return nil, fmt.Errorf("-server-cpu-limit: %w", err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(g.dir, f[0]), []byte(f[1]), 0o600); err != nil {
			_ = os.Remove(g.dir)
			return nil, fmt.Errorf("-server-cpu-limit: %w", err)
		}
	}
	return g, nil
}

// start starts bin in the cgroup: a shell joins it, then becomes bin, so that the process is in
// it from the start.
func (g *cpuCgroup) start(bin string, log *os.File, env []string, args ...string) (*cluster.Process, error) {
	return cluster.StartProcessEnv("/bin/sh", log, env, append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, g.dir, bin}, args...)...)
}

// throttled is how often and how long the kernel throttled the cgroup, from its cpu.stat.
func (g *cpuCgroup) throttled() (periods, throttled uint64, ms float64, err error) {
	data, err := os.ReadFile(filepath.Join(g.dir, "cpu.stat"))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "nr_periods":
			periods = n
		case "nr_throttled":
			throttled = n
		case "throttled_usec": // v2
			ms = float64(n) / 1e3
		case "throttled_time": // v1, in ns
			ms = float64(n) / 1e6
		}
	}
	return periods, throttled, ms, nil
}

// remove removes the cgroup, which its process has left by exiting.
func (g *cpuCgroup) remove() error {
	if err := os.Remove(g.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
