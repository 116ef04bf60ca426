package policies_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// benchCEL are 20 CEL rules of the kind platform teams write, on Pods and their templates.
var benchCEL = []string{
	`podSpec.containers.all(c, c.image.startsWith('registry.example.com/'))`,
	`podSpec.?initContainers.orValue([]).all(c, c.image.startsWith('registry.example.com/'))`,
	`!podSpec.?hostNetwork.orValue(false)`,
	`!podSpec.?hostPID.orValue(false) && !podSpec.?hostIPC.orValue(false)`,
	`podSpec.containers.all(c, !c.image.endsWith(':latest'))`,
	`podSpec.?serviceAccountName.orValue('default') != 'default'`,
	`podSpec.containers.all(c, c.?securityContext.?readOnlyRootFilesystem.orValue(false))`,
	`podSpec.containers.all(c, has(c.readinessProbe))`,
	`podSpec.containers.all(c, has(c.livenessProbe))`,
	`podSpec.containers.all(c, c.?ports.orValue([]).all(p, p.?hostPort.orValue(0) == 0))`,
	`podSpec.containers.all(c, c.?env.orValue([]).all(e, !e.name.startsWith('AWS_SECRET')))`,
	`podSpec.?volumes.orValue([]).all(v, !has(v.hostPath))`,
	`'team' in podMeta.labels && podMeta.labels['team'].matches('^[a-z][a-z0-9-]*$')`,
	`podMeta.?annotations.orValue({}).all(k, !k.startsWith('unsafe.example.com/'))`,
	`podSpec.containers.all(c, quantity(c.resources.limits['memory']).isLessThan(quantity('4Gi')))`,
	`podSpec.containers.all(c, quantity(c.resources.requests['cpu']).compareTo(quantity('4')) <= 0)`,
	`podSpec.?tolerations.orValue([]).all(t, t.?key.orValue('') != 'node-role.kubernetes.io/control-plane')`,
	`podSpec.containers.map(c, c.name).all(n, n.size() <= 32)`,
	`object.metadata.namespace != 'default'`,
	`request.operation != 'DELETE' && podSpec.?priorityClassName.orValue('') != 'system-cluster-critical'`,
}

func benchCELPolicy() string {
	var b strings.Builder
	b.WriteString("apiVersion: portcullis.dev/v1alpha1\nkind: ClusterPolicy\nmetadata: {name: platform-cel}\nspec:\n  enforcement: Deny\n  match: {kinds: [Pod]}\n  rules:\n")
	for i, e := range benchCEL {
		fmt.Fprintf(&b, "  - name: cel-%02d\n    cel:\n      expression: %q\n", i, e)
	}
	return b.String()
}

func benchDecodeEvaluate(b *testing.B, file string, gvk schema.GroupVersionKind) {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	engine := libraryEngine(b, benchCELPolicy())
	decoder := policies.NewDecoder(false) // the webhook's: the API server has validated the object
	// Sanity: the realistic object passes everything, so every rule runs to completion.
	res, err := decoder.Decode(data, &gvk)
	if err != nil {
		b.Fatal(err)
	}
	results := engine.Evaluate(b.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res})
	if len(results) != 6+1+20 {
		b.Fatalf("%d results, want 27", len(results))
	}
	for _, r := range results {
		if r.Result != policies.Pass {
			b.Fatalf("%s/%s: %s %s", r.Policy, r.Rule, r.Result, r.Message)
		}
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := decoder.Decode(data, &gvk)
		if err != nil {
			b.Fatal(err)
		}
		engine.Evaluate(b.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res})
	}
}

// BenchmarkDecodeEvaluatePod is the webhook's per-request engine work for a ~7 KB Pod against
// the whole starter library plus 20 CEL rules: one decode, defaulting, 27 rules.
func BenchmarkDecodeEvaluatePod(b *testing.B) {
	benchDecodeEvaluate(b, "testdata/bench/pod.json", schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
}

// BenchmarkDecodeEvaluateDeployment is the same for a Deployment, whose template the rules reach.
func BenchmarkDecodeEvaluateDeployment(b *testing.B) {
	benchDecodeEvaluate(b, "testdata/bench/deployment.json", schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
}

// BenchmarkCompile100CEL compiles one policy of 100 CEL rules (DESIGN.md target: < 50 ms).
func BenchmarkCompile100CEL(b *testing.B) {
	c, err := policies.NewCompiler()
	if err != nil {
		b.Fatal(err)
	}
	p := &v1alpha1.ClusterPolicy{}
	p.Name = "hundred"
	for i := range 100 {
		p.Spec.Rules = append(p.Spec.Rules, v1alpha1.Rule{
			Name: fmt.Sprintf("r%03d", i),
			CEL:  &v1alpha1.CELRule{Expression: benchCEL[i%len(benchCEL)] + fmt.Sprintf(" || %d < 0", i)},
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.CompileClusterPolicy(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePod is the decode (and defaulting) share of BenchmarkDecodeEvaluatePod.
func BenchmarkDecodePod(b *testing.B) {
	data, err := os.ReadFile("testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	d := policies.NewDecoder(false)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(data, &gvk); err != nil {
			b.Fatal(err)
		}
	}
}
