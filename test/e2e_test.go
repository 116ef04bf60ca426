package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/cmd/webhook/app"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/test/cluster"
)

// The e2e environment: a real kube-apiserver and etcd (envtest, binaries from make envtest-bins),
// the webhook server in-process exactly as cmd/webhook wires it, and the kubectl built with them.
var e2e struct {
	cluster    *cluster.Cluster
	client     client.Client
	webhookURL string // the main server, self-managed certificates
	auditURL   string // a second server with --audit-only and a user-provided certificate
	auditLog   string // its log file (empty with E2E_VERBOSE: its log goes to stderr)
	// secondMetricsURL serves the second server's metrics (plain HTTP): it leads when the main
	// server has lost the lease, and then runs the leader's work, the audit included.
	secondMetricsURL string
	metricsURL       string
	// metricsToken is a ServiceAccount token bound to the shipped portcullis-metrics-reader role.
	metricsToken string
	probeURL     string
	// webhookBin is the server binary built for the e2e; dir holds the run's files; assets the
	// control plane's binaries, for tests that start a control plane of their own.
	webhookBin, dir, assets string
	certDir                 string // a user-provided certificate for 127.0.0.1
	caPEM                   []byte // its CA
}

const (
	systemNamespace = "portcullis-system"
	auditOnlyLabel  = "e2e.portcullis.dev/audit-only"
	attackLabel     = "e2e.portcullis.dev/attack" // namespaces judged by TestHostileTenant's server
)

func TestMain(m *testing.M) {
	os.Exit(runE2E(m))
}

func runE2E(m *testing.M) int {
	if os.Getenv("E2E_VERBOSE") != "" {
		ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr)))
	} else {
		ctrl.SetLogger(logr.Discard()) // tests assert outcomes; E2E_VERBOSE=1 shows the servers' logs
		klog.SetLogger(logr.Discard())
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets, _ = filepath.Abs("../bin/k8s")
	}
	dir, err := os.MkdirTemp("", "portcullis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	e2e.assets = assets
	if err := setup(dir, assets); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		teardown()
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
	stopAll = nil
}

