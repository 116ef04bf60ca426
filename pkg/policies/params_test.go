package policies

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types/ref"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

const paramsPod = `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop}
spec:
  containers:
  - {name: app, image: ghcr.io/acme/web:1.2}
  - {name: side, image: docker.io/library/nginx:1.27}
`

// TestParams: params are read as typed values, so a library policy is a template; a whole
// number is an int, lists and maps keep their items' type.
func TestParams(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("registries", `enforcement: Deny
params:
  registries: ["ghcr.io/acme/", "registry.k8s.io/"]
  maxContainers: 1
  ratio: 0.5
  exempt: {side: "sidecars are the platform's"}
rules:
- name: registries
  cel:
    expression: "podSpec.containers.all(c, c.name in params.exempt || params.registries.exists(r, c.image.startsWith(r)))"
- name: count
  cel:
    expression: "size(podSpec.containers) <= params.maxContainers + 1 && params.ratio < 1.0"
    messageExpression: "'at most ' + string(params.maxContainers) + ' containers'"
`))
	results := e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, paramsPod)})
	if len(results) != 2 || results[0].Result != Pass || results[1].Result != Pass {
		t.Fatalf("got %+v", results)
	}
}

// TestParamsCompileErrors: a misspelt param, a param of the wrong type, and params that are
// not an object, too deep or too large are refused when the policy compiles, naming the field.
func TestParamsCompileErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxParamsDepth) + "1" + strings.Repeat("}", MaxParamsDepth)
	tests := []struct {
		name, params, expr, want string
	}{
		{"misspelt", `{"registries": ["ghcr.io/"]}`, "params.registry.size() > 0",
			`spec.rules[0] (r).cel.expression: Invalid value: "params.registry.size() > 0": compilation failed: ERROR: <input>:1:7: undefined field 'registry'`},
		{"wrong type", `{"max": 3}`, "params.max.startsWith('x')",
			"found no matching overload for 'startsWith' applied to 'int.(string)'"},
		{"a list", `["a"]`, "true", "spec.params: Invalid value: \"\": must be an object, not a list"},
		{"too deep", deep, "true", fmt.Sprintf("spec.params: Invalid value: \"\": nests deeper than %d levels", MaxParamsDepth)},
		{"too large", `{"a": "` + strings.Repeat("x", MaxParamsBytes) + `"}`, "true", "spec.params: Too long: may not be more than 32768 bytes"},
		{"without params", "", "params.x == 1", "undeclared reference to 'params'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec: v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{{Name: "r", CEL: &v1alpha1.CELRule{Expression: tt.expr}}}}}
			if tt.params != "" {
				p.Spec.Params = &apiextensionsv1.JSON{Raw: []byte(tt.params)}
			}
			_, err := testCompiler.CompileClusterPolicy(p)
			var ce *CompileError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestParamsWithKeysCELCannotSelect: params with a key CEL cannot select are a map, read by
// index.
func TestParamsWithKeysCELCannotSelect(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("p", `enforcement: Deny
params: {"team-label": "team", "in": 1}
rules:
- name: r
  cel: {expression: "params['team-label'] == 'team' && params['in'] == 1"}
`))
	results := e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, paramsPod)})
	if len(results) != 1 || results[0].Result != Pass {
		t.Fatalf("got %+v", results)
	}
}

// variablesPolicy's variable images is read by every rule, and by the other variables.
const variablesPolicy = `enforcement: Deny
variables:
- name: images
  expression: "podSpec.containers.map(c, c.image)"
- name: untagged
  expression: "variables.images.filter(i, !i.contains(':'))"
- name: first
  expression: "variables.images[0]"
rules:
- name: some
  cel: {expression: "size(variables.images) > 0"}
- name: tagged
  cel:
    expression: "size(variables.untagged) == 0"
    messageExpression: "'untagged: ' + variables.untagged.join(', ')"
- name: first-acme
  cel: {expression: "variables.first.startsWith('ghcr.io/acme/')"}
`

// countingProgram counts the evaluations of a program.
type countingProgram struct {
	cel.Program
	n *int
}

func (p countingProgram) ContextEval(ctx context.Context, in any) (ref.Val, *cel.EvalDetails, error) {
	*p.n++
	return p.Program.ContextEval(ctx, in)
}

func (p countingProgram) Eval(in any) (ref.Val, *cel.EvalDetails, error) {
	*p.n++
	return p.Program.Eval(in)
}

