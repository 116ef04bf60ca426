package policies

import (
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// testCompiler is built once: the CEL environment is costly and immutable.
var testCompiler = func() *Compiler {
	c, err := NewCompiler()
	if err != nil {
		panic(err)
	}
	return c
}()

// mustResource decodes a YAML manifest strictly, with defaulting, as the CLI does.
func mustResource(t testing.TB, manifest string) *Resource {
	t.Helper()
	return mustDecode(t, NewDecoder(true), manifest)
}

// mustDecode decodes a YAML manifest with d.
func mustDecode(t testing.TB, d *Decoder, manifest string) *Resource {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	res, err := d.Decode(js, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// mustEngine compiles ClusterPolicies, Policies and PolicyExceptions given as YAML documents.
func mustEngine(t testing.TB, now time.Time, docs ...string) *Engine {
	t.Helper()
	return mustEngineWith(t, testCompiler, now, docs...)
}

// mustEngineWith compiles the documents with c.
func mustEngineWith(t testing.TB, c *Compiler, now time.Time, docs ...string) *Engine {
	t.Helper()
	var ps []*CompiledPolicy
	var xs []*CompiledException
	for _, doc := range docs {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		d := NewDecoder(true)
		gvk, err := TypeMeta(js)
		if err != nil {
			t.Fatal(err)
		}
		obj, ok := NewObject(gvk.Kind)
		if !ok {
			t.Fatalf("unexpected kind %s", gvk.Kind)
		}
		if err := d.Into(js, obj); err != nil {
			t.Fatal(err)
		}
		cp, cx, err := c.Compile(obj)
		if err != nil {
			t.Fatal(err)
		}
		if cp != nil {
			ps = append(ps, cp)
		}
		if cx != nil {
			xs = append(xs, cx)
		}
	}
	return NewEngine(ps, xs, func() time.Time { return now })
}

// clusterPolicy builds a ClusterPolicy document from a spec written in YAML.
func clusterPolicy(name, spec string) string {
	return "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterPolicy\nmetadata: {name: " + name + "}\nspec:\n" + indentYAML(spec)
}

func indentYAML(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// summarize renders results as "policy/rule=outcome:action" for compact assertions.
func summarize(results []Result) []string {
	out := make([]string, len(results))
	for i, r := range results {
		out[i] = r.Policy + "/" + r.Rule + "=" + string(r.Result) + ":" + string(r.Action)
	}
	return out
}

const testPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app.kubernetes.io/name: web}
spec:
  containers:
  - name: web
    image: ghcr.io/acme/web:1.0
`

const testDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app.kubernetes.io/name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: ghcr.io/acme/web:1.0
`

func mustJSON(t testing.TB, doc string) []byte {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// readJSON reads a YAML or JSON manifest file as JSON.
func readJSON(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return js
}

// mustCompileCEL compiles expr as a ClusterPolicy's CEL rule (untracked twin included) in the
// test compiler's environment.
func mustCompileCEL(t *testing.T, expr string) *celRule {
	t.Helper()
	rule, errs := compileCEL(&v1alpha1.CELRule{Expression: expr}, testCompiler.env, nil, true, field.NewPath("r"))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", expr, errs)
	}
	return rule
}
