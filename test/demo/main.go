// Command demo is `make demo`: it starts a local control plane (kube-apiserver and etcd), runs
// the Portcullis webhook against it, installs the CRDs, the policy library and the example
// policies, applies every example workload with kubectl, prints one line per example
// (ADMITTED, MUTATED, WARNED or DENIED, with the message), checks that `kubectl portcullis check` predicted
// the same verdict, and tears everything down.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/report"
	"github.com/portcullis-dev/portcullis/test/cluster"
)

func main() {
	root := flag.String("root", ".", "the repository")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *root); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(ctx context.Context, root string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "portcullis-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	step("starting a local control plane (kube-apiserver v1.37.2, etcd) with an audit log")
	c, err := cluster.Start(filepath.Join(root, "bin", "k8s"), filepath.Join(root, "manifests", "crds"), dir)
	if err != nil {
		return err
	}
	defer func() { step("tearing down"); c.Stop() }()
	d := &demo{ctx: ctx, root: root, dir: dir, c: c}
	stop, err := d.startWebhook()
	if err != nil {
		return err
	}
	defer stop()
	if err := d.installPolicies(); err != nil {
		return err
	}
	return d.applyWorkloads()
}

// demo is one run of the demo: its control plane and files.
type demo struct {
	ctx       context.Context
	root, dir string
	c         *cluster.Cluster
}

func (d *demo) kubectl(stdin string, args ...string) (string, string, error) {
	return d.c.Kubectl(d.ctx, stdin, args...)
}

func (d *demo) must(stdin string, args ...string) error {
	if _, stderr, err := d.kubectl(stdin, args...); err != nil {
		return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, stderr)
	}
	return nil
}

// startWebhook runs the server binary against the control plane, installs the webhook
// configurations pointed at it, and waits until it serves with its caBundle injected.
func (d *demo) startWebhook() (stop func(), err error) {
	step("building and starting the webhook server (self-managed certificates, leader election)")
	if err := d.must("", "create", "namespace", "portcullis-system"); err != nil {
		return nil, err
	}
	bin, err := cluster.BuildWebhook(d.root, d.dir)
	if err != nil {
		return nil, err
	}
	port, _ := cluster.FreePort()
	probes, _ := cluster.FreePort()
	logPath := filepath.Join(d.dir, "webhook.log")
	if keep := os.Getenv("DEMO_LOG"); keep != "" {
		logPath = keep // the server's log, kept after the demo
	}
	logFile, err := os.Create(logPath) //nolint:gosec // the demo's own log, or where its user asked

	if err != nil {
		return nil, err
	}
	p, err := cluster.StartProcess(bin, logFile, "--kubeconfig", d.c.Kubeconfig, "--namespace", "portcullis-system",
		"--webhook-host", "127.0.0.1", "--webhook-port", fmt.Sprint(port), "--extra-hosts", "127.0.0.1",
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probes))
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	stop = func() { p.Stop(); _ = logFile.Close() }
	if err := d.configure(port, probes, logFile.Name()); err != nil {
		stop()
		return nil, err
	}
	return stop, nil
}