// TestVariables: variables are typed (a rule reading one is checked against its type), read
// those before them, are evaluated once per request however many read them, and fail the
// rules that read them when they fail to evaluate.
func TestVariables(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("vars", variablesPolicy))
	evaluations, untracked := map[string]*int{}, map[string]*int{}
	for p := range e.Policies() {
		scope := p.rules[0].eval.(*celRule).scope
		for _, v := range scope.variables {
			evaluations[v.name], untracked[v.name] = new(int), new(int)
			v.program = countingProgram{v.program, evaluations[v.name]}
			if v.untracked == nil {
				t.Fatalf("variable %s of a ClusterPolicy has no untracked twin", v.name)
			}
			v.untracked = countingProgram{v.untracked, untracked[v.name]}
		}
	}
	pod := mustResource(t, strings.Replace(paramsPod, "nginx:1.27", "nginx", 1))
	results := e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: pod})
	got := map[string]string{}
	for _, r := range results {
		got[r.Rule] = string(r.Result) + " " + r.Message
	}
	want := map[string]string{"some": "pass ", "tagged": "fail untagged: docker.io/library/nginx", "first-acme": "pass "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for name, n := range evaluations {
		// A small pod: within the twins' bounds, so each variable ran untracked, and once.
		if *n != 0 || *untracked[name] != 1 {
			t.Errorf("variable %s evaluated %d times tracked and %d untracked in one request, want once untracked", name, *n, *untracked[name])
		}
	}
	// A pod without containers: variables.first fails to evaluate, and so does the rule reading
	// it, naming the variable; the others do not.
	empty := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: e, namespace: shop}\nspec: {containers: []}\n")
	for _, r := range e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: empty}) {
		if r.Rule == "first-acme" {
			if r.Result != Error && r.Result != Fail || !strings.Contains(r.Message, `variable "first"`) {
				t.Errorf("first-acme: %s %q, want an error naming variable \"first\"", r.Result, r.Message)
			}
		} else if r.Rule == "some" && r.Result != Fail {
			t.Errorf("some: %s %q", r.Result, r.Message)
		}
	}
}

// TestVariablesCompileErrors: an error names the variable; a variable reads only those before
// it; a rule using a variable against its type is refused; names are identifiers, once.
func TestVariablesCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		vars []v1alpha1.Variable
		expr string
		want string
	}{
		{"broken", []v1alpha1.Variable{{Name: "x", Expression: "object.("}}, "true",
			"spec.variables[0] (x).expression: Invalid value: \"object.(\": compilation failed"},
		{"reads a later one", []v1alpha1.Variable{{Name: "a", Expression: "variables.b + 1"}, {Name: "b", Expression: "1"}}, "true",
			"spec.variables[0] (a).expression: Invalid value: \"variables.b + 1\": compilation failed: ERROR: <input>:1:10: undefined field 'b'"},
		{"wrong type in a rule", []v1alpha1.Variable{{Name: "n", Expression: "size(podSpec.containers)"}}, "variables.n.startsWith('a')",
			"spec.rules[0] (r).cel.expression"},
		{"not an identifier", []v1alpha1.Variable{{Name: "my-var", Expression: "1"}}, "true",
			"spec.variables[0].name: Invalid value: \"my-var\": must be a CEL identifier"},
		{"twice", []v1alpha1.Variable{{Name: "a", Expression: "1"}, {Name: "a", Expression: "2"}}, "true",
			"spec.variables[1].name: Duplicate value: \"a\""},
		{"undeclared", []v1alpha1.Variable{{Name: "a", Expression: "1"}}, "variables.b == 1",
			"undefined field 'b'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec: v1alpha1.PolicySpec{Variables: tt.vars, Rules: []v1alpha1.Rule{{Name: "r", CEL: &v1alpha1.CELRule{Expression: tt.expr}}}}}
			_, err := testCompiler.CompileClusterPolicy(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestVariablesOfRequestTime: a rule that reads oldObject through a variable is skipped in the
// background as one that reads it directly.
func TestVariablesOfRequestTime(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("p", `enforcement: Deny
variables:
- {name: old, expression: "oldObject"}
- {name: changed, expression: "variables.old == null || variables.old.spec != object.spec"}
rules:
- name: r
  cel: {expression: "variables.changed"}
`))
	results := e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, paramsPod), Background: true})
	if len(results) != 1 || results[0].Result != Skip || !strings.Contains(results[0].Message, "oldObject") {
		t.Fatalf("got %+v", results)
	}
}

