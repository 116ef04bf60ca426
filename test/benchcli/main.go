// Command benchcli is make bench-cli: it generates N Pods (copies of the ~7 KB benchmark Pod, or
// of a small one, some changed so that they fail: a missing memory limit, hostNetwork, no
// runAsNonRoot) as one multi-document YAML file or a JSON List, and times kubectl-portcullis
// check on them with the Pod Security restricted and resources policies, several runs: wall
// time, CPU time and peak RSS, medians. With -opa, it times OPA on the same file (a JSON List)
// with the same policy in Rego (bench.rego), runs alternating, and checks that both engines fail
// the same Pods by the same rules.
package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
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

// rego is the same policy for OPA.
//
//go:embed bench.rego
var rego []byte

func main() {
	if os.Getenv(launcherEnv) != "" {
		os.Exit(launch(os.Args[1:]))
	}
	root := flag.String("root", ".", "the repository")
	n := flag.Int("n", 1000, "how many Pods")
	runs := flag.Int("runs", 5, "how many timed runs")
	format := flag.String("format", "yaml", "the input's format: yaml or json (a List)")
	pod := flag.String("pod", "bench", "the Pod: bench (~7 KB, pkg/policies/testdata/bench/pod.json) or small (~260 bytes: 77,000 make 20 MB)")
	opa := flag.String("opa", "", "an opa binary: time it on the same Pods (as a JSON List), alternating, and compare the verdicts")
	flag.Parse()
	if err := run(*root, *n, *runs, *format, *pod, *opa); err != nil {
		fmt.Fprintf(os.Stderr, "bench-cli: %v\n", err)
		os.Exit(1)
	}
}

