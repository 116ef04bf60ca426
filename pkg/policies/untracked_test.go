package policies

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// TestUntrackedEnvMatchesKubernetes holds the untracked environment to the Kubernetes one it
// copies: the same functions with the same overloads, macros and variables. A Kubernetes update
// that adds or drops a library fails here rather than planning programs that differ.
func TestUntrackedEnvMatchesKubernetes(t *testing.T) {
	fast, err := untrackedEnv()
	if err != nil {
		t.Fatal(err)
	}
	overloads := func(env *cel.Env) map[string][]string {
		out := map[string][]string{}
		for name, fn := range env.Functions() {
			for _, o := range fn.OverloadDecls() {
				out[name] = append(out[name], o.ID())
			}
			slices.Sort(out[name])
		}
		return out
	}
	want, got := overloads(testCompiler.env), overloads(fast)
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if !slices.Equal(want[name], got[name]) {
			t.Errorf("function %s: overloads %v, want %v", name, got[name], want[name])
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("function %s is not in the Kubernetes environment", name)
		}
	}
	macros := func(env *cel.Env) []string {
		var out []string
		for _, m := range env.Macros() {
			out = append(out, m.MacroKey())
		}
		slices.Sort(out)
		return out
	}
	if w, g := macros(testCompiler.env), macros(fast); !slices.Equal(w, g) {
		t.Errorf("macros %v, want %v", g, w)
	}
	vars := func(env *cel.Env) map[string]string {
		out := map[string]string{}
		for _, v := range env.Variables() {
			out[v.Name()] = v.Type().String()
		}
		return out
	}
	if w, g := vars(testCompiler.env), vars(fast); !maps.Equal(w, g) {
		t.Errorf("variables %v, want %v", g, w)
	}
}

// TestUntrackedOnlyWhereTheEstimateBounds: a rule runs untracked only on requests no larger than
// the size its estimate holds at; reading what the request does not bound (the namespace's
// labels, the requester's groups), or looping over the object twice, keeps it tracked.
func TestUntrackedOnlyWhereTheEstimateBounds(t *testing.T) {
	for expr, untracked := range map[string]bool{
		"podSpec.containers.all(c, c.image.startsWith('ghcr.io/'))":                 true,
		"podSpec.?initContainers.orValue([]).all(c, has(c.securityContext))":        true,
		"request.operation != 'DELETE' && object.metadata.namespace != 'default'":   true,
		"namespaceObject.metadata.labels['env'] == 'prod'":                          true, // costs the same at any size
		"namespaceObject.metadata.labels.all(k, !k.startsWith('x'))":                false,
		"request.userInfo.groups.exists(g, g == 'admins')":                          false,
		"object.spec.items.all(a, object.spec.items.all(b, a != b || true))":        false,
		"podSpec.containers.all(c, c.?env.orValue([]).all(e, e.name != 'SECRET'))":  false,
		"podSpec.containers.all(c, quantity(c.resources.limits['memory']) != null)": true,
	} {
		rule, errs := compileCEL(&v1alpha1.CELRule{Expression: expr}, testCompiler.env, nil, true, field.NewPath("r"))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", expr, errs)
		}
		if (rule.untracked != nil) != untracked {
			t.Errorf("%s: untracked up to %d, want untracked: %v", expr, rule.untrackedUpTo, untracked)
		}
	}
	// Through the compiler: a policy with params has its own environment and stays tracked, and
	// the policy webhook's check-only compiler plans no twin.
	const policy = `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: p}
spec:
  %s
  rules:
    - {name: r, cel: {expression: "podSpec.containers.all(c, c.name != 'x')"}}
`
	for _, tt := range []struct {
		name      string
		compiler  *Compiler
		params    string
		untracked bool
	}{
		{"plain", testCompiler, "", true},
		{"params", testCompiler, "params: {a: 1}", false},
		{"check-only", testCompiler.Checker(), "", false},
	} {
		cp := mustEngineWith(t, tt.compiler, time.Now(), fmt.Sprintf(policy, tt.params)).cluster[0]
		if got := cp.rules[0].eval.(*celRule).untracked != nil; got != tt.untracked {
			t.Errorf("%s: untracked %v, want %v", tt.name, got, tt.untracked)
		}
	}
}

// TestUntrackedWithinTheLimit checks the untracked programs against the tracked ones on the load
// set's rules, on Pods of long strings and many containers near each rule's bound: wherever a
// rule runs untracked, the tracked program's actual cost is within the per-call limit and both
// give the same verdict; past the bound, the tracked program runs. (That the bound holds on every
// object rests on CEL's estimator being an upper bound, as Kubernetes' CRD validation does.)
func TestUntrackedWithinTheLimit(t *testing.T) {
	data, err := os.ReadFile("../../test/load/policies/cel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.ClusterPolicy
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	decoder := NewDecoder(true)
	// pod is a Pod of about size bytes, its bulk in n containers with strings of the rest.
	pod := func(size, n int) *Resource {
		per := max(size/n-200, 1)
		long := strings.Repeat("a", per)
		var containers []map[string]any
		for i := range n {
			containers = append(containers, map[string]any{"name": fmt.Sprintf("c%d", i), "image": "registry.example.com/" + long,
				"env":       []map[string]any{{"name": "A", "value": long[:per/2]}},
				"resources": map[string]any{"limits": map[string]any{"memory": "1Gi"}, "requests": map[string]any{"cpu": "1"}}})
		}
		obj := map[string]any{"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": "p", "namespace": "shop", "labels": map[string]any{"team": "a"}, "annotations": map[string]any{"k": long}},
			"spec":     map[string]any{"containers": containers}}
		js, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		res, err := decoder.Decode(js, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	checked := 0
	for _, r := range p.Spec.Rules {
		rule, errs := compileCEL(r.CEL, testCompiler.env, nil, true, field.NewPath(r.Name))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		if rule.untracked == nil {
			continue
		}
		for _, size := range []int{rule.untrackedUpTo / 2, rule.untrackedUpTo, rule.untrackedUpTo * 2} {
			if size > 1<<19 {
				continue // the object-bound rules: their cost does not grow with the object
			}
			for _, n := range []int{1, 8, max(size/300, 1)} {
				res := pod(size, n)
				in := &input{ctx: t.Context(), req: &Request{Operation: v1alpha1.Create, Object: res}, res: res}
				act := activation{in: in}
				if in.size() > rule.untrackedUpTo {
					if rule.programFor(in) != rule.program {
						t.Errorf("%s: a request of %d bytes runs untracked (bound %d)", r.Name, in.size(), rule.untrackedUpTo)
					}
					continue
				}
				if rule.programFor(in) != rule.untracked {
					t.Errorf("%s: a request of %d bytes runs tracked (bound %d)", r.Name, in.size(), rule.untrackedUpTo)
				}
				want, details, err := rule.program.ContextEval(t.Context(), act)
				if err != nil {
					t.Fatalf("%s on %d bytes: %v", r.Name, in.size(), err)
				}
				if cost := details.ActualCost(); cost == nil || *cost > MaxExpressionCost {
					t.Errorf("%s on %d bytes (%d containers): actual cost %v past the limit it was proven within", r.Name, in.size(), n, cost)
				}
				got, _, err := rule.untracked.ContextEval(t.Context(), act)
				if err != nil || got.Equal(want) != types.True {
					t.Errorf("%s: untracked %v (%v), tracked %v", r.Name, got, err, want)
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d cases checked", checked)
	}
}
