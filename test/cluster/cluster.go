// Package cluster runs a real local control plane (kube-apiserver and etcd through envtest, with
// an audit log) and the Portcullis webhook against it, for the e2e tests and `make demo`.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// Cluster is a running control plane.
type Cluster struct {
	Config     *rest.Config
	Kubeconfig string // an admin kubeconfig file
	KubectlBin string
	AuditLog   string
	env        *envtest.Environment
	dir        string
	restarted  *exec.Cmd // kube-apiserver started again after KillAPIServer
}

// auditPolicy records metadata, with admission annotations, for workloads.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources:
      - {group: "", resources: [pods, replicationcontrollers]}
      - {group: apps, resources: [deployments, statefulsets, daemonsets, replicasets]}
      - {group: batch, resources: [jobs, cronjobs]}
  - level: None
`

// Start starts etcd and kube-apiserver from assets (bin/k8s, see make envtest-bins) with the
// CRDs in crdDir installed; dir holds the audit log and kubeconfig.
func Start(assets, crdDir, dir string) (*Cluster, error) {
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make envtest-bins`", b, assets)
		}
	}
	c := &Cluster{AuditLog: filepath.Join(dir, "audit.log"), KubectlBin: filepath.Join(assets, "kubectl"), dir: dir}
	policyFile := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policyFile, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	c.env = &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{crdDir}, ErrorIfCRDPathMissing: true}
	c.env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", policyFile).
		Set("audit-log-path", c.AuditLog).
		Set("audit-log-format", "json")
	cfg, err := c.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	c.Config = cfg
	user, err := c.env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		c.Stop()
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		c.Stop()
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kc, 0o600); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Stop stops the control plane.
func (c *Cluster) Stop() {
	if c.restarted != nil {
		_ = c.restarted.Process.Kill()
		_ = c.restarted.Wait()
	}
	_ = c.env.Stop()
}

// KillAPIServer kills kube-apiserver with SIGKILL, as a crash or a lost node would, and returns
// a function that starts it again with the same arguments; etcd keeps the cluster's state.
func (c *Cluster) KillAPIServer() (restart func() error, err error) {
	port := c.env.ControlPlane.APIServer.Port
	pid, argv, err := findProcess("kube-apiserver", "--secure-port="+port)
	if err != nil {
		return nil, err
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	if err := proc.Kill(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.env.ControlPlane.APIServer.Address, port), 100*time.Millisecond)
		if err != nil {
			break
		}
		_ = conn.Close()
		if time.Now().After(deadline) {
			return nil, errors.New("kube-apiserver still accepts after SIGKILL")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() error {
		log, err := os.Create(filepath.Join(c.dir, "kube-apiserver-restarted.log"))
		if err != nil {
			return err
		}
		//nolint:gosec // the harness runs the binaries it built, with their own arguments
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return err
		}
		c.restarted = cmd
		return nil
	}, nil
}

// findProcess returns the pid and arguments of the process named name whose
// arguments include arg.
func findProcess(name, arg string) (int, []string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(argv[0]) == name && slices.Contains(argv, arg) {
			return pid, argv, nil
		}
	}
	return 0, nil, fmt.Errorf("no %s process with %s", name, arg)
}

// Kubectl runs kubectl against the cluster.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error) {
	//nolint:gosec // the harness runs the binaries it built, with its own arguments
	cmd := exec.CommandContext(ctx, c.KubectlBin, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// WebhookConfig reads the validating webhook configuration of manifests/base and points each
// webhook at base (https://host:port) with its path, instead of the in-cluster Service.
func WebhookConfig(manifest, base string, caBundle []byte) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := readManifest(manifest, &cfg); err != nil {
		return nil, err
	}
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig = urlConfig(base, cfg.Webhooks[i].ClientConfig, caBundle)
	}
	return &cfg, nil
}

// MutatingConfig reads the mutating webhook configuration of manifests/base and points it at
// base, with each webhook's path.
func MutatingConfig(manifest, base string, caBundle []byte) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := readManifest(manifest, &cfg); err != nil {
		return nil, err
	}
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig = urlConfig(base, cfg.Webhooks[i].ClientConfig, caBundle)
	}
	return &cfg, nil
}

