package test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/source"
)

// validatingRules returns the rules of the shipped validating webhook as the API server holds them.
func validatingRules(t *testing.T) []admissionregistrationv1.RuleWithOperations {
	t.Helper()
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := e2e.client.Get(t.Context(), client.ObjectKey{Name: "portcullis-validating"}, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Webhooks[0].Rules
}

func intercepts(rules []admissionregistrationv1.RuleWithOperations, group, resource string) bool {
	return slices.ContainsFunc(rules, func(r admissionregistrationv1.RuleWithOperations) bool {
		return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource)
	})
}

// TestWebhookRulesFollowPolicies: a Deny ClusterPolicy on Services makes the API server send
// Services to the webhook, which denies a NodePort Service; an edit that strips the rules is
// repaired; deleting the policy stops the interception.
func TestWebhookRulesFollowPolicies(t *testing.T) {
	ns := newNamespace(t, nil)
	eventually(t, 10*time.Second, func() error { // the policies of earlier tests are gone
		if intercepts(validatingRules(t), "", "services") {
			return fmt.Errorf("services intercepted before any policy asks for them: %+v", validatingRules(t))
		}
		return nil
	})
	p := applyPolicy(t, `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: no-nodeports}
spec:
  enforcement: Deny
  match: {kinds: [core/Service]}
  rules:
    - name: type
      cel: {expression: "object.spec.type != 'NodePort'", message: "NodePort services are not allowed: use a LoadBalancer or an Ingress"}
`)
	if c := apimeta.FindStatusCondition(p.Status.Conditions, source.ConditionIntercepted); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Intercepted condition %+v, want True", c)
	}
	// Ready means enforced: the rules are in place before the status says so.
	if !intercepts(validatingRules(t), "", "services") {
		t.Fatalf("policy Ready but services not intercepted: %+v", validatingRules(t))
	}
	service := func(name string, typ corev1.ServiceType) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	}
	err := e2e.client.Create(t.Context(), service("exposed", corev1.ServiceTypeNodePort))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "[no-nodeports/type] NodePort services are not allowed") {
		t.Fatalf("NodePort Service: got %v, want the policy's denial", err)
	}
	if err := e2e.client.Create(t.Context(), service("internal", corev1.ServiceTypeClusterIP)); err != nil {
		t.Fatalf("ClusterIP Service: %v", err)
	}

	// Someone strips the rules (a kubectl apply of the shipped manifest, say): repaired at once.
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := e2e.client.Get(t.Context(), client.ObjectKey{Name: "portcullis-validating"}, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks[0].Rules = []admissionregistrationv1.RuleWithOperations{}
	if err := e2e.client.Update(t.Context(), &cfg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 10*time.Second, func() error {
		if !intercepts(validatingRules(t), "", "services") {
			return fmt.Errorf("rules not restored: %+v", validatingRules(t))
		}
		return nil
	})
	t.Logf("stripped rules restored in %s", time.Since(start).Round(time.Millisecond))

	deletePolicy(t, "no-nodeports")
	eventually(t, 10*time.Second, func() error {
		if intercepts(validatingRules(t), "", "services") {
			return fmt.Errorf("services still intercepted: %+v", validatingRules(t))
		}
		return nil
	})
	if err := e2e.client.Create(t.Context(), service("exposed", corev1.ServiceTypeNodePort)); err != nil {
		t.Fatalf("NodePort Service once the policy is gone: %v", err)
	}
}

// TestNotInterceptedSaysSo: a policy on kinds the webhooks cannot send it is Ready for the rest,
// and its Intercepted condition names each kind and why.
func TestNotInterceptedSaysSo(t *testing.T) {
	p := applyPolicy(t, `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: odd-kinds}
spec:
  enforcement: Audit
  match: {kinds: [coordination.k8s.io/Lease, widgets.example.com/Widget, core/ConfigMap]}
  podControllers: false
  rules:
    - name: named
      cel: {expression: "has(object.metadata.name)"}
`)
	c := apimeta.FindStatusCondition(p.Status.Conditions, source.ConditionIntercepted)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != "NotIntercepted" {
		t.Fatalf("Intercepted condition %+v, want False NotIntercepted", c)
	}
	for _, want := range []string{`kind "coordination.k8s.io/Lease" is never intercepted`, `kind "widgets.example.com/Widget" is not served`} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("condition message %q does not say %q", c.Message, want)
		}
	}
	if ready := apimeta.FindStatusCondition(p.Status.Conditions, source.ConditionReady); ready == nil || ready.Status != metav1.ConditionTrue {
		t.Errorf("Ready %+v, want True: the ConfigMaps are enforced", ready)
	}
	if rules := validatingRules(t); !intercepts(rules, "", "configmaps") || intercepts(rules, "coordination.k8s.io", "leases") {
		t.Errorf("rules %+v: want configmaps, never leases", rules)
	}
}

// TestTenantPolicyKindsBounded: a tenant's Policy on Secrets and ClusterRoles cannot make the
// cluster-wide webhook intercept them (--namespaced-policy-kinds); its ConfigMaps are allowed.
func TestTenantPolicyKindsBounded(t *testing.T) {
	ns := newNamespace(t, nil)
	p := namespacedPolicy(ns, "greedy", 1, labelRule)
	p.Spec.Match.Kinds = []string{"core/Secret", "rbac.authorization.k8s.io/ClusterRole", "core/ConfigMap"}
	if err := e2e.client.Create(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), p) })
	waitPolicy(t, e2e.client, ns, "greedy", "Compiled")
	var got v1alpha1.Policy
	if err := e2e.client.Get(t.Context(), client.ObjectKeyFromObject(p), &got); err != nil {
		t.Fatal(err)
	}
	c := apimeta.FindStatusCondition(got.Status.Conditions, source.ConditionIntercepted)
	if c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("Intercepted %+v, want False", c)
	}
	for _, want := range []string{`kind "core/Secret" is not intercepted for namespaced Policies in secrets`, `kind "rbac.authorization.k8s.io/ClusterRole" is not intercepted for namespaced Policies`, "(--namespaced-policy-kinds)"} {
		if !strings.Contains(c.Message, want) {
			t.Errorf("condition message %q does not say %q", c.Message, want)
		}
	}
	if rules := validatingRules(t); intercepts(rules, "", "secrets") || intercepts(rules, "rbac.authorization.k8s.io", "clusterroles") || !intercepts(rules, "", "configmaps") {
		t.Errorf("rules %+v: want configmaps, neither secrets nor clusterroles", rules)
	}
}
