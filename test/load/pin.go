package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinSplit gives the control plane (etcd and kube-apiserver, this harness's children) CPU 0, and
// this harness CPU 1: the webhook server it starts afterwards inherits CPU 1 (and so a
// GOMAXPROCS of 1, as in a container limited to one CPU), and the load generator runs beside it.
// The replica's core then carries only the replica's work and its load, as when the API server
// runs on other machines. unpin gives the harness its CPUs back.
func pinSplit() (unpin func() error, err error) {
	if runtime.NumCPU() < 2 {
		return nil, errors.New("-pin needs 2 CPUs")
	}
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		return nil, err
	}
	plane, err := children("etcd", "kube-apiserver")
	if err != nil {
		return nil, err
	}
	if len(plane) != 2 {
		return nil, fmt.Errorf("-pin: found %d of etcd and kube-apiserver among the harness's processes", len(plane))
	}
	for _, pid := range plane {
		if err := pin(pid, cpu(0)); err != nil {
			return nil, err
		}
	}
	return func() error { return pin(os.Getpid(), all) }, pin(os.Getpid(), cpu(1))
}

func cpu(n int) unix.CPUSet {
	var set unix.CPUSet
	set.Set(n)
	return set
}

// pin sets the CPU affinity of every thread of pid; threads it creates later inherit it.
func pin(pid int, set unix.CPUSet) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pinning thread %d of %d: %w", tid, pid, err)
		}
	}
	return nil
}

// children returns the processes this one started whose command is one of names.
func children(names ...string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		fields := strings.Fields(s[end+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != os.Getpid() {
			continue
		}
		for _, n := range names {
			if s[open+1:end] == n {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}
