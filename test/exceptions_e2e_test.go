package test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// TestNamespacedPolicyAndException: a Policy applies in its own namespace only, and a
// PolicyException exempts what it selects, until it expires, with its state in status.
func TestNamespacedPolicyAndException(t *testing.T) {
	ctx := t.Context()
	team := newNamespace(t, nil)
	other := newNamespace(t, nil)
	var p v1alpha1.Policy
	if err := yaml.UnmarshalStrict([]byte(fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: Policy
metadata: {name: baseline, namespace: %s}
spec:
  enforcement: Deny
  rules:
    - name: pss
      podSecurity: {level: baseline}
`, team)), &p); err != nil {
		t.Fatal(err)
	}
	if err := e2e.client.Create(ctx, &p); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		if _, _, err := kubectl(t, fmt.Sprintf(privilegedPod, "probe", team), "apply", "--dry-run=server", "-f", "-"); err == nil {
			return fmt.Errorf("the Policy is not enforced yet")
		}
		return nil
	})
	if _, stderr, err := kubectl(t, fmt.Sprintf(privilegedPod, "elsewhere", other), "apply", "--dry-run=server", "-f", "-"); err != nil {
		t.Errorf("a Policy reached another namespace: %s", stderr)
	}

	exception := func(name, expires string) *v1alpha1.PolicyException {
		return &v1alpha1.PolicyException{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: team},
			Spec: v1alpha1.PolicyExceptionSpec{
				Exceptions: []v1alpha1.ExceptionTarget{{PolicyName: "baseline", RuleNames: []string{"pss"}}},
				Match:      v1alpha1.MatchResources{ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "debug"}}},
				Owner:      "sre", Reason: "incident debugging",
				Expires: metav1.NewTime(mustParseTime(t, expires)),
			},
		}
	}
	waitCondition := func(name, reason string) {
		eventually(t, 10*time.Second, func() error {
			var x v1alpha1.PolicyException
			if err := e2e.client.Get(ctx, client.ObjectKey{Namespace: team, Name: name}, &x); err != nil {
				return err
			}
			if c := meta.FindStatusCondition(x.Status.Conditions, "Ready"); c == nil || c.Reason != reason {
				return fmt.Errorf("%s: condition %+v", name, c)
			}
			return nil
		})
	}
	// An expired exception changes nothing.
	if err := e2e.client.Create(ctx, exception("expired", "2020-01-01T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	waitCondition("expired", "Expired")
	if _, _, err := kubectl(t, fmt.Sprintf(privilegedPod, "debug", team), "apply", "--dry-run=server", "-f", "-"); err == nil {
		t.Error("an expired exception applied")
	}
	// An active one exempts what it selects.
	if err := e2e.client.Create(ctx, exception("active", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))); err != nil {
		t.Fatal(err)
	}
	waitCondition("active", "Active")
	eventually(t, 10*time.Second, func() error {
		if _, stderr, err := kubectl(t, fmt.Sprintf(privilegedPod, "debug", team), "apply", "--dry-run=server", "-f", "-"); err != nil {
			return fmt.Errorf("the active exception did not apply: %w %s", err, stderr)
		}
		return nil
	})
}

func mustParseTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
