package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestParamsAndVariables: through the real API server, a library template with its params set
// by the cluster's owner denies what its params exclude; the CRD keeps params as written; and a
// policy reading a param it does not have is refused at kubectl apply, naming the field.
func TestParamsAndVariables(t *testing.T) {
	policy := libraryPolicy(t, "allowed-registries", "  enforcement: Deny\n")
	policy = strings.Replace(policy, "registries:\n    - ghcr.io/acme/\n    - registry.k8s.io/\n", "registries: [\"registry.example.com/team/\"]\n", 1)
	if !strings.Contains(policy, `registries: ["registry.example.com/team/"]`) {
		t.Fatalf("the params of allowed-registries were not patched:\n%s", policy)
	}
	applyPolicy(t, policy) // waits until the server has compiled it
	t.Cleanup(func() { deletePolicy(t, "allowed-registries") })
	stored, stderr, err := kubectl(t, "", "get", "clusterpolicy", "allowed-registries", "-o", "jsonpath={.spec.params}")
	var params map[string][]string
	if err != nil || json.Unmarshal([]byte(stored), &params) != nil || fmt.Sprint(params["registries"]) != "[registry.example.com/team/]" {
		t.Fatalf("params as stored: %q (%v, %s)", stored, err, stderr)
	}

	ns := newNamespace(t, nil)
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:\n  containers: [{name: app, image: %q}]\n"
	eventually(t, 20*time.Second, func() error {
		_, stderr, err := kubectl(t, fmt.Sprintf(pod, "hub", ns, "busybox:1.37"), "apply", "--dry-run=server", "-f", "-")
		want := "[allowed-registries/trusted-registry] images from registries outside params.registries: app"
		if err == nil || !strings.Contains(stderr, want) {
			return fmt.Errorf("err=%w, stderr:\n%s\nwant it to contain %q", err, stderr, want)
		}
		return nil
	})
	if _, stderr, err := kubectl(t, fmt.Sprintf(pod, "ours", ns, "registry.example.com/team/app:1.0"), "apply", "-f", "-"); err != nil {
		t.Fatalf("an image of the allowed registry: %v\n%s", err, stderr)
	}

	misspelt := strings.Replace(policy, "name: allowed-registries", "name: misspelt-registries", 1)
	misspelt = strings.Replace(misspelt, "params.registries.exists", "params.registry.exists", 1)
	_, stderr, err = kubectl(t, misspelt, "apply", "-f", "-")
	if err == nil || !strings.Contains(stderr, "undefined field 'registry'") || !strings.Contains(stderr, "spec.rules[0] (trusted-registry).cel.expression") {
		t.Fatalf("a policy reading a param it lacks: err=%v, stderr:\n%s", err, stderr)
	}
}
