package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/cmd/webhook/app"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// The e2e environment: a real kube-apiserver and etcd (envtest, binaries from make envtest-bins),
// the webhook server in-process exactly as cmd/webhook wires it, and the kubectl built with them.
var e2e struct {
	cfg        *rest.Config
	client     client.Client
	kubeconfig string
	kubectl    string
	auditLog   string
	webhookURL string // the main server, self-managed certificates
	auditURL   string // a second server with --audit-only and a user-provided certificate
	metricsURL string
	probeURL   string
}

const (
	systemNamespace = "portcullis-system"
	auditOnlyLabel  = "e2e.portcullis.dev/audit-only"
)

func TestMain(m *testing.M) {
	os.Exit(runE2E(m))
}

func runE2E(m *testing.M) int {
	if os.Getenv("E2E_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard()) // tests assert outcomes; E2E_VERBOSE=1 shows the servers' logs
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets, _ = filepath.Abs("../bin/k8s")
	}
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %s not found in %s: run `make envtest-bins` (or `make test`, which builds them)\n", b, assets)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "portcullis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(dir, assets); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		return 1
	}
	defer teardown()
	return m.Run()
}

var stopAll []func()

func teardown() {
	for i := len(stopAll) - 1; i >= 0; i-- {
		stopAll[i]()
	}
}