func setup(dir, assets string) error {
	c, err := cluster.Start(assets, "../manifests/crds", dir)
	if err != nil {
		return err
	}
	stopAll = append(stopAll, c.Stop)
	e2e.cluster = c
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	_ = openreports.Install(scheme)
	if e2e.client, err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	ctx := context.Background()
	if err := e2e.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}); err != nil {
		return err
	}
	ports := make([]int, 6)
	for i := range ports {
		if ports[i], err = cluster.FreePort(); err != nil {
			return err
		}
	}
	// The main server, in-process exactly as cmd/webhook wires it: self-managed certificates,
	// injected into the webhook configuration.
	o := app.NewOptions()
	o.WebhookHost, o.WebhookPort = "127.0.0.1", ports[0]
	o.Namespace = systemNamespace
	o.ExtraHosts = []string{"127.0.0.1"}
	o.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	o.ProbeAddr = fmt.Sprintf("127.0.0.1:%d", ports[2])
	o.CertCheck = 500 * time.Millisecond
	o.InsecureRegistries = []string{"127.0.0.1"} // the tests' registries on loopback: plain HTTP
	o.PrivateRegistries = []string{"127.0.0.1"}  // and a private address
	o.KeyRefresh = time.Second
	o.ShutdownTimeout = 5 * time.Second
	o.LameDuck = time.Second
	if err := o.Validate(); err != nil {
		return err
	}
	if err := startServer(c.Config, o); err != nil {
		return err
	}
	e2e.webhookURL = fmt.Sprintf("https://127.0.0.1:%d%s", ports[0], app.ValidatePath)
	e2e.metricsURL = fmt.Sprintf("https://127.0.0.1:%d/metrics", ports[1])
	if err := setupMetricsScraper(ctx); err != nil {
		return err
	}
	e2e.probeURL = fmt.Sprintf("http://127.0.0.1:%d", ports[2])

	main, err := cluster.WebhookConfig("../manifests/base/webhook.yaml", strings.TrimSuffix(e2e.webhookURL, app.ValidatePath), nil)
	if err != nil {
		return err
	}
	cluster.ExcludeLabel(main, auditOnlyLabel, metav1.LabelSelectorOpDoesNotExist)
	cluster.ExcludeLabel(main, attackLabel, metav1.LabelSelectorOpDoesNotExist)
	mutating, err := cluster.MutatingConfig("../manifests/base/mutating.yaml", strings.TrimSuffix(e2e.webhookURL, app.ValidatePath), nil)
	if err != nil {
		return err
	}
	cluster.ExcludeLabel(mutating, attackLabel, metav1.LabelSelectorOpDoesNotExist)
	for _, cfg := range []client.Object{main, mutating} {
		if err := e2e.client.Create(ctx, cfg); err != nil {
			return fmt.Errorf("creating %s: %w", cfg.GetName(), err)
		}
	}
	// Ready: the main server leads (it injected the caBundle), before any other replica starts.
	if err := waitReady(ctx); err != nil {
		return err
	}

	// A second server, the real binary in its own process, in audit-only mode with a
	// user-provided certificate (as from cert-manager), for the namespaces labelled for it. It
	// campaigns for the same lease as a follower would.
	caPEM, certDir, err := userProvidedCert(dir)
	if err != nil {
		return err
	}
	bin, err := cluster.BuildWebhook("..", dir)
	if err != nil {
		return err
	}
	e2e.webhookBin, e2e.dir, e2e.certDir, e2e.caPEM = bin, dir, certDir, caPEM
	logFile, err := os.Create(filepath.Join(dir, "webhook-audit-only.log"))
	if err != nil {
		return err
	}
	e2e.auditLog = logFile.Name()
	if os.Getenv("E2E_VERBOSE") != "" {
		logFile, e2e.auditLog = os.Stderr, ""
	}
	auditProbe := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[4])
	p, err := cluster.StartProcess(bin, logFile, "--kubeconfig", c.Kubeconfig, "--webhook-host", "127.0.0.1",
		"--webhook-port", fmt.Sprint(ports[3]), "--cert-dir", certDir, "--audit-only", "--lame-duck=1s",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[5]), "--metrics-secure=false",
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[4]))
	if err != nil {
		return err
	}
	stopAll = append(stopAll, p.Stop)
	e2e.auditURL = fmt.Sprintf("https://127.0.0.1:%d%s", ports[3], app.ValidatePath)
	e2e.secondMetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[5])
	audit, err := cluster.WebhookConfig("../manifests/base/webhook.yaml", strings.TrimSuffix(e2e.auditURL, app.ValidatePath), caPEM)
	if err != nil {
		return err
	}
	audit.Webhooks = audit.Webhooks[:1] // the main server judges the policies themselves
	audit.Name, audit.Webhooks[0].Name, audit.Webhooks[0].Rules = "portcullis-audit-only", "audit.portcullis.dev", cluster.PodRules()
	cluster.ExcludeLabel(audit, auditOnlyLabel, metav1.LabelSelectorOpExists)
	if err := e2e.client.Create(ctx, audit); err != nil {
		return fmt.Errorf("creating %s: %w", audit.GetName(), err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(auditProbe)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the audit-only server did not become ready (log: %s)", logFile.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
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

// waitReady waits for /readyz, the injected caBundle (this server leads), and the API server
// taking a create.
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
	_ = resp.Body.Close()
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
	var mcfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := e2e.client.Get(ctx, client.ObjectKey{Name: "portcullis-mutating"}, &mcfg); err != nil {
		return err
	}
	if len(mcfg.Webhooks[0].ClientConfig.CABundle) == 0 {
		return errors.New("caBundle not injected into the mutating webhook yet")
	}
	// The API server takes a dry-run create: with no policy yet, the webhooks' rules are empty
	// and intercept nothing, so this checks the API server, not the webhook.
	pod := testPod("ready-probe", "nginx:1.27")
	pod.Namespace = "default"
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

// newNamespace creates a namespace for one test, with labels. Its Policies and exceptions are
// deleted when the test ends (no namespace controller runs here to do it), so that what they
// match, and the webhook rules that follow them, do not outlive the test.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-", Labels: labels}}
	if err := e2e.client.Create(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, obj := range []client.Object{&v1alpha1.Policy{}, &v1alpha1.PolicyException{}} {
			if err := e2e.client.DeleteAllOf(context.Background(), obj, client.InNamespace(ns.Name)); err != nil {
				t.Errorf("deleting the %T objects of %s: %v", obj, ns.Name, err)
			}
		}
	})
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
	// The server writes the policy's status (its audit counts) at any time: an update that
	// meets a newer version is read and made again.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var existing v1alpha1.ClusterPolicy
		switch err := e2e.client.Get(ctx, client.ObjectKey{Name: p.Name}, &existing); {
		case apierrors.IsNotFound(err):
			if err := e2e.client.Create(ctx, &p); err != nil {
				return err
			}
			t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), &p) })
			return nil
		case err != nil:
			return err
		default:
			existing.Spec = p.Spec
			if err := e2e.client.Update(ctx, &existing); err != nil {
				return err
			}
			p = existing
			return nil
		}
	})
	if err != nil {
		t.Fatal(err)
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
	return e2e.cluster.Kubectl(t.Context(), stdin, args...)
}

// auditEvents returns the audit events of the API server's log for one object.
func auditEvents(t *testing.T, namespace, name string) []auditEvent {
	t.Helper()
	f, err := os.Open(e2e.cluster.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
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