// smallPod is a Pod of a few fields, as many manifests hold.
const smallPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","namespace":"team-a","labels":{"app":"web","team":"a"}},
"spec":{"containers":[{"name":"app","image":"registry.example.org/team/app:1.0",
"resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"memory":"128Mi"}}}]}}`

// failure is a Pod failing a rule.
type failure struct{ name, rule string }

func run(root string, n, runs int, format, which, opa string) error {
	if opa != "" && format != "json" {
		return errors.New("-opa reads a JSON List: give -format json")
	}
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
	dir, err := os.MkdirTemp("", "portcullis-bench-cli-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	input, err := generate(raw, n, format)
	if err != nil {
		return err
	}
	file := filepath.Join(dir, "pods."+format)
	policies := filepath.Join(dir, "policy.yaml")
	regoFile := filepath.Join(dir, "bench.rego")
	for name, content := range map[string][]byte{file: input, policies: []byte(policy), regoFile: rego} {
		if err := os.WriteFile(name, content, 0o600); err != nil {
			return err
		}
	}
	bin, _ := filepath.Abs(filepath.Join(root, "bin", "kubectl-portcullis"))
	engines := []engine{{name: "portcullis", cmd: []string{bin, "check", "-f", file, "--policies", policies, "-o", "json"}, failures: portcullisFailures}}
	if opa != "" {
		engines = append(engines, engine{name: "opa", cmd: []string{opa, "eval", "-f", "json", "-d", regoFile, "-i", file, "data.bench.deny"}, failures: opaFailures})
	}
	fmt.Printf("==> %d Pods, %.1f MB of %s; %d runs of each, alternating: %s\n", n, float64(len(input))/1e6, format, runs, engines[0].cmd[0])
	var verdicts []map[failure]bool
	for i := range engines {
		e := &engines[i]
		out, _, err := e.time(true) // a run to check the verdicts, and to warm the page cache
		if err != nil {
			return err
		}
		f, err := e.failures(out)
		if err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		verdicts = append(verdicts, f)
	}
	for i := 1; i < len(verdicts); i++ {
		if !maps.Equal(verdicts[0], verdicts[i]) {
			return fmt.Errorf("%s and %s fail different Pods or rules: %s", engines[0].name, engines[i].name, difference(verdicts[0], verdicts[i]))
		}
	}
	failures := len(verdicts[0])
	for range runs {
		for i := range engines {
			_, m, err := engines[i].time(false)
			if err != nil {
				return err
			}
			engines[i].runs = append(engines[i].runs, m)
		}
	}
	for _, e := range engines {
		for _, m := range e.runs {
			fmt.Printf("    %-10s wall %.3f s  cpu %.3f s  peak RSS %.0f MiB\n", e.name, m.wall, m.cpu, m.rss)
		}
	}
	wall, cpu, rss := func(m measure) float64 { return m.wall }, func(m measure) float64 { return m.cpu }, func(m measure) float64 { return m.rss }
	for _, e := range engines {
		fmt.Printf("median: %-10s wall %.3f s  cpu %.3f s  peak RSS %.0f MiB\n", e.name, e.median(wall), e.median(cpu), e.median(rss))
	}
	fmt.Printf("verdicts: %d failures of %d Pods", failures, n)
	if len(engines) > 1 {
		fmt.Printf(", the same from every engine\n")
		for _, e := range engines[1:] {
			fmt.Printf("%s wall / portcullis wall: %.2f×\n", e.name, e.median(wall)/engines[0].median(wall))
		}
	} else {
		fmt.Println()
	}
	return nil
}

// generate writes n copies of the Pod, named bench-000000 on, some changed to fail: every 4th
// (from the 2nd) without its first container's limits, every 3rd (from the 3rd) with
// hostNetwork, every 7th (from the 4th) without the Pod's runAsNonRoot.
func generate(raw []byte, n int, format string) ([]byte, error) {
	var input bytes.Buffer
	items := make([]json.RawMessage, 0, n)
	for i := range n {
		var pod map[string]any
		if err := json.Unmarshal(raw, &pod); err != nil {
			return nil, err
		}
		pod["metadata"].(map[string]any)["name"] = fmt.Sprintf("bench-%06d", i)
		spec := pod["spec"].(map[string]any)
		if i%4 == 1 {
			delete(spec["containers"].([]any)[0].(map[string]any)["resources"].(map[string]any), "limits")
		}
		if i%3 == 2 {
			spec["hostNetwork"] = true
		}
		if sc, ok := spec["securityContext"].(map[string]any); ok && i%7 == 3 {
			delete(sc, "runAsNonRoot")
		}
		c, err := json.Marshal(pod)
		if err != nil {
			return nil, err
		}
		if format == "json" {
			items = append(items, c)
			continue
		}
		y, err := yaml.JSONToYAML(c)
		if err != nil {
			return nil, err
		}
		input.WriteString("---\n")
		input.Write(y)
	}
	if format == "json" {
		return json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	return input.Bytes(), nil
}

type measure struct{ wall, cpu, rss float64 }

type engine struct {
	name     string
	cmd      []string
	failures func(out []byte) (map[failure]bool, error)
	runs     []measure
}

// time runs the engine once: its output (when keep), and its wall time, CPU time and peak RSS.
// It runs the engine through a launcher, a fresh copy of this program: Linux counts in a child's
// peak RSS the peak of the process it was forked from, and this one's held the generated Pods.
func (e *engine) time(keep bool) ([]byte, measure, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, measure{}, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, measure{}, err
	}
	defer func() { _ = r.Close() }()
	cmd := exec.Command(self, e.cmd...) //nolint:gosec // this program, launching the binaries make built or the caller named
	cmd.Env = append(os.Environ(), launcherEnv+"=1")
	cmd.ExtraFiles = []*os.File{w}
	var out, stderr bytes.Buffer
	cmd.Stderr = &stderr
	if keep {
		cmd.Stdout = &out
	} else {
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, measure{}, err
		}
		defer func() { _ = devNull.Close() }()
		cmd.Stdout = devNull
	}
	err = cmd.Run()
	_ = w.Close()
	if err != nil && cmd.ProcessState.ExitCode() != 1 { // check exits 1 when a Deny rule fails
		return nil, measure{}, fmt.Errorf("%s: %w: %s", e.name, err, stderr.Bytes())
	}
	var m measure
	if _, err := fmt.Fscan(r, &m.wall, &m.cpu, &m.rss); err != nil {
		return nil, measure{}, fmt.Errorf("%s: the launcher's measure: %w", e.name, err)
	}
	return out.Bytes(), m, nil
}

// launcherEnv makes this program the launcher: it runs its arguments and writes their wall
// time, CPU time (s) and peak RSS (MiB) to file descriptor 3, exiting as they did.
const launcherEnv = "BENCHCLI_LAUNCHER"

func launch(args []string) int {
	cmd := exec.Command(args[0], args[1:]...) //nolint:gosec // what the harness asked for
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	report := os.NewFile(3, "measure")
	_, _ = fmt.Fprintf(report, "%f %f %f\n", wall.Seconds(), cpu.Seconds(), float64(ru.Maxrss)/1024)
	_ = report.Close()
	return cmd.ProcessState.ExitCode()
}

func (e *engine) median(of func(measure) float64) float64 {
	v := make([]float64, len(e.runs))
	for i, m := range e.runs {
		v[i] = of(m)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func portcullisFailures(out []byte) (map[failure]bool, error) {
	var rep struct {
		Results []struct {
			Rule     string `json:"rule"`
			Result   string `json:"result"`
			Resource struct {
				Name string `json:"name"`
			} `json:"resource"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, err
	}
	f := map[failure]bool{}
	for _, r := range rep.Results {
		switch r.Result {
		case "fail":
			f[failure{r.Resource.Name, r.Rule}] = true
		case "pass":
		default:
			return nil, fmt.Errorf("%s %s: %s", r.Resource.Name, r.Rule, r.Result)
		}
	}
	return f, nil
}

func opaFailures(out []byte) (map[failure]bool, error) {
	var res struct {
		Result []struct {
			Expressions []struct {
				Value []struct{ Name, Rule string } `json:"value"`
			} `json:"expressions"`
		} `json:"result"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, err
	}
	if len(res.Result) != 1 || len(res.Result[0].Expressions) != 1 {
		return nil, fmt.Errorf("unexpected output: %.200s", out)
	}
	f := map[failure]bool{}
	for _, v := range res.Result[0].Expressions[0].Value {
		f[failure{v.Name, v.Rule}] = true
	}
	return f, nil
}

// difference names a few failures one engine found and the other did not.
func difference(a, b map[failure]bool) string {
	var out []string
	for f := range a {
		if !b[f] && len(out) < 5 {
			out = append(out, fmt.Sprintf("only the first: %s %s", f.name, f.rule))
		}
	}
	for f := range b {
		if !a[f] && len(out) < 10 {
			out = append(out, fmt.Sprintf("only the second: %s %s", f.name, f.rule))
		}
	}
	return fmt.Sprint(out)
}
