package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// tenant returns a client that acts as user, a namespace tenant: bound in ns, and only there, to
// the shipped portcullis-policy-editor role (applied from manifests/base/rbac.yaml at setup) and
// to a role that writes Pods. It cannot read Secrets, nor write anything cluster-wide.
func tenant(t *testing.T, ns, user string) client.Client {
	t.Helper()
	ctx := t.Context()
	pods := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pods", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "create", "update", "delete"}}}}
	bindings := []*rbacv1.RoleBinding{
		{ObjectMeta: metav1.ObjectMeta{Name: user + "-policies", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "portcullis-policy-editor"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}},
		{ObjectMeta: metav1.ObjectMeta{Name: user + "-pods", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pods"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}},
	}
	if err := e2e.client.Create(ctx, pods); err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings {
		if err := e2e.client.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(e2e.cluster.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: e2e.client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// namespacedPolicy is a Policy of n rules made by rule(i).
func namespacedPolicy(ns, name string, n int, rule func(i int) v1alpha1.Rule) *v1alpha1.Policy {
	p := &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.PolicySpec{Enforcement: v1alpha1.Deny}}
	for i := range n {
		p.Spec.Rules = append(p.Spec.Rules, rule(i))
	}
	return p
}

func labelRule(i int) v1alpha1.Rule {
	return v1alpha1.Rule{Name: fmt.Sprintf("r%d", i), Labels: &v1alpha1.LabelsRule{Required: []string{"team"}}}
}

// costlyRule is estimated at 160,502 (see policies.EstimateSize): 40 of them are 6,420,080.
func costlyRule(i int) v1alpha1.Rule {
	return v1alpha1.Rule{Name: fmt.Sprintf("r%d", i), CEL: &v1alpha1.CELRule{
		Expression: fmt.Sprintf("podSpec.containers.all(a, podSpec.containers.all(b, a != b || %d >= 0))", i)}}
}

// waitPolicy waits until the Policy's Ready condition has reason and returns its message.
func waitPolicy(t *testing.T, c client.Client, ns, name, reason string) string {
	t.Helper()
	var msg string
	eventually(t, 20*time.Second, func() error {
		var p v1alpha1.Policy
		if err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: name}, &p); err != nil {
			return err
		}
		cond := apimeta.FindStatusCondition(p.Status.Conditions, "Ready")
		if cond == nil || cond.Reason != reason || cond.ObservedGeneration != p.Generation {
			return fmt.Errorf("%s/%s: condition %+v, want reason %s", ns, name, cond, reason)
		}
		msg = cond.Message
		return nil
	})
	return msg
}

// refusedAtDoor asserts that creating p as c is refused by the policy webhook with want.
func refusedAtDoor(t *testing.T, c client.Client, p client.Object, want string) {
	t.Helper()
	err := c.Create(t.Context(), p)
	if err == nil {
		t.Errorf("%s was admitted, want it refused with %q", p.GetName(), want)
		return
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("creating %s: %v, want a refusal containing %q", p.GetName(), err, want)
	}
}

// TestTenantBudget: a tenant, through the shipped RBAC, writes Policies past its namespace's
// budget (rules, estimated CEL cost, count). The policy webhook refuses the Policy that would push
// the namespace over, saying why; the namespace's other Policies, and every other namespace's,
// stay enforced; freeing budget lets the refused Policy in.
func TestTenantBudget(t *testing.T) {
	ctx := t.Context()
	quiet := newNamespace(t, nil)
	if err := e2e.client.Create(ctx, namespacedPolicy(quiet, "quiet", 1, labelRule)); err != nil {
		t.Fatal(err)
	}

	// Rules: 60 + 60 is past the 100 of --namespace-max-rules.
	ns := newNamespace(t, nil)
	alice := tenant(t, ns, "alice")
	if err := alice.Create(ctx, namespacedPolicy(ns, "first", 60, labelRule)); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, alice, ns, "first", "Compiled")
	refusedAtDoor(t, alice, namespacedPolicy(ns, "second", 60, labelRule),
		fmt.Sprintf(`admission webhook "policies.portcullis.dev" denied the request: portcullis: Policy %q: namespace over budget: its 60 rules would bring namespace %s to 120, past its budget of 100 (--namespace-max-rules)`, ns+"/second", ns))
	waitPolicy(t, e2e.client, quiet, "quiet", "Compiled")
	unlabelled := func(name string) *corev1.Pod {
		p := testPod(name, "registry.example.com/app:1")
		p.Namespace = ns
		return p
	}
	if err := alice.Create(ctx, unlabelled("denied"), client.DryRunAll); err == nil || !strings.Contains(err.Error(), "["+ns+"/first/r0]") {
		t.Errorf("the first Policy is not enforced: %v", err)
	}
	// Freeing budget lets the refused Policy in.
	if err := alice.Delete(ctx, &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: "first", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error { return alice.Create(ctx, namespacedPolicy(ns, "second", 60, labelRule)) })
	waitPolicy(t, alice, ns, "second", "Compiled")

	// Estimated cost: 6,420,080 twice is past the 10,000,000 of --namespace-max-cost.
	costly := newNamespace(t, nil)
	bob := tenant(t, costly, "bob")
	if err := bob.Create(ctx, namespacedPolicy(costly, "cost-1", 40, costlyRule)); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, bob, costly, "cost-1", "Compiled")
	refusedAtDoor(t, bob, namespacedPolicy(costly, "cost-2", 40, costlyRule),
		"its CEL expressions are estimated to cost 6,420,080; with the 6,420,080 of namespace "+costly+"'s other Policies that is past its budget of 10,000,000 (--namespace-max-cost)")

	// Count: a 21st Policy is past the 20 of --namespace-max-policies.
	many := newNamespace(t, nil)
	carol := tenant(t, many, "carol")
	for i := range 20 {
		if err := carol.Create(ctx, namespacedPolicy(many, fmt.Sprintf("p%02d", i), 1, labelRule)); err != nil {
			t.Fatal(err)
		}
	}
	waitPolicy(t, carol, many, "p19", "Compiled")
	refusedAtDoor(t, carol, namespacedPolicy(many, "p20", 1, labelRule),
		"namespace "+many+" already has 20 Policies, its budget (--namespace-max-policies)")

	// The tenant's role reaches nothing outside its namespace.
	if err := carol.Create(ctx, namespacedPolicy(quiet, "intruder", 1, labelRule)); !apierrors.IsForbidden(err) {
		t.Errorf("a tenant wrote a Policy in another namespace: %v", err)
	}
	if err := carol.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: "portcullis-webhook-tls"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("a tenant read a Secret: %v", err)
	}
}

// TestExceptionLifetimeAtTheDoor: an exception that asks to last longer than
// --max-exception-lifetime (90 days) is refused when it is written; one within it is admitted.
func TestExceptionLifetimeAtTheDoor(t *testing.T) {
	ns := newNamespace(t, nil)
	alice := tenant(t, ns, "alice-exceptions")
	exception := func(name string, expires time.Time) *v1alpha1.PolicyException {
		return &v1alpha1.PolicyException{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1alpha1.PolicyExceptionSpec{
			Exceptions: []v1alpha1.ExceptionTarget{{PolicyName: "own"}}, Owner: "team", Reason: "migration",
			Expires: metav1.NewTime(expires)}}
	}
	err := alice.Create(t.Context(), exception("forever", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)))
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `spec.expires: Invalid value: "9999-12-31T00:00:00Z": must be at most 90d after the exception's creation`) {
		t.Errorf("an exception past the maximum lifetime: %v", err)
	}
	if err := alice.Create(t.Context(), exception("month", time.Now().Add(30*24*time.Hour))); err != nil {
		t.Errorf("an exception within the maximum lifetime: %v", err)
	}
}
