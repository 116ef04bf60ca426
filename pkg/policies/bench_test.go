package policies_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// celPolicy is the 20 CEL rules of the load harness's policy set.
const celPolicy = "../../test/load/policies/cel.yaml"

func benchDecodeEvaluate(b *testing.B, file string, gvk schema.GroupVersionKind) {
	data, err := os.ReadFile(file)
	if err != nil {
		b.Fatal(err)
	}
	engine := offlineEngine(b, celPolicy)
	decoder := policies.NewDecoder(false).SharingInput() // the webhook's: the API server has validated the object
	// Sanity: the realistic object passes everything, so every rule runs to completion.
	res, err := decoder.Decode(data, &gvk)
	if err != nil {
		b.Fatal(err)
	}
	results := engine.Evaluate(b.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res})
	if len(results) != 8+20 {
		b.Fatalf("%d results, want 28", len(results)) // benchLibrary's 8 validating rules and 20 CEL rules
	}
	for _, r := range results {
		if r.Result != policies.Pass {
			b.Fatalf("%s/%s: %s %s", r.Policy, r.Rule, r.Result, r.Message)
		}
	}
	evaluateEach(b, engine, decoder, data, gvk)
}

// evaluateEach decodes data and evaluates it once per iteration of b, as the webhook does.
func evaluateEach(b *testing.B, engine *policies.Engine, decoder *policies.Decoder, data []byte, gvk schema.GroupVersionKind) {
	var buf []policies.Result
	decodeEach(b, decoder, data, gvk, func(res *policies.Resource) {
		req := &policies.Request{Operation: v1alpha1.Create, Object: res, Results: buf}
		buf = engine.Evaluate(b.Context(), req)
		req.Release() // as the webhook does, which also writes each review's results over the last's
	})
}

// decodeEach decodes data once per iteration of b, and hands each Resource to judge.
func decodeEach(b *testing.B, decoder *policies.Decoder, data []byte, gvk schema.GroupVersionKind, judge func(*policies.Resource)) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := decoder.Decode(data, &gvk)
		if err != nil {
			b.Fatal(err)
		}
		judge(res)
	}
}

// benchLibrary is the library set the engine benchmarks measure, fixed so that their figures
// compare across changes to the library: the starter library's policies, without
// verify-images, whose registry calls a benchmark of the engine must not measure.
var benchLibrary = []string{"pod-security-baseline", "pod-security-restricted", "require-requests-limits",
	"require-labels", "disallow-latest-tag", "disallow-host-ports-and-namespaces", "default-probes"}

