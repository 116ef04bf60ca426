package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

const privilegedPod = `apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app.kubernetes.io/name: debug}
spec:
  containers:
  - name: app
    image: busybox:1.37
    securityContext: {privileged: true}
`

// libraryPolicy reads a library policy and sets its enforcement and overrides.
func libraryPolicy(t *testing.T, name, extra string) string {
	t.Helper()
	data, err := os.ReadFile("../manifests/library/" + name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "  enforcement: Audit\n", extra, 1)
	if doc == string(data) {
		t.Fatalf("%s has no enforcement: Audit line", name)
	}
	return doc
}

// TestEnforcementModes applies the library's pod-security-baseline in Deny, with Warn and Audit
// overrides by namespace label, and creates the same privileged Pod in each mode with kubectl.
func TestEnforcementModes(t *testing.T) {
	applyPolicy(t, libraryPolicy(t, "pod-security-baseline", `  enforcement: Deny
  enforcementOverrides:
    - namespaceSelector: {matchLabels: {e2e.portcullis.dev/mode: warn}}
      enforcement: Warn
    - namespaceSelector: {matchLabels: {e2e.portcullis.dev/mode: audit}}
      enforcement: Audit
`))
	defer deletePolicy(t, "pod-security-baseline")
	const violation = `[pod-security-baseline/baseline] violates PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true)`

	t.Run("Deny", func(t *testing.T) {
		ns := newNamespace(t, nil)
		_, stderr, err := kubectl(t, fmt.Sprintf(privilegedPod, "debug", ns), "apply", "-f", "-")
		want := `admission webhook "validate.portcullis.dev" denied the request: ` + violation
		if err == nil || !strings.Contains(stderr, want) {
			t.Fatalf("kubectl apply: err=%v, stderr:\n%s\nwant it to contain:\n%s", err, stderr, want)
		}
		assertAbsent(t, ns, "debug")
		ev := lastAuditEvent(t, ns, "debug", "create")
		if ev.ResponseStatus.Code != http.StatusForbidden {
			t.Errorf("audit log: response code %d, want 403", ev.ResponseStatus.Code)
		}
	})
	t.Run("Warn", func(t *testing.T) {
		ns := newNamespace(t, map[string]string{"e2e.portcullis.dev/mode": "warn"})
		_, stderr, err := kubectl(t, fmt.Sprintf(privilegedPod, "debug", ns), "apply", "-f", "-")
		if err != nil || !strings.Contains(stderr, "Warning: "+violation) {
			t.Fatalf("kubectl apply: err=%v, stderr:\n%s\nwant the warning:\n%s", err, stderr, violation)
		}
	})
	t.Run("Audit", func(t *testing.T) {
		ns := newNamespace(t, map[string]string{"e2e.portcullis.dev/mode": "audit"})
		_, stderr, err := kubectl(t, fmt.Sprintf(privilegedPod, "debug", ns), "apply", "-f", "-")
		if err != nil || strings.Contains(stderr, "Warning") {
			t.Fatalf("kubectl apply: err=%v, stderr:\n%s", err, stderr)
		}
		ev := lastAuditEvent(t, ns, "debug", "create")
		got := ev.Annotations["validate.portcullis.dev/pod-security-baseline.baseline"]
		if got != "Audit: "+strings.TrimPrefix(violation, "[pod-security-baseline/baseline] ") {
			t.Errorf("audit annotation = %q; annotations: %v", got, ev.Annotations)
		}
	})
}

