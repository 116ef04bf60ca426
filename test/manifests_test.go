package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// prometheusOperator is the Prometheus Operator release whose CRDs the monitoring kit is
// applied against, from the module proxy.
const prometheusOperator = "github.com/prometheus-operator/prometheus-operator@v0.90.1"

// TestInstallsApply applies what the repository installs to the real API server, server-side
// and dry-run, so that a schema error (a misspelt field, a wrong type) fails here rather than in
// a user's cluster: the kustomize base, the audit-only overlay, the policy library (through the
// policy webhook too), and the monitoring kit against the Prometheus Operator's CRDs.
func TestInstallsApply(t *testing.T) {
	dir, err := operatorCRDs(t)
	if err != nil {
		t.Fatalf("the Prometheus Operator's CRDs (%s): %v", prometheusOperator, err)
	}
	for _, crd := range []string{"monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		if _, stderr, err := kubectl(t, "", "apply", "--server-side", "-f", filepath.Join(dir, crd)); err != nil {
			t.Fatalf("installing %s: %v\n%s", crd, err, stderr)
		}
	}
	if _, stderr, err := kubectl(t, "", "wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com", "--timeout=30s"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, kit := range []string{"../manifests", "../manifests/overlays/audit-only", "../manifests/library", "../manifests/monitoring", "../charts/portcullis"} {
		out, stderr, err := render(t, kit)
		if err != nil {
			t.Fatalf("rendering %s: %v\n%s", kit, err, stderr)
		}
		// The server's namespace exists already: its objects are checked, not created. The
		// e2e servers' webhook configurations (url, not service) have the names the install
		// gives its own; the install's are checked under names of their own.
		for _, name := range []string{"portcullis-validating", "portcullis-mutating"} {
			out = strings.ReplaceAll(out, "name: "+name+"\n", "name: "+name+"-install-check\n")
		}
		applied, stderr, err := kubectl(t, out, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "--field-manager=install-check", "-f", "-")
		if err != nil {
			t.Errorf("%s does not apply: %v\n%s", kit, err, stderr)
			continue
		}
		if n := strings.Count(applied, "serverside-applied (server dry run)"); n == 0 {
			t.Errorf("%s: nothing applied:\n%s", kit, applied)
		}
	}
}

// render renders a kustomization with kubectl, or the chart with helm (bin/helm, which make
// test builds first), every option on.
func render(t *testing.T, dir string) (string, string, error) {
	t.Helper()
	if !strings.HasPrefix(dir, "../charts/") {
		return kubectl(t, "", "kustomize", dir)
	}
	helm, err := filepath.Abs("../bin/helm")
	if err != nil {
		return "", "", err
	}
	if _, err := os.Stat(helm); err != nil {
		return "", "", fmt.Errorf("%w: build it with make helm-bin (make test does)", err)
	}
	cmd := exec.CommandContext(t.Context(), helm, "template", "portcullis", dir, "--namespace", "portcullis-system",
		"--set", "monitoring.enabled=true,networkPolicy.enabled=true,auditOnly=true")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.String(), stderr.String(), err
}

// operatorCRDs downloads the Prometheus Operator's module and returns its CRDs' directory.
func operatorCRDs(t *testing.T) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "mod", "download", "-json", prometheusOperator)
	cmd.Dir = t.TempDir() // outside the module: the download is not a dependency
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", err
	}
	if mod.Error != "" {
		return "", errors.New(mod.Error)
	}
	return filepath.Join(mod.Dir, "example", "prometheus-operator-crd"), nil
}
