package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// TestAppArmorPreparedAsTheAPIServerDoes: the API server turns a Pod's deprecated AppArmor
// annotations into securityContext.appArmorProfile before validating webhooks run; the CLI does
// the same, so a rule on the field gets one verdict offline and in the cluster.
func TestAppArmorPreparedAsTheAPIServerDoes(t *testing.T) {
	ns := newNamespace(t, nil)
	policy := fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: apparmor-field}
spec:
  enforcement: Deny
  match: {kinds: [Pod], namespaces: [%s]}
  podControllers: false
  rules:
    - name: profile
      cel: {expression: "podSpec.containers.all(c, has(c.securityContext) && has(c.securityContext.appArmorProfile) && c.securityContext.appArmorProfile.type == 'RuntimeDefault')"}
`, ns)
	applyPolicy(t, policy)
	defer deletePolicy(t, "apparmor-field")
	engine, err := manifest.LoadEngine([]string{"-"}, strings.NewReader(policy), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		annotation string
		admitted   bool
	}{{"runtime/default", true}, {"unconfined", false}} {
		pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: apparmor
  namespace: %s
  annotations: {container.apparmor.security.beta.kubernetes.io/app: %s}
spec:
  containers: [{name: app, image: registry.example.com/app:1}]
`, ns, tc.annotation)
		var cluster bool
		eventually(t, 10*time.Second, func() error {
			_, stderr, err := kubectl(t, pod, "apply", "--dry-run=server", "-f", "-")
			cluster = err == nil
			if !cluster && !strings.Contains(stderr, "apparmor-field/profile") {
				return fmt.Errorf("not judged by the policy yet: %s", stderr)
			}
			return nil
		})
		js, err := yaml.YAMLToJSON([]byte(pod))
		if err != nil {
			t.Fatal(err)
		}
		res, err := policies.NewDecoder(true).Decode(js, nil) // the CLI's decoder
		if err != nil {
			t.Fatal(err)
		}
		offline := true
		for _, r := range engine.Evaluate(t.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res}) {
			offline = offline && r.Result == policies.Pass
		}
		if cluster != tc.admitted || offline != tc.admitted {
			t.Errorf("%s: admitted by the cluster %v, by the CLI %v, want %v", tc.annotation, cluster, offline, tc.admitted)
		}
	}
}
