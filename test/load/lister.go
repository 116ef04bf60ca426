package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// listerEnv, when set, makes this binary (the harness, or its test binary) a listing control of
// its own instead: with -pin, bench-audit's control must read the API server's LIST pages off the
// replica's CPU, or it measures its own reading of them there, at normal priority, beside the
// server, and not what the API server's work costs admission.
const listerEnv = "PORTCULLIS_LOAD_LISTER"

// listerSpec is what a listing control process does: on cpu (-1: wherever), wait for a line on
// its input, then list every Pod for the duration at most pace a second, and print how many it
// read.
type listerSpec struct {
	Kubeconfig string        `json:"kubeconfig"`
	For        time.Duration `json:"for"`
	Pace       float64       `json:"pace"`
	PageSize   int64         `json:"pageSize"`
	CPU        int           `json:"cpu"`
}

// listerResult is what it prints.
type listerResult struct {
	Listed int    `json:"listed"`
	CPUs   string `json:"cpus"` // where it was allowed to run, as /proc's Cpus_allowed_list
}

// runListerIfAsked runs the listing control and exits, when this process was started as one.
func runListerIfAsked() {
	spec, ok := os.LookupEnv(listerEnv)
	if !ok {
		return
	}
	if err := lister(spec, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "listing control: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func lister(specJSON string, in io.Reader, out io.Writer) error {
	var spec listerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("%s: %w", listerEnv, err)
	}
	if spec.CPU >= 0 {
		// Every thread the runtime has started so far; the ones it starts later inherit it.
		if err := pin(os.Getpid(), cpu(spec.CPU)); err != nil {
			return err
		}
	}
	cpus, err := allowedCPUs(os.Getpid())
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", spec.Kubeconfig)
	if err != nil {
		return err
	}
	auditPageSize = spec.PageSize
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	if _, err := bufio.NewReader(in).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for the start: %w", err)
	}
	listed := listFor(context.Background(), cfg, spec.For, spec.Pace)
	return json.NewEncoder(out).Encode(listerResult{Listed: listed, CPUs: cpus})
}

// offCPULister is a listing control process, started and waiting.
type offCPULister struct {
	cmd   *exec.Cmd
	start io.WriteCloser
	out   *bufio.Reader
}

// startLister starts a listing control process on cpu, and waits until it is ready to list.
func startLister(kubeconfig string, d time.Duration, pace float64, cpuN int) (*offCPULister, error) {
	spec, _ := json.Marshal(listerSpec{Kubeconfig: kubeconfig, For: d, Pace: pace, PageSize: auditPageSize, CPU: cpuN})
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe) //nolint:gosec // this harness's own binary
	cmd.Env = append(os.Environ(), listerEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	start, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l := &offCPULister{cmd: cmd, start: start, out: bufio.NewReader(stdout)}
	line, err := l.out.ReadString('\n')
	if err == nil && strings.TrimSpace(line) != "ready" {
		err = fmt.Errorf("it said %q, not ready", line)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("the listing control did not start: %w", err)
	}
	return l, nil
}

// run starts the listing and returns what the process read, and where it ran.
func (l *offCPULister) run() (listerResult, error) {
	var res listerResult
	_, err := io.WriteString(l.start, "\n")
	if err == nil {
		err = json.NewDecoder(l.out).Decode(&res)
	}
	_ = l.start.Close()
	return res, errors.Join(err, l.cmd.Wait())
}

// allowedCPUs is where every thread of pid may run: their Cpus_allowed_list, the distinct ones
// joined by " and ".
func allowedCPUs(pid int) (string, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return "", err
	}
	var lists []string
	for _, t := range tasks {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // gone
		}
		for line := range strings.SplitSeq(string(status), "\n") {
			if cpus, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok && !slices.Contains(lists, strings.TrimSpace(cpus)) {
				lists = append(lists, strings.TrimSpace(cpus))
			}
		}
	}
	if len(lists) == 0 {
		return "", fmt.Errorf("/proc/%d: no thread's Cpus_allowed_list", pid)
	}
	return strings.Join(lists, " and "), nil
}