// offlineEngine is benchLibrary plus paths.
func offlineEngine(tb testing.TB, paths ...string) *policies.Engine {
	tb.Helper()
	var files []string
	for _, name := range benchLibrary {
		files = append(files, "../../manifests/library/"+name+".yaml")
	}
	e, err := manifest.LoadEngine(append(files, paths...), nil, time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// BenchmarkDecodeEvaluatePod is the webhook's per-request engine work for a ~7 KB Pod against
// the whole starter library plus 20 CEL rules: one decode (lenient, as the API server has
// defaulted the object) and 28 rules, the results written over the last review's.
func BenchmarkDecodeEvaluatePod(b *testing.B) {
	benchDecodeEvaluate(b, "testdata/bench/pod.json", schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
}

// BenchmarkDecodeEvaluateDeployment is the same for a Deployment, whose template the rules reach.
func BenchmarkDecodeEvaluateDeployment(b *testing.B) {
	benchDecodeEvaluate(b, "testdata/bench/deployment.json", schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
}

// libraryFiles are the library's policies, without verify-images, whose registries a benchmark
// of the engine must not call.
func libraryFiles(b *testing.B) []string {
	files, err := filepath.Glob("../../manifests/library/*.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return slices.DeleteFunc(files, func(f string) bool {
		return strings.Contains(f, "verify-images") || strings.HasSuffix(f, "kustomization.yaml")
	})
}

// BenchmarkLoadLibrary reads and compiles the library (libraryFiles): what a replica does for
// each of its policies as it starts, its twins' estimates included.
func BenchmarkLoadLibrary(b *testing.B) {
	files := libraryFiles(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := manifest.LoadEngine(files, nil, time.Now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateLibraryAudit is audit-only mode's common case: the whole library
// (libraryFiles) judging the benchmark Pod, which fails five of its rules, so that their
// messageExpressions run too.
func BenchmarkEvaluateLibraryAudit(b *testing.B) {
	engine, err := manifest.LoadEngine(libraryFiles(b), nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile("testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	decoder := policies.NewDecoder(false).SharingInput()
	res, err := decoder.Decode(data, &gvk)
	if err != nil {
		b.Fatal(err)
	}
	failed := 0
	for _, r := range engine.Evaluate(b.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res}) {
		if r.Result == policies.Fail {
			failed++
			if r.Message == "" || strings.HasPrefix(r.Message, "failed expression") {
				b.Fatalf("%s/%s: no message from its messageExpression: %q", r.Policy, r.Rule, r.Message)
			}
		}
	}
	if failed != 5 {
		b.Fatalf("%d rules failed, want 5", failed)
	}
	evaluateEach(b, engine, decoder, data, gvk)
}

// BenchmarkCompile100CEL compiles one policy of 100 CEL rules (target: < 50 ms): the
// load harness's 20 expressions, five times over, each made distinct.
func BenchmarkCompile100CEL(b *testing.B) {
	c, err := policies.NewCompiler()
	if err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(celPolicy)
	if err != nil {
		b.Fatal(err)
	}
	var src v1alpha1.ClusterPolicy
	if err := yaml.UnmarshalStrict(data, &src); err != nil || len(src.Spec.Rules) != 20 {
		b.Fatalf("%s: %v, %d rules", celPolicy, err, len(src.Spec.Rules))
	}
	p := &v1alpha1.ClusterPolicy{}
	p.Name = "hundred"
	for i := range 100 {
		r := src.Spec.Rules[i%20]
		p.Spec.Rules = append(p.Spec.Rules, v1alpha1.Rule{
			Name: fmt.Sprintf("r%03d", i),
			CEL:  &v1alpha1.CELRule{Expression: r.CEL.Expression + fmt.Sprintf(" || %d < 0", i)},
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
	d := policies.NewDecoder(false).SharingInput()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(data, &gvk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodePodStrict is BenchmarkDecodePod with the CLI's decoder: strict (no unknown,
// duplicate or miscased field), copying strings, and defaulting the Pod as the API server does
// before admission.
func BenchmarkDecodePodStrict(b *testing.B) {
	data, err := os.ReadFile("testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	d := policies.NewDecoder(true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(data, &gvk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMutatePod is the mutating webhook's engine work for the ~7 KB Pod with its probes
// removed: one decode, defaultProbes (the library's default-probes, enforced) and the patches.
func BenchmarkMutatePod(b *testing.B) {
	data, err := os.ReadFile("testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(data, &pod); err != nil {
		b.Fatal(err)
	}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].ReadinessProbe, pod.Spec.Containers[i].LivenessProbe = nil, nil
	}
	data, err = json.Marshal(&pod)
	if err != nil {
		b.Fatal(err)
	}
	policy, err := os.ReadFile("../../manifests/library/default-probes.yaml")
	if err != nil {
		b.Fatal(err)
	}
	docs, err := manifest.Split("default-probes.yaml", []byte(strings.Replace(string(policy), "enforcement: Audit", "enforcement: Deny", 1)))
	if err != nil {
		b.Fatal(err)
	}
	c, err := policies.NewCompiler()
	if err != nil {
		b.Fatal(err)
	}
	enforced, err := manifest.CompilePolicies(c, docs, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	decoder := policies.NewDecoder(false).SharingInput()
	res, _ := decoder.Decode(data, &gvk)
	m, err := enforced.Mutate(b.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res})
	if err != nil || len(m.Patches) != 5 { // 2 containers x 2 probes + the record
		b.Fatalf("%v: %d patches", err, len(m.Patches))
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := decoder.Decode(data, &gvk)
		if err != nil {
			b.Fatal(err)
		}
		m, err := enforced.Mutate(b.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(m.Patches); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAdmitPolicies is one review's engine work as the number of policies grows: the ~7 KB
// Pod decoded and admitted (mutate, then validate) against n ClusterPolicies, benchLibrary's
// renamed over and over, in Audit, as make bench-soak loads 100. What one review allocates grows
// with n; the server's review memory budget reserves by the body's size alone.
func BenchmarkAdmitPolicies(b *testing.B) {
	data, err := os.ReadFile("testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	gvk := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			var files []string
			for i := range n {
				name := benchLibrary[i%len(benchLibrary)]
				raw, err := os.ReadFile("../../manifests/library/" + name + ".yaml")
				if err != nil {
					b.Fatal(err)
				}
				var p map[string]any
				if err := yaml.Unmarshal(raw, &p); err != nil {
					b.Fatal(err)
				}
				p["metadata"].(map[string]any)["name"] = fmt.Sprintf("%s-%03d", name, i)
				p["spec"].(map[string]any)["enforcement"] = string(v1alpha1.Audit)
				out, err := yaml.Marshal(p)
				if err != nil {
					b.Fatal(err)
				}
				files = append(files, filepath.Join(dir, fmt.Sprintf("%03d.yaml", i)))
				if err := os.WriteFile(files[i], out, 0o600); err != nil {
					b.Fatal(err)
				}
			}
			engine, err := manifest.LoadEngine(files, nil, time.Now)
			if err != nil {
				b.Fatal(err)
			}
			decoder := policies.NewDecoder(false).SharingInput()
			decodeEach(b, decoder, data, gvk, func(res *policies.Resource) {
				if _, err := engine.Admit(b.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res}, data, decoder); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
