// Command benchcli is make bench-cli: it generates N copies of the ~7 KB benchmark Pod as one
// multi-document YAML file, and times kubectl-portcullis check on them with the Pod Security
// restricted and resources policies, several runs: wall time, CPU time and peak RSS, medians.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"
)

const policy = `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: bench}
spec:
  enforcement: Deny
  match: {kinds: [Pod]}
  rules:
    - name: pss
      podSecurity: {level: restricted, version: latest}
    - name: resources
      resources: {requests: [cpu, memory], limits: [memory]}
`

func main() {
	root := flag.String("root", ".", "the repository")
	n := flag.Int("n", 1000, "how many Pods")
	runs := flag.Int("runs", 5, "how many timed runs")
	format := flag.String("format", "yaml", "the input's format: yaml or json (a List)")
	pod := flag.String("pod", "bench", "the Pod: bench (~7 KB, pkg/policies/testdata/bench/pod.json) or small (~260 bytes: 77,000 make 20 MB)")
	flag.Parse()
	if err := run(*root, *n, *runs, *format, *pod); err != nil {
		fmt.Fprintf(os.Stderr, "bench-cli: %v\n", err)
		os.Exit(1)
	}
}

// smallPod is a Pod of a few fields, as many manifests hold.
const smallPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"team-a","labels":{"app":"web","team":"a"}},
"spec":{"containers":[{"name":"app","image":"registry.example.org/team/app:1.0",
"resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"memory":"128Mi"}}}]}}`

func run(root string, n, runs int, format, which string) error {
	var raw []byte
	switch which {
	case "bench":
		var err error
		if raw, err = os.ReadFile(filepath.Join(root, "pkg", "policies", "testdata", "bench", "pod.json")); err != nil {
			return err
		}
	case "small":
		raw = []byte(smallPod)
	default:
		return fmt.Errorf("-pod %q: want bench or small", which)
	}
	var pod map[string]any
	if err := json.Unmarshal(raw, &pod); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "portcullis-bench-cli-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	var input bytes.Buffer
	items := make([]any, 0, n)
	for i := range n {
		pod["metadata"].(map[string]any)["name"] = fmt.Sprintf("bench-%06d", i)
		if format == "json" {
			c, _ := json.Marshal(pod)
			items = append(items, json.RawMessage(c))
			continue
		}
		y, err := yaml.Marshal(pod)
		if err != nil {
			return err
		}
		input.WriteString("---\n")
		input.Write(y)
	}
	file := filepath.Join(dir, "pods."+format)
	if format == "json" {
		js, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
		if err != nil {
			return err
		}
		input.Write(js)
	}
	if err := os.WriteFile(file, input.Bytes(), 0o600); err != nil {
		return err
	}
	policies := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policies, []byte(policy), 0o600); err != nil {
		return err
	}
	bin, _ := filepath.Abs(filepath.Join(root, "bin", "kubectl-portcullis"))
	fmt.Printf("==> %d Pods, %.1f MB of %s; %d runs of %s check -o json\n", n, float64(input.Len())/1e6, format, runs, bin)
	var walls, cpus, rss []float64
	for range runs {
		cmd := exec.Command(bin, "check", "-f", file, "--policies", policies, "-o", "json") //nolint:gosec // the binary make built
		cmd.Stdout = nil
		start := time.Now()
		err := cmd.Run()
		wall := time.Since(start)
		if err != nil && cmd.ProcessState.ExitCode() > 1 {
			return fmt.Errorf("check: %w", err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		walls, cpus, rss = append(walls, wall.Seconds()), append(cpus, cpu.Seconds()), append(rss, float64(ru.Maxrss)/1024)
		fmt.Printf("    wall %.3f s  cpu %.3f s  peak RSS %.0f MiB\n", wall.Seconds(), cpu.Seconds(), float64(ru.Maxrss)/1024)
	}
	fmt.Printf("median: wall %.3f s  cpu %.3f s  peak RSS %.0f MiB\n", median(walls), median(cpus), median(rss))
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
