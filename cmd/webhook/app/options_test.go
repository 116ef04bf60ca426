package app

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// --namespaced-policy-kinds bounds what tenants' Policies can have intercepted cluster-wide.
func TestNamespacedPolicyKinds(t *testing.T) {
	o := NewOptions()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	kinds := o.tenantKinds()
	selects := func(gk schema.GroupKind) bool {
		for _, k := range kinds {
			if k.Selects(gk) {
				return true
			}
		}
		return false
	}
	if !selects(schema.GroupKind{Group: "apps", Kind: "Deployment"}) || !selects(schema.GroupKind{Kind: "Pod"}) {
		t.Errorf("the default %v leaves out workloads", kinds)
	}
	if selects(schema.GroupKind{Kind: "Secret"}) || selects(schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}) {
		t.Errorf("the default %v lets tenants intercept Secrets or RoleBindings", kinds)
	}

	o.NamespacedPolicyKinds = []string{"*"}
	if got := o.tenantKinds(); got != nil {
		t.Errorf(`"*": %v, want nil (every namespaced kind)`, got)
	}
	o.NamespacedPolicyKinds = nil
	if got := o.tenantKinds(); got == nil || len(got) != 0 {
		t.Errorf("empty: %v, want no kind at all", got)
	}
	o.NamespacedPolicyKinds = []string{"pods"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), `--namespaced-policy-kinds=pods: must be "*", "Kind" or "group/Kind"`) {
		t.Errorf("a malformed kind: %v", err)
	}
}