// TestVariablesVAPCompatible: ValidatingAdmissionPolicy's own example, unchanged.
func TestVariablesVAPCompatible(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("vap", `enforcement: Deny
match: {kinds: [apps/Deployment]}
variables:
- name: foo
  expression: "'foo' in object.spec.template.metadata.labels ? object.spec.template.metadata.labels['foo'] : 'default'"
rules:
- name: r
  cel: {expression: "variables.foo == 'bar'"}
`))
	dep := mustResource(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: shop}
spec:
  selector: {matchLabels: {foo: bar}}
  template:
    metadata: {labels: {foo: bar}}
    spec: {containers: [{name: a, image: a:1}]}
`)
	results := e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: dep})
	if len(results) != 1 || results[0].Result != Pass {
		t.Fatalf("got %+v", results)
	}
}

// TestParamsCostFromTheirSize: the cost model knows the size of params (they are compiled with
// the policy), so a loop over three registries is estimated at three, not at EstimateSize.
func TestParamsCostFromTheirSize(t *testing.T) {
	cost := func(params string) uint64 {
		t.Helper()
		p := &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.PolicySpec{
			Params: &apiextensionsv1.JSON{Raw: []byte(params)},
			Rules: []v1alpha1.Rule{{Name: "r", CEL: &v1alpha1.CELRule{
				Expression: "podSpec.containers.all(c, params.registries.exists(r, c.image.startsWith(r)))"}}}}}
		cp, err := testCompiler.CompileClusterPolicy(p)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Cost()
	}
	three := cost(`{"registries": ["a/", "b/", "c/"]}`)
	thirty := cost(`{"registries": [` + strings.Repeat(`"registry.example.com/", `, 29) + `"z/"]}`)
	if three == 0 || thirty <= three {
		t.Errorf("3 registries cost %d, 30 cost %d: want the estimate to grow with the list", three, thirty)
	}
	rule, errs := compileCEL(&v1alpha1.CELRule{Expression: "podSpec.containers.all(c, object.spec.registries.exists(r, c.image.startsWith(r)))"}, testCompiler.env, nil, true, field.NewPath("r"))
	if len(errs) > 0 || rule.cost <= thirty {
		t.Errorf("a list of the object's costs %d (%v), want more than params of 30 items (%d)", rule.cost, errs, thirty)
	}
}

// BenchmarkCompileWithParamsAndVariables measures what params and variables add to compiling a
// policy, and the heap a compiled policy then holds. Policies that declare the same share their
// CEL environments (envs.go), as the plain variants' do; in the distinct variants each policy's
// param has a name of its own (or, without params, its expression is its own), so each has its
// own environments and programs, as a tenant's may (the tenant budgets count them so).
func BenchmarkCompileWithParamsAndVariables(b *testing.B) {
	for _, variant := range []string{"plain", "params", "params-and-variables", "plain/distinct", "params/distinct", "params-and-variables/distinct"} {
		b.Run(variant, func(b *testing.B) {
			n := 0
			policy := func() *v1alpha1.ClusterPolicy {
				p := &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: v1alpha1.PolicySpec{
					Rules: []v1alpha1.Rule{{Name: "r", CEL: &v1alpha1.CELRule{Expression: "podSpec.containers.all(c, c.image.startsWith('ghcr.io/'))"}}}}}
				param := "registries"
				if strings.HasSuffix(variant, "/distinct") {
					n++
					param = fmt.Sprint("registries", n)
				}
				if strings.HasPrefix(variant, "plain") {
					if n > 0 {
						p.Spec.Rules[0].CEL.Expression += fmt.Sprintf(" || %d < 0", n)
					}
					return p
				}
				p.Spec.Params = &apiextensionsv1.JSON{Raw: []byte(`{"` + param + `": ["ghcr.io/acme/", "registry.k8s.io/"]}`)}
				p.Spec.Rules[0].CEL.Expression = "podSpec.containers.all(c, params." + param + ".exists(r, c.image.startsWith(r)))"
				if strings.HasPrefix(variant, "params-and-variables") {
					p.Spec.Variables = []v1alpha1.Variable{{Name: "images", Expression: "podSpec.containers.map(c, c.image)"}}
					p.Spec.Rules[0].CEL.Expression = "variables.images.all(i, params." + param + ".exists(r, i.startsWith(r)))"
				}
				return p
			}
			b.ReportAllocs()
			var held []*CompiledPolicy
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				cp, err := testCompiler.CompileClusterPolicy(policy())
				if err != nil {
					b.Fatal(err)
				}
				if len(held) < 200 {
					held = append(held, cp)
				}
			}
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(len(held)), "heap-B/policy")
			runtime.KeepAlive(held)
		})
	}
}