// configure installs the webhook configurations pointed at the server on port and waits until
// it is ready (probes: its probe port) with its caBundle injected.
func (d *demo) configure(port, probes int, log string) error {
	root := d.root
	cfg, err := cluster.WebhookConfig(filepath.Join(root, "manifests", "base", "webhook.yaml"), fmt.Sprintf("https://127.0.0.1:%d", port), nil)
	if err != nil {
		return err
	}
	mcfg, err := cluster.MutatingConfig(filepath.Join(root, "manifests", "base", "mutating.yaml"), fmt.Sprintf("https://127.0.0.1:%d", port), nil)
	if err != nil {
		return err
	}
	for _, obj := range []any{cfg, mcfg} {
		y, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if err := d.must(string(y), "apply", "-f", "-"); err != nil {
			return err
		}
	}
	if err := waitFor(d.ctx, 60*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probes))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %d", resp.StatusCode)
		}
		for _, kind := range []string{"validatingwebhookconfiguration/portcullis-validating", "mutatingwebhookconfiguration/portcullis-mutating"} {
			out, _, err := d.kubectl("", "get", kind, "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
			if err != nil || out == "" {
				return fmt.Errorf("caBundle of %s not injected yet (%w)", kind, err)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("the webhook did not become ready (log: %s): %w", log, err)
	}
	return nil
}

// installPolicies installs the library and the example policies and waits until they are Ready.
func (d *demo) installPolicies() error {
	step("installing the policy library (Audit) and the example policies (Deny, Warn, an exception)")
	for _, ns := range []string{"shop", "sandbox-alice", "monitoring"} {
		if err := d.must("", "create", "namespace", ns); err != nil {
			return err
		}
	}
	if err := d.must("", "apply", "-k", filepath.Join(d.root, "manifests", "library")); err != nil {
		return err
	}
	// An exception may last at most --max-exception-lifetime (90 days) after its creation, and the
	// policy webhook refuses one that asks for more: the example's far-off expiry is brought to
	// 30 days from now as it is applied.
	expires := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	for _, f := range []string{"platform.yaml", "probes.yaml"} {
		data, err := os.ReadFile(filepath.Join(d.root, "examples", "policies", f))
		if err != nil {
			return err
		}
		doc := strings.ReplaceAll(string(data), `expires: "2099-01-01T00:00:00Z"`, fmt.Sprintf("expires: %q", expires))
		if err := d.must(doc, "apply", "-f", "-"); err != nil {
			return err
		}
	}
	if err := d.must("", "wait", "--for=condition=Ready", "clusterpolicy", "--all", "--timeout=60s"); err != nil {
		return err
	}
	return nil
}

// applyWorkloads predicts each workload's verdict with the CLI, applies it with kubectl, and
// prints both.
func (d *demo) applyWorkloads() error {
	root := d.root
	workloads := filepath.Join(root, "examples", "workloads")
	step("predicting each verdict offline with kubectl-portcullis check")
	predicted, predictedMutation, err := predict(d.ctx, root, workloads)
	if err != nil {
		return err
	}

	step("applying the example workloads with kubectl")
	files, _ := filepath.Glob(filepath.Join(workloads, "*.yaml"))
	slices.Sort(files)
	disagreements := 0
	var printed []string
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		_, stderr, err := d.kubectl("", "apply", "-f", f)
		verdict, message := classify(stderr, err)
		if verdict == "" {
			return fmt.Errorf("kubectl apply -f %s: %w\n%s", rel, err, stderr)
		}
		if verdict == "ADMITTED" || verdict == "WARNED" {
			// Stored with the mutations annotation: a mutating rule changed it, and a mutated
			// request is MUTATED even when it also warns, as the engine decides.
			if by, _, _ := d.kubectl("", "get", "-f", f, "-o", `jsonpath={.metadata.annotations.portcullis\.dev/mutations}`); by != "" {
				verdict, message = "MUTATED", "by "+by+": "+predictedMutation[rel]
			}
		}
		if verdict == "ADMITTED" {
			if n := auditFindings(d.c.AuditLog, f); n > 0 {
				message = fmt.Sprintf("(%d audit findings recorded in the audit log)", n)
			}
		}
		agree := "CLI agrees"
		if predicted[rel] != verdict {
			agree = fmt.Sprintf("CLI predicted %s!", predicted[rel])
			disagreements++
		}
		line := fmt.Sprintf("%-9s %-38s %s  %s", verdict, rel, agree, message)
		fmt.Println(line)
		printed = append(printed, line)
	}
	if disagreements > 0 {
		return fmt.Errorf("%d verdicts differ between the cluster and the CLI", disagreements)
	}
	return checkReadme(filepath.Join(root, "README.md"), printed)
}