// TestDeploymentsCreateAndUpdate: the template of a Deployment is checked on CREATE and UPDATE,
// with the real field path.
func TestDeploymentsCreateAndUpdate(t *testing.T) {
	applyPolicy(t, libraryPolicy(t, "require-requests-limits", "  enforcement: Deny\n"))
	defer deletePolicy(t, "require-requests-limits")
	ns := newNamespace(t, nil)
	ctx := t.Context()
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: mustQuantity("100m"), corev1.ResourceMemory: mustQuantity("64Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: mustQuantity("64Mi")},
				}}}},
			},
		},
	}
	if err := e2e.client.Create(ctx, d); err != nil {
		t.Fatalf("a compliant Deployment was rejected: %v", err)
	}
	d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, corev1.Container{Name: "sidecar", Image: "envoy:1.31"})
	err := e2e.client.Update(ctx, d)
	want := `[require-requests-limits/requests-and-limits] spec.template.spec.containers[1] ("sidecar") must set resources.{requests.cpu, requests.memory, limits.memory}`
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("update: %v\nwant a denial containing %s", err, want)
	}
	// A bare Pod with limits only passes: its requests default to its limits, as the CLI knows.
	pod := testPod("limits-only", "nginx:1.27")
	pod.Namespace = ns
	pod.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: mustQuantity("100m"), corev1.ResourceMemory: mustQuantity("64Mi")}
	if err := e2e.client.Create(ctx, pod); err != nil {
		t.Fatalf("a Pod whose requests default to its limits was rejected: %v", err)
	}
}

// TestAuditOnly: the audit-only server admits what the same Deny policy would deny, and records it.
// It is a process of its own, which gave back its binary's pages once ready
// (--binary-page-release-interval): what it admits here runs on code mapped back since.
func TestAuditOnly(t *testing.T) {
	if e2e.auditLog != "" {
		eventually(t, 20*time.Second, func() error { return gaveBackPages(e2e.auditLog) })
	}
	applyPolicy(t, libraryPolicy(t, "pod-security-baseline", "  enforcement: Deny\n"))
	defer deletePolicy(t, "pod-security-baseline")
	ns := newNamespace(t, map[string]string{auditOnlyLabel: "true"})
	var stderr string
	var err error
	// The audit-only server is a separate process; give its informer a moment to see the policy.
	eventually(t, 20*time.Second, func() error {
		_ = e2e.client.Delete(t.Context(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: ns}})
		_, stderr, err = kubectl(t, fmt.Sprintf(privilegedPod, "debug", ns), "apply", "-f", "-")
		if err != nil {
			return fmt.Errorf("kubectl apply: %w: %s", err, stderr)
		}
		ev := lastAuditEvent(t, ns, "debug", "create")
		if got := ev.Annotations["audit.portcullis.dev/pod-security-baseline.baseline"]; !strings.HasPrefix(got, "Audit: violates PodSecurity") {
			return fmt.Errorf("annotations %v", ev.Annotations)
		}
		return nil
	})
}

// TestSystemNamespacesLeftAlone: the webhook configuration never intercepts system namespaces.
func TestSystemNamespacesLeftAlone(t *testing.T) {
	applyPolicy(t, libraryPolicy(t, "pod-security-baseline", "  enforcement: Deny\n"))
	defer deletePolicy(t, "pod-security-baseline")
	for _, ns := range []string{"kube-system", systemNamespace} {
		if err := e2e.client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		name := "privileged-" + fmt.Sprint(time.Now().UnixNano())
		if _, stderr, err := kubectl(t, fmt.Sprintf(privilegedPod, name, ns), "apply", "-f", "-"); err != nil {
			t.Errorf("%s: %v\n%s", ns, err, stderr)
		}
	}
	// And the same Pod elsewhere is denied, so the policy was in force.
	ns := newNamespace(t, nil)
	if _, _, err := kubectl(t, fmt.Sprintf(privilegedPod, "debug", ns), "apply", "-f", "-"); err == nil {
		t.Error("the policy was not in force")
	}
}

