package source

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

// flakySecrets serves one key until it is told to fail, as a deleted Secret or a read error does.
type flakySecrets struct {
	key  string
	fail atomic.Bool
}

func (f *flakySecrets) PublicKey(context.Context, string, string, string) (string, error) {
	if f.fail.Load() {
		return "", errors.New("secrets \"cosign\" not found")
	}
	return f.key, nil
}

// TestLastGoodGeneration: when an enforced policy stops compiling (its key's Secret gone), the
// last good generation stays in force and the status says Degraded; when it compiles again, the
// Degraded condition goes. A policy that never compiled is not enforced.
func TestLastGoodGeneration(t *testing.T) {
	secrets := &flakySecrets{key: verifytest.NewKeyPair(t).PublicKey}
	policy := &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "signed", UID: types.UID("signed"), Generation: 1},
		Spec: v1alpha1.PolicySpec{Enforcement: v1alpha1.Deny, Rules: []v1alpha1.Rule{
			{Name: "team", Labels: &v1alpha1.LabelsRule{Required: []string{"team"}}},
			{Name: "keys", VerifyImages: &v1alpha1.VerifyImagesRule{Images: []string{"registry.example.com/*"},
				Keys: []v1alpha1.KeyRef{{SecretRef: &v1alpha1.SecretKeyRef{Name: "cosign"}}}}},
		}}}
	compiler, err := policies.NewCompiler(policies.WithVerification(policies.VerificationOptions{Secrets: secrets, KeyNamespaces: []string{"portcullis-system"}}))
	if err != nil {
		t.Fatal(err)
	}
	c, cl := testController(t, compiler, TenantBudget{}, policy)
	c.KeyRefresh = time.Nanosecond
	pod, err := policies.NewResource(&corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "elsewhere.example.com/app:1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	enforced := func() bool {
		for _, r := range c.Engines.Load().Evaluate(t.Context(), &policies.Request{Operation: v1alpha1.Create, Object: pod}) {
			if r.Policy == "signed" && r.Rule == "team" && r.Result == policies.Fail {
				return true
			}
		}
		return false
	}
	status := func() (ready, degraded *metav1.Condition) {
		var p v1alpha1.ClusterPolicy
		if err := cl.Get(t.Context(), client.ObjectKey{Name: "signed"}, &p); err != nil {
			t.Fatal(err)
		}
		return apimeta.FindStatusCondition(p.Status.Conditions, ConditionReady), apimeta.FindStatusCondition(p.Status.Conditions, ConditionDegraded)
	}
	reconcile := func() {
		t.Helper()
		if _, err := c.Reconcile(t.Context(), rebuild); err != nil {
			t.Fatal(err)
		}
	}

	reconcile()
	if ready, degraded := status(); !enforced() || ready.Reason != "Compiled" || degraded != nil {
		t.Fatalf("healthy: enforced %v, %+v, %+v", enforced(), ready, degraded)
	}
	secrets.fail.Store(true) // the key's Secret is deleted; the key refresh recompiles
	reconcile()
	ready, degraded := status()
	if !enforced() {
		t.Error("the policy was switched off when its key could not be read")
	}
	if ready.Status != metav1.ConditionTrue || ready.Reason != "LastGoodGeneration" || degraded == nil || degraded.Status != metav1.ConditionTrue ||
		!strings.Contains(degraded.Message, `generation 1 stays in force until it compiles: spec.rules[1] (keys).verifyImages.keys[0].secretRef`) {
		t.Errorf("degraded: %+v, %+v", ready, degraded)
	}
	reconcile() // still failing: still in force
	if !enforced() {
		t.Error("a second failed refresh switched the policy off")
	}
	secrets.fail.Store(false)
	reconcile()
	if ready, degraded := status(); !enforced() || ready.Reason != "Compiled" || degraded != nil {
		t.Errorf("recovered: %+v, %+v", ready, degraded)
	}

	// A policy that never compiled is not enforced.
	secrets.fail.Store(true)
	fresh := policy.DeepCopy()
	fresh.Name, fresh.UID, fresh.ResourceVersion = "fresh", "fresh", ""
	if err := cl.Create(t.Context(), fresh); err != nil {
		t.Fatal(err)
	}
	reconcile()
	var p v1alpha1.ClusterPolicy
	if err := cl.Get(t.Context(), client.ObjectKey{Name: "fresh"}, &p); err != nil {
		t.Fatal(err)
	}
	if cond := apimeta.FindStatusCondition(p.Status.Conditions, ConditionReady); cond == nil || cond.Reason != "CompileError" {
		t.Errorf("a policy that never compiled: %+v", cond)
	}
}