// checkReadme fails when the README's sample of the demo's output is not what the demo printed:
// the same lines in the same order, where "..." in the README stands for text left out.
func checkReadme(readme string, printed []string) error {
	data, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	var sample []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.Contains(line, "examples/workloads/") && strings.Contains(line, "CLI agrees") {
			sample = append(sample, line)
		}
	}
	if len(sample) != len(printed) {
		return fmt.Errorf("README.md shows %d lines of the demo's output, the demo printed %d: mend the README", len(sample), len(printed))
	}
	for i, got := range printed {
		if want := sample[i]; !elidedMatch(want, got) {
			return fmt.Errorf("README.md's sample of the demo's output is stale: mend it\n  README: %s\n  demo:   %s", want, got)
		}
	}
	return nil
}

// elidedMatch reports whether got is want with each "..." standing for any text.
func elidedMatch(want, got string) bool {
	parts := strings.Split(want, "...")
	if len(parts) == 1 {
		return want == got
	}
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	rest := got[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return strings.HasSuffix(rest, parts[len(parts)-1])
}

// classify turns kubectl's answer into the demo's verdict; "" is an unexpected failure.
func classify(stderr string, err error) (verdict, message string) {
	if err != nil {
		if i := strings.Index(stderr, "denied the request: "); i >= 0 {
			return "DENIED", strings.ReplaceAll(strings.TrimSpace(stderr[i+len("denied the request: "):]), "\n", " | ")
		}
		return "", ""
	}
	var warnings []string
	for _, line := range strings.Split(stderr, "\n") {
		if w, ok := strings.CutPrefix(line, "Warning: "); ok {
			warnings = append(warnings, w)
		}
	}
	if len(warnings) > 0 {
		return "WARNED", strings.Join(warnings, " | ")
	}
	return "ADMITTED", ""
}

// demoVerdict names the engine's verdicts as the demo prints them.
var demoVerdict = map[policies.Verdict]string{
	policies.Admitted: "ADMITTED", policies.Mutated: "MUTATED", policies.Warned: "WARNED", policies.Denied: "DENIED",
}

// predict runs the CLI on the workloads with the same policies and returns each file's verdict,
// and the mutations it applies.
func predict(ctx context.Context, root, workloads string) (map[string]string, map[string]string, error) {
	//nolint:gosec // the harness runs the binaries it built, with its own arguments
	cmd := exec.CommandContext(ctx, filepath.Join(root, "bin", "kubectl-portcullis"), "check", "-f", workloads,
		"--policies", filepath.Join(root, "manifests", "library"), "--policies", filepath.Join(root, "examples", "policies"), "-o", "json")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() != 1) {
		return nil, nil, fmt.Errorf("kubectl-portcullis check: %w", err)
	}
	var rep report.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, nil, err
	}
	byFile := map[string][]report.Result{}
	for _, r := range rep.Results {
		rel, _ := filepath.Rel(root, r.File)
		byFile[rel] = append(byFile[rel], r)
	}
	verdicts, mutations := map[string]string{}, map[string]string{}
	for rel, results := range byFile {
		verdicts[rel] = demoVerdict[report.Decide(results).Verdict]
		var changes []string
		for _, r := range results {
			changes = append(changes, r.Changes...)
		}
		if len(changes) > 0 {
			mutations[rel] = strings.Join(changes, "; ")
		}
	}
	return verdicts, mutations, nil
}

// auditFindings counts Portcullis's audit annotations on the last create of the file's object.
func auditFindings(auditLog, file string) int {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	var obj struct {
		Metadata struct{ Name, Namespace string } `json:"metadata"`
	}
	if yaml.Unmarshal(data, &obj) != nil {
		return 0
	}
	f, err := os.Open(auditLog)
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Verb        string                           `json:"verb"`
			ObjectRef   struct{ Name, Namespace string } `json:"objectRef"`
			Annotations map[string]string                `json:"annotations"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Verb != "create" || ev.ObjectRef.Name != obj.Metadata.Name || ev.ObjectRef.Namespace != obj.Metadata.Namespace {
			continue
		}
		n = 0
		for k := range ev.Annotations {
			if strings.HasPrefix(k, "validate.portcullis.dev/") {
				n++
			}
		}
	}
	return n
}

func waitFor(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}