// TestInvalidPolicies: the CRD's schema rejects what it can; the server reports the rest in status.
func TestInvalidPolicies(t *testing.T) {
	ctx := t.Context()
	rejected := []struct{ doc, want string }{
		{"spec: {enforcement: Block, rules: [{name: a, cel: {expression: 'true'}}]}", `spec.enforcement: Unsupported value: "Block"`},
		{"spec: {rules: [{name: a, cel: {expression: 'true'}, labels: {required: [x]}}]}", "exactly one of podSecurity, resources, labels, cel, defaultProbes or verifyImages must be set"},
		{"spec: {rules: [{name: a}]}", "exactly one of podSecurity, resources, labels, cel, defaultProbes or verifyImages must be set"},
		{"spec: {rules: []}", "spec.rules: Invalid value: 0: spec.rules in body should have at least 1 items"},
		{"spec: {rules: [{name: a, podSecurity: {level: privileged}}]}", `spec.rules[0].podSecurity.level: Unsupported value: "privileged"`},
		{"spec: {rules: [{name: Bad_Name, cel: {expression: 'true'}}]}", "spec.rules[0].name: Invalid value"},
		{"spec: {rules: [{name: a, resources: {}}]}", "list at least one of requests or limits"},
	}
	for i, r := range rejected {
		var p v1alpha1.ClusterPolicy
		if err := yaml.Unmarshal([]byte(r.doc), &p); err != nil {
			t.Fatal(err)
		}
		p.Name = fmt.Sprintf("invalid-%d", i)
		err := e2e.client.Create(ctx, &p)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: got %v, want a rejection containing %q", r.doc, err, r.want)
		}
	}

	// Valid for the schema, invalid for the engine: the policy webhook refuses it as the API
	// server refuses what fails its own validation (422 Invalid, one cause per field), so no
	// policy is stored that would not be enforced.
	broken := `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: broken-cel}
spec:
  enforcement: Deny
  rules:
    - name: not-boolean
      cel: {expression: "object.metadata.name"}
    - name: too-costly
      cel: {expression: "object.spec.items.all(a, object.spec.items.all(b, object.spec.items.all(c, true)))"}
`
	_, stderr, err := kubectl(t, broken, "apply", "-f", "-")
	for _, want := range []string{
		`The ClusterPolicy "broken-cel" is invalid:`,
		`* spec.rules[0] (not-boolean).cel.expression: Invalid value: "object.metadata.name": must evaluate to bool but got dyn`,
		`* spec.rules[1] (too-costly).cel.expression: Invalid value: "object.spec.items.all(a, object.spec.items.all(b, object.spec.items.all(c, true)))": estimated cost 3,050,502 exceeds the limit of 1,000,000 per expression`,
	} {
		if err == nil || !strings.Contains(stderr, want) {
			t.Errorf("kubectl apply of a broken policy: %v\n%s\nwant %q", err, stderr, want)
		}
	}
	var none v1alpha1.ClusterPolicy
	if err := e2e.client.Get(ctx, client.ObjectKey{Name: "broken-cel"}, &none); !apierrors.IsNotFound(err) {
		t.Errorf("the refused policy was stored: %v", err)
	}

	// What the webhook cannot know when the policy is written (a key's Secret is not read at the
	// door) is reported in status, with the field path.
	p := applyPolicy(t, `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: broken-key}
spec:
  enforcement: Deny
  rules:
    - name: signed
      verifyImages:
        images: ["registry.example.com/*"]
        keys: [{secretRef: {name: no-such-secret}}]
`)
	defer deletePolicy(t, "broken-key")
	cond := meta.FindStatusCondition(p.Status.Conditions, "Ready")
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != "CompileError" || cond.ObservedGeneration != p.Generation {
		t.Fatalf("Ready condition: %+v", cond)
	}
	want := `spec.rules[0] (signed).verifyImages.keys[0].secretRef: Invalid value: "portcullis-system/no-such-secret": key "cosign.pub": no such Secret or key, or not a PEM public key`
	if len(p.Status.Errors) != 1 || p.Status.Errors[0] != want {
		t.Errorf("status.errors = %q, want [%q]", p.Status.Errors, want)
	}
	// kubectl shows it in the printer columns.
	out, _, err := kubectl(t, "", "get", "clusterpolicy", "broken-key")
	if err != nil || !strings.Contains(out, "ENFORCEMENT") || !strings.Contains(out, "False") {
		t.Errorf("kubectl get: %v\n%s", err, out)
	}
	if m := scrapeMetrics(t); !strings.Contains(m, `portcullis_policy_compile_errors{kind="ClusterPolicy",policy="broken-key"} 1`) {
		t.Errorf("compile error metric missing")
	}
}