func setup(dir, assets string) error {
	auditPolicy := filepath.Join(dir, "audit-policy.yaml")
	e2e.auditLog = filepath.Join(dir, "audit.log")
	if err := os.WriteFile(auditPolicy, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    resources: [{group: "", resources: [pods]}, {group: apps, resources: [deployments]}]
  - level: None
`), 0o600); err != nil {
		return err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{"../manifests/crds"},
		ErrorIfCRDPathMissing: true,
	}
	env.ControlPlane.GetAPIServer().Configure().
		Set("audit-policy-file", auditPolicy).
		Set("audit-log-path", e2e.auditLog).
		Set("audit-log-format", "json")
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	stopAll = append(stopAll, func() { _ = env.Stop() })
	e2e.cfg = cfg
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	if e2e.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	user, err := env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	e2e.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(e2e.kubeconfig, kc, 0o600); err != nil {
		return err
	}
	e2e.kubectl = filepath.Join(assets, "kubectl")

	ctx := context.Background()
	if err := e2e.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}); err != nil {
		return err
	}
	// The main server: self-managed certificates, injected into the webhook configuration.
	port, metricsPort, probePort := freePort(), freePort(), freePort()
	o := app.NewOptions()
	o.WebhookHost, o.WebhookPort = "127.0.0.1", port
	o.Namespace = systemNamespace
	o.ExtraHosts = []string{"127.0.0.1"}
	o.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	o.ProbeAddr = fmt.Sprintf("127.0.0.1:%d", probePort)
	o.CertCheck = 500 * time.Millisecond
	o.ShutdownTimeout = 5 * time.Second
	if err := o.Validate(); err != nil {
		return err
	}
	if err := startServer(cfg, o); err != nil {
		return err
	}
	e2e.webhookURL = fmt.Sprintf("https://127.0.0.1:%d%s", port, app.ValidatePath)
	e2e.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	e2e.probeURL = fmt.Sprintf("http://127.0.0.1:%d", probePort)

	// A second server in audit-only mode with a user-provided certificate (as from cert-manager),
	// serving the namespaces labelled for it.
	caPEM, certDir, err := userProvidedCert(dir)
	if err != nil {
		return err
	}
	auditPort := freePort()
	if err := startBinary(dir, "--kubeconfig", e2e.kubeconfig, "--webhook-host", "127.0.0.1",
		"--webhook-port", fmt.Sprint(auditPort), "--cert-dir", certDir, "--audit-only", "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", freePort())); err != nil {
		return err
	}
	e2e.auditURL = fmt.Sprintf("https://127.0.0.1:%d%s", auditPort, app.ValidatePath)

	if err := installWebhooks(ctx, caPEM); err != nil {
		return err
	}
	return waitReady(ctx)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBinary builds cmd/webhook and runs it as its own process, as a Deployment would.
func startBinary(dir string, args ...string) error {
	bin := filepath.Join(dir, "webhook")
	build := exec.Command("go", "build", "-o", bin, "../cmd/webhook")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building cmd/webhook: %w\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	logFile, err := os.Create(filepath.Join(dir, "webhook-audit-only.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if os.Getenv("E2E_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	stopAll = append(stopAll, func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = logFile.Close()
	})
	return nil
}

func startServer(cfg *rest.Config, o *app.Options) error {
	mgr, _, err := app.NewManager(rest.CopyConfig(cfg), o, crmetrics.Registry)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "webhook server stopped: %v\n", err)
		}
	}()
	stopAll = append(stopAll, func() { cancel(); <-done })
	return nil
}

// installWebhooks installs manifests/base/webhook.yaml pointed at the in-process server, and a
// copy of it for the audit-only server.
func installWebhooks(ctx context.Context, auditCA []byte) error {
	data, err := os.ReadFile("../manifests/base/webhook.yaml")
	if err != nil {
		return err
	}
	var main admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(data, &main); err != nil {
		return fmt.Errorf("manifests/base/webhook.yaml: %w", err)
	}
	audit := main.DeepCopy()
	wh := &main.Webhooks[0]
	wh.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &e2e.webhookURL}
	wh.NamespaceSelector.MatchExpressions = append(wh.NamespaceSelector.MatchExpressions, metav1.LabelSelectorRequirement{Key: auditOnlyLabel, Operator: metav1.LabelSelectorOpDoesNotExist})
	audit.Name = "portcullis-audit-only"
	awh := &audit.Webhooks[0]
	awh.Name = "audit.portcullis.dev"
	awh.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &e2e.auditURL, CABundle: auditCA}
	awh.NamespaceSelector.MatchExpressions = append(awh.NamespaceSelector.MatchExpressions, metav1.LabelSelectorRequirement{Key: auditOnlyLabel, Operator: metav1.LabelSelectorOpExists})
	for _, c := range []*admissionregistrationv1.ValidatingWebhookConfiguration{&main, audit} {
		if err := e2e.client.Create(ctx, c); err != nil {
			return fmt.Errorf("creating %s: %w", c.Name, err)
		}
	}
	return nil
}

// waitReady waits for /readyz, the injected caBundle, and a review answered through the API
// server.
func waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		last = readyOnce(ctx)
		if last == nil {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the webhook did not become ready: %w", last)
}

func readyOnce(ctx context.Context) error {
	resp, err := http.Get(e2e.probeURL + "/readyz")
	if err != nil {
		return err
	}
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := e2e.client.Get(ctx, client.ObjectKey{Name: "portcullis-validating"}, &cfg); err != nil {
		return err
	}
	if len(cfg.Webhooks[0].ClientConfig.CABundle) == 0 {
		return errors.New("caBundle not injected yet")
	}
	// A dry-run create goes through the webhook (sideEffects: None).
	ns := "default"
	pod := testPod("ready-probe", "nginx:1.27")
	pod.Namespace = ns
	return e2e.client.Create(ctx, pod, client.DryRunAll)
}

// userProvidedCert writes a CA-signed serving certificate for 127.0.0.1, as cert-manager would.
func userProvidedCert(dir string) (caPEM []byte, certDir string, err error) {
	certDir = filepath.Join(dir, "user-certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, "", err
	}
	ca, crt, key, err := testCertificate()
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), crt, 0o600); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), key, 0o600); err != nil {
		return nil, "", err
	}
	return ca, certDir, nil
}

// --- helpers shared by the e2e tests ---

func testPod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
}

// newNamespace creates a namespace for one test, with labels.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-", Labels: labels}}
	if err := e2e.client.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// applyPolicy creates or replaces a ClusterPolicy and waits until the server reports it Ready
// for this generation and, when ready, until the engine enforces it.
func applyPolicy(t *testing.T, yamlDoc string) *v1alpha1.ClusterPolicy {
	t.Helper()
	var p v1alpha1.ClusterPolicy
	if err := yaml.UnmarshalStrict([]byte(yamlDoc), &p); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var existing v1alpha1.ClusterPolicy
	switch err := e2e.client.Get(ctx, client.ObjectKey{Name: p.Name}, &existing); {
	case apierrors.IsNotFound(err):
		if err := e2e.client.Create(ctx, &p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), &p) })
	case err != nil:
		t.Fatal(err)
	default:
		existing.Spec = p.Spec
		if err := e2e.client.Update(ctx, &existing); err != nil {
			t.Fatal(err)
		}
		p = existing
	}
	eventually(t, 20*time.Second, func() error {
		if err := e2e.client.Get(ctx, client.ObjectKey{Name: p.Name}, &p); err != nil {
			return err
		}
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("status describes generation %d, want %d", p.Status.ObservedGeneration, p.Generation)
		}
		return nil
	})
	return &p
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubectl runs the kubectl built with the API server.
func kubectl(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), e2e.kubectl, append([]string{"--kubeconfig", e2e.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// auditEvents returns the audit events of the API server's log for one object.
func auditEvents(t *testing.T, namespace, name string) []auditEvent {
	t.Helper()
	f, err := os.Open(e2e.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue
		}
		if ev.ObjectRef.Namespace == namespace && ev.ObjectRef.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

type auditEvent struct {
	Verb      string `json:"verb"`
	ObjectRef struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		Resource  string `json:"resource"`
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }
