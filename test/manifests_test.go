package test

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// releasePolicies are the library policies the server's Deployment meets only as a release
// installs it: the registry is the cluster owner's to allow (params), and a release pins the
// image by digest (kustomize edit set image), which the pull policy rule then accepts.
var releasePolicies = map[string]bool{"allowed-registries": true, "require-image-digest": true, "require-pull-policy-always": true}

// TestManifests renders the kustomize base and the audit-only overlay with kubectl, and runs
// what they install through the engine: the server's own Deployment meets every library policy
// (but releasePolicies), including Pod Security restricted.
func TestManifests(t *testing.T) {
	engine, err := manifest.LoadEngine([]string{libraryDir}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"../manifests", "../manifests/overlays/audit-only"} {
		out, stderr, err := kubectl(t, "", "kustomize", dir)
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr)
		}
		docs, err := manifest.Split(dir, []byte(out))
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]int{}
		d := policies.NewDecoder(true)
		for _, doc := range docs {
			res, err := d.Decode(doc.JSON, nil)
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			kinds[res.GVK.Kind]++
			if res.GVK.Kind != "Deployment" {
				continue
			}
			for _, r := range engine.Evaluate(t.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res}) {
				if r.Result != policies.Pass && !releasePolicies[r.Policy] {
					t.Errorf("%s: the server's Deployment fails %s", dir, r)
				}
			}
		}
		for kind, n := range map[string]int{"CustomResourceDefinition": 5, "Namespace": 1, "ServiceAccount": 1, "ClusterRole": 8, "Role": 1,
			"Service": 1, "Deployment": 1, "PodDisruptionBudget": 1, "ValidatingWebhookConfiguration": 1} {
			if kinds[kind] != n {
				t.Errorf("%s: %d %s, want %d", dir, kinds[kind], kind, n)
			}
		}
		if dir == "../manifests/overlays/audit-only" && (!strings.Contains(out, "--audit-only") || !strings.Contains(out, "failurePolicy: Ignore")) {
			t.Errorf("the audit-only overlay does not set --audit-only and failurePolicy Ignore")
		}
	}
}