// TestPolicyChangeWithoutRestart: a policy switched from Audit to Deny, then deleted, takes
// effect on the running server.
func TestPolicyChangeWithoutRestart(t *testing.T) {
	ns := newNamespace(t, nil)
	policy := `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: no-debug-pods}
spec:
  enforcement: %s
  match: {kinds: [Pod], namespaces: [%s]}
  rules:
    - name: name
      cel: {expression: "!object.metadata.name.startsWith('debug')", message: "no debug pods"}
`
	create := func(name string) error {
		pod := testPod(name, "nginx:1.27")
		pod.Namespace = ns
		return e2e.client.Create(t.Context(), pod, client.DryRunAll)
	}
	applyPolicy(t, fmt.Sprintf(policy, "Audit", ns))
	if err := create("debug-1"); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	applyPolicy(t, fmt.Sprintf(policy, "Deny", ns))
	eventually(t, 10*time.Second, func() error {
		if err := create("debug-2"); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "[no-debug-pods/name] no debug pods") {
			return fmt.Errorf("want a denial, got %w", err)
		}
		return nil
	})
	deletePolicy(t, "no-debug-pods")
	eventually(t, 10*time.Second, func() error { return create("debug-3") })
}

// TestFailurePolicy: an evaluation error denies under Fail and warns under Ignore.
func TestFailurePolicy(t *testing.T) {
	ns := newNamespace(t, nil)
	policy := `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: runtime-error}
spec:
  enforcement: Deny
  failurePolicy: %s
  match: {kinds: [Pod], namespaces: [%s]}
  rules:
    - name: missing-key
      cel: {expression: "object.metadata.annotations['owner'] == 'x'"}
`
	defer deletePolicy(t, "runtime-error")
	applyPolicy(t, fmt.Sprintf(policy, "Fail", ns))
	_, stderr, err := kubectl(t, fmt.Sprintf(privilegedPod, "p1", ns), "apply", "--dry-run=server", "-f", "-")
	if err == nil || !strings.Contains(stderr, "[runtime-error/missing-key] evaluation error (failurePolicy Fail)") {
		t.Errorf("Fail: err=%v stderr=%s", err, stderr)
	}
	applyPolicy(t, fmt.Sprintf(policy, "Ignore", ns))
	_, stderr, err = kubectl(t, fmt.Sprintf(privilegedPod, "p2", ns), "apply", "--dry-run=server", "-f", "-")
	if err != nil || !strings.Contains(stderr, "Warning: [runtime-error/missing-key] evaluation error ignored (failurePolicy Ignore)") {
		t.Errorf("Ignore: err=%v stderr=%s", err, stderr)
	}
}

func deletePolicy(t *testing.T, name string) {
	t.Helper()
	err := e2e.client.Delete(context.Background(), &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	// Wait until the engine no longer has it: the metric of active policies reflects the engine.
	eventually(t, 10*time.Second, func() error {
		var p v1alpha1.ClusterPolicy
		if err := e2e.client.Get(context.Background(), client.ObjectKey{Name: name}, &p); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %w", err)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // the informer delivers the deletion to both servers
}

func assertAbsent(t *testing.T, ns, name string) {
	t.Helper()
	err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &corev1.Pod{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("%s/%s exists after a denial (%v)", ns, name, err)
	}
}

func lastAuditEvent(t *testing.T, ns, name, verb string) auditEvent {
	t.Helper()
	var last *auditEvent
	eventually(t, 5*time.Second, func() error {
		for _, ev := range auditEvents(t, ns, name) {
			if ev.Verb == verb {
				last = &ev
			}
		}
		if last == nil {
			return fmt.Errorf("no %s event for %s/%s in the audit log", verb, ns, name)
		}
		return nil
	})
	return *last
}

func scrapeMetrics(t *testing.T) string {
	t.Helper()
	resp, err := getMetrics(e2e.metricsToken)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gaveBackPages reads a server's log for its first release of its binary's pages, which must
// have left fewer of them resident.
func gaveBackPages(logFile string) error {
	data, err := os.ReadFile(logFile) //nolint:gosec // the e2e run's own file
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		var entry struct {
			Msg      string `json:"msg"`
			Before   int64  `json:"residentBefore"`
			After    int64  `json:"residentAfter"`
			Mappings int    `json:"mappings"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Msg != "gave back the binary's pages" {
			continue
		}
		if entry.Mappings < 2 || entry.Before <= 0 || entry.After >= entry.Before {
			return fmt.Errorf("%s: %s: want the code and read-only data mappings, fewer bytes resident after", logFile, line)
		}
		return nil
	}
	return fmt.Errorf("%s: no release of the binary's pages logged", logFile)
}