// PodRules are static rules for Pods and the pod controllers on CREATE and UPDATE, for a test
// server's own configuration that no leader keeps (the shipped ones start empty and follow the
// policies).
func PodRules() []admissionregistrationv1.RuleWithOperations {
	rule := func(group string, resources ...string) admissionregistrationv1.RuleWithOperations {
		scope := admissionregistrationv1.NamespacedScope
		return admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources, Scope: &scope},
		}
	}
	return []admissionregistrationv1.RuleWithOperations{
		rule("", "pods", "replicationcontrollers"),
		rule("apps", "deployments", "statefulsets", "daemonsets", "replicasets"),
		rule("batch", "jobs", "cronjobs"),
	}
}

// urlConfig points a webhook at base (https://host:port) with the path of its Service.
func urlConfig(base string, cc admissionregistrationv1.WebhookClientConfig, caBundle []byte) admissionregistrationv1.WebhookClientConfig {
	url := base
	if cc.Service != nil && cc.Service.Path != nil {
		url += *cc.Service.Path
	}
	return admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle}
}

func readManifest(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ExcludeLabel adds a requirement on a namespace label to the namespaceSelector of every webhook
// of cfg (a Validating- or MutatingWebhookConfiguration) that judges workloads; the policy
// webhook, which judges Portcullis's own objects, is left as it is.
func ExcludeLabel(cfg any, key string, op metav1.LabelSelectorOperator) {
	add := func(sel **metav1.LabelSelector, rules []admissionregistrationv1.RuleWithOperations) {
		for _, r := range rules {
			if slices.Contains(r.APIGroups, "portcullis.dev") {
				return
			}
		}
		if *sel == nil {
			*sel = &metav1.LabelSelector{}
		}
		(*sel).MatchExpressions = append((*sel).MatchExpressions, metav1.LabelSelectorRequirement{Key: key, Operator: op})
	}
	switch c := cfg.(type) {
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for i := range c.Webhooks {
			add(&c.Webhooks[i].NamespaceSelector, c.Webhooks[i].Rules)
		}
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for i := range c.Webhooks {
			add(&c.Webhooks[i].NamespaceSelector, c.Webhooks[i].Rules)
		}
	default:
		panic(fmt.Sprintf("ExcludeLabel: %T is not a webhook configuration", cfg))
	}
}

// Process is a running webhook server binary.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// BuildWebhook builds cmd/webhook (from the module at root) into dir.
func BuildWebhook(root, dir string) (string, error) {
	bin := filepath.Join(dir, "webhook")
	//nolint:gosec // the harness runs the binaries it built, with its own arguments
	build := exec.Command("go", "build", "-o", bin, "./cmd/webhook")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building cmd/webhook: %w\n%s", err, out)
	}
	return bin, nil
}

// StartProcess runs the webhook binary with args, its output going to log.
func StartProcess(bin string, log *os.File, args ...string) (*Process, error) {
	return StartProcessEnv(bin, log, nil, args...)
}

// StartProcessEnv is StartProcess with env added to the process's environment.
func StartProcessEnv(bin string, log *os.File, env []string, args ...string) (*Process, error) {
	//nolint:gosec // the harness runs the binaries it built, with its own arguments
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Stop sends SIGINT, as the kubelet sends SIGTERM, and waits for the drain.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	<-p.done
}

// Kill sends SIGKILL, as a crash or an OOM kill would, and waits for the process to go.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// FreePort returns a TCP port free on loopback, for a process to listen on later. It is drawn
// at random from below Linux's ephemeral range (32768-60999), never from it: a port the kernel
// hands out (for a listener on port 0, or as a connection's local port, which the clients of
// every test running beside this one open all the time) could be taken between this call and
// the process's bind, and the process would exit with "address already in use".
func FreePort() (int, error) {
	const lo, hi = 20000, 32768
	var err error
	for range 100 {
		port := lo + rand.IntN(hi-lo) //nolint:gosec // not a secret: spreads the test processes' ports
		var l net.Listener
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d: %w", lo, hi-1, err)
}

// Tail is the end of a log file (its last n bytes at most), for a failure message.
func Tail(path string, n int64) string {
	f, err := os.Open(path) //nolint:gosec // the harness's own log
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
