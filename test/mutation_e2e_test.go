package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

const unprobedDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %s
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{name: http, containerPort: 8080}]
`

// TestDefaultProbesMutation: through the real API server, a Deployment created without probes is
// stored with them (Deny enforces the mutation), an update does not patch again, and in Warn the
// object is unchanged and kubectl shows what would be added.
func TestDefaultProbesMutation(t *testing.T) {
	enforced := newNamespace(t, nil)
	warned := newNamespace(t, nil)
	applyPolicy(t, libraryPolicy(t, "default-probes", fmt.Sprintf(`  enforcement: Deny
  enforcementOverrides:
    - namespaces: [%s]
      enforcement: Warn
`, warned)))
	defer deletePolicy(t, "default-probes")

	if _, stderr, err := kubectl(t, fmt.Sprintf(unprobedDeployment, enforced, 1), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, stderr)
	}
	var d appsv1.Deployment
	if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: enforced, Name: "web"}, &d); err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.TCPSocket == nil || c.ReadinessProbe.TCPSocket.Port.String() != "http" ||
		c.ReadinessProbe.InitialDelaySeconds != 5 || c.ReadinessProbe.PeriodSeconds != 10 || c.ReadinessProbe.TimeoutSeconds != 1 {
		t.Errorf("readiness probe stored: %+v", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.InitialDelaySeconds != 15 || c.LivenessProbe.PeriodSeconds != 20 {
		t.Errorf("liveness probe stored: %+v", c.LivenessProbe)
	}
	if got := d.Annotations[policies.MutationsAnnotation]; got != "default-probes/probes" {
		t.Errorf("%s = %q", policies.MutationsAnnotation, got)
	}

	// An update: the API server records that our webhook did not mutate it.
	if _, stderr, err := kubectl(t, fmt.Sprintf(unprobedDeployment, enforced, 2), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply (update): %v\n%s", err, stderr)
	}
	ev := lastAuditEvent(t, enforced, "web", "patch")
	if !mutationRecorded(ev, false) {
		t.Errorf("the update was patched again, or not recorded: %v", ev.Annotations)
	}
	if create := lastAuditEvent(t, enforced, "web", "create"); !mutationRecorded(create, true) {
		t.Errorf("the create was not recorded as mutated: %v", create.Annotations)
	}

	// Warn: nothing changes, kubectl prints what would.
	_, stderr, err := kubectl(t, fmt.Sprintf(unprobedDeployment, warned, 1), "apply", "-f", "-")
	want := "Warning: [default-probes/probes] would add readinessProbe (tcpSocket :8080) to container web; would add livenessProbe (tcpSocket :8080) to container web"
	if err != nil || !strings.Contains(stderr, want) {
		t.Fatalf("kubectl apply in Warn: %v\n%s\nwant %s", err, stderr, want)
	}
	if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: warned, Name: "web"}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Template.Spec.Containers[0].ReadinessProbe != nil || d.Annotations[policies.MutationsAnnotation] != "" {
		t.Error("Warn mutated the object")
	}
}

// mutationRecorded reports whether the audit event says mutate.portcullis.dev ran with the
// given outcome (the API server's mutation.webhook.admission.k8s.io annotations).
func mutationRecorded(ev auditEvent, mutated bool) bool {
	for k, v := range ev.Annotations {
		if !strings.HasPrefix(k, "mutation.webhook.admission.k8s.io/") {
			continue
		}
		var rec struct {
			Webhook string `json:"webhook"`
			Mutated bool   `json:"mutated"`
		}
		if json.Unmarshal([]byte(v), &rec) == nil && rec.Webhook == "mutate.portcullis.dev" && rec.Mutated == mutated {
			return true
		}
	}
	return false
}
