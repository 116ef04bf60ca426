package policies

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

const probesPolicy = `enforcement: %s
match: {kinds: [Pod]}
rules:
- name: probes
  defaultProbes: {readiness: {path: /readyz}}
`

func probesEngine(t testing.TB, enforcement string) *Engine {
	return mustEngine(t, time.Now(), clusterPolicy("default-probes", strings.Replace(probesPolicy, "%s", enforcement, 1)))
}

// mutateJSON runs Mutate on a manifest and applies the patches to its JSON, as the API server does.
func mutateJSON(t testing.TB, e *Engine, js []byte) ([]byte, *Mutation) {
	t.Helper()
	res, err := NewDecoder(true).Decode(js, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.Mutate(t.Context(), &Request{Operation: v1alpha1.Create, Object: res})
	if err != nil {
		t.Fatal(err)
	}
	out, err := mutate.Apply(js, m.Patches)
	if err != nil {
		t.Fatalf("applying %v: %v", m.Patches, err)
	}
	return out, m
}

func TestMutateEnforcement(t *testing.T) {
	js := mustJSON(t, testDeploymentWithPort)
	for _, tc := range []struct {
		enforcement string
		patched     bool
		result      string
		message     string
	}{
		{"Deny", true, "default-probes/probes=pass:Deny", "applied: add readinessProbe (httpGet :8080/readyz) to container web; add livenessProbe (tcpSocket :8080) to container web"},
		{"Warn", false, "default-probes/probes=fail:Warn", "would add readinessProbe (httpGet :8080/readyz) to container web; would add livenessProbe (tcpSocket :8080) to container web"},
		{"Audit", false, "default-probes/probes=fail:Audit", "would add readinessProbe"},
	} {
		out, m := mutateJSON(t, probesEngine(t, tc.enforcement), js)
		if got := summarize(m.Results); !slices.Equal(got, []string{tc.result}) || !strings.HasPrefix(m.Results[0].Message, tc.message) {
			t.Errorf("%s: %v %q", tc.enforcement, got, m.Results[0].Message)
		}
		if patched := string(out) != string(js); patched != tc.patched {
			t.Errorf("%s: patched=%v", tc.enforcement, patched)
		}
		if tc.patched {
			var obj struct {
				Metadata struct{ Annotations map[string]string } `json:"metadata"`
			}
			if err := json.Unmarshal(out, &obj); err != nil {
				t.Fatal(err)
			}
			if got := obj.Metadata.Annotations[MutationsAnnotation]; got != "default-probes/probes" {
				t.Errorf("annotation %q", got)
			}
			if !strings.Contains(string(out), `"readinessProbe":{"httpGet":{"path":"/readyz","port":"http"}`) {
				t.Errorf("patched object: %s", out)
			}
		}
	}
}

const testDeploymentWithPort = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {team: storefront}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: ghcr.io/acme/web:1.0
        ports: [{name: http, containerPort: 8080}]
`

// TestMutateIdempotent is the property mutate(mutate(x)) == mutate(x) over every manifest of the
// repository's fixture corpus: the second pass has no patch and leaves the object unchanged.
func TestMutateIdempotent(t *testing.T) {
	e := mustEngine(t, time.Now(),
		clusterPolicy("probes-a", strings.Replace(probesPolicy, "%s", "Deny", 1)),
		clusterPolicy("probes-b", "enforcement: Deny\nrules:\n- name: startup\n  defaultProbes: {startup: {}, liveness: {path: /healthz}}\n"))
	var files []string
	for _, glob := range []string{"../../examples/workloads/*.yaml", "../../manifests/library/tests/*/*/*.yaml", "testdata/bench/*.json"} {
		m, _ := filepath.Glob(glob)
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("corpus of %d files", len(files))
	}
	changed := 0
	for _, f := range files {
		js := readJSON(t, f)
		once, m1 := mutateJSON(t, e, js)
		twice, m2 := mutateJSON(t, e, once)
		if len(m1.Patches) > 0 {
			changed++
		}
		if len(m2.Patches) != 0 || string(once) != string(twice) {
			t.Errorf("%s: the second pass patches %v", f, m2.Patches)
		}
	}
	if changed == 0 {
		t.Fatal("the corpus exercised no mutation")
	}
}

// TestMutateRecordMerges: an object mutated by another rule before keeps its record.
func TestMutateRecordMerges(t *testing.T) {
	js := mustJSON(t, strings.Replace(testDeploymentWithPort, "annotations: {team: storefront}", "annotations: {portcullis.dev/mutations: other/rule}", 1))
	out, _ := mutateJSON(t, probesEngine(t, "Deny"), js)
	if !strings.Contains(string(out), `"portcullis.dev/mutations":"default-probes/probes,other/rule"`) {
		t.Errorf("record: %s", out)
	}
	noAnnotations := mustJSON(t, strings.Replace(testDeploymentWithPort, "  annotations: {team: storefront}\n", "", 1))
	out, _ = mutateJSON(t, probesEngine(t, "Deny"), noAnnotations)
	if !strings.Contains(string(out), `"annotations":{"portcullis.dev/mutations":"default-probes/probes"}`) {
		t.Errorf("record on an object without annotations: %s", out)
	}
}

func TestValidationSkipsMutatingRules(t *testing.T) {
	e := probesEngine(t, "Deny")
	if got := e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, testDeploymentWithPort)}); len(got) != 0 {
		t.Errorf("Evaluate reported mutating rules: %v", summarize(got))
	}
}

// TestAuditMutationsAfterEnforced: a Warn or Audit mutating rule is judged on the object as the
// enforced rules of the same request left it, whatever the policies' order: it does not report
// what another policy already did. Results keep the policy order.
func TestAuditMutationsAfterEnforced(t *testing.T) {
	e := mustEngine(t, time.Now(),
		clusterPolicy("a-audit-probes", "enforcement: Audit\nrules:\n- {name: probes, defaultProbes: {}}\n"),
		clusterPolicy("b-warn-probes", "enforcement: Warn\nrules:\n- {name: probes, defaultProbes: {startup: {}}}\n"),
		clusterPolicy("c-enforced-probes", "enforcement: Deny\nrules:\n- {name: probes, defaultProbes: {}}\n"))
	pod := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: [{name: web, image: x, ports: [{name: http, containerPort: 8080}]}]}\n")
	m, err := e.Mutate(t.Context(), &Request{Operation: v1alpha1.Create, Object: pod})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range m.Results {
		got = append(got, fmt.Sprintf("%s %s %s", r.Policy, r.Result, r.Message))
	}
	want := []string{
		"a-audit-probes pass ",
		"b-warn-probes fail would add startupProbe (tcpSocket :8080) to container web",
		"c-enforced-probes pass applied: add readinessProbe (tcpSocket :8080) to container web; add livenessProbe (tcpSocket :8080) to container web",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
