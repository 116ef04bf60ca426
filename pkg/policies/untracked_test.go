package policies

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	corev1 "k8s.io/api/core/v1"
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

// TestUntrackedOnlyWhereTheEstimateBounds: a rule runs untracked only on requests within the
// bounds its estimate holds at; reading what the request does not bound (the namespace's
// labels, the requester's groups, the items of a list the expression built), or looping over
// the object twice, keeps it tracked.
func TestUntrackedOnlyWhereTheEstimateBounds(t *testing.T) {
	for expr, want := range map[string]untrackedBounds{
		"podSpec.containers.all(c, c.image.startsWith('ghcr.io/'))":          {{items: 1 << 16, chars: 1 << 22}},
		"podSpec.?initContainers.orValue([]).all(c, has(c.securityContext))": {{items: 1 << 16, chars: 1 << 22}},
		// the strings' length, not the number of containers, bounds it
		"podSpec.containers.all(c, c.image.endsWith(':latest'))":                  {{items: 1 << 16, chars: 1 << 22}},
		"request.operation != 'DELETE' && object.metadata.namespace != 'default'": {{items: 1 << 22, chars: 1 << 22}},
		"namespaceObject.metadata.labels['env'] == 'prod'":                        {{items: 1 << 22, chars: 1 << 22}}, // costs the same at any size
		"namespaceObject.metadata.labels.all(k, !k.startsWith('x'))":              nil,
		"request.userInfo.groups.exists(g, g == 'admins')":                        nil,
		// a loop in a loop over the same list: items squared
		"podSpec.containers.all(a, podSpec.containers.all(b, a.name != b.name || a == b))": {{items: 1 << 6, chars: 1 << 11}},
		// podSpec's types say the env are items, and each name a string
		"podSpec.containers.all(c, c.?env.orValue([]).all(e, e.name != 'SECRET'))": {{items: 1 << 8, chars: 1 << 22}},
		// object has no Go type here: its lists and strings are sized alike, at least 1 KiB
		"object.spec.items.all(a, object.spec.items.all(b, a != b || true))": nil,
		// an item of a split string is no longer than the string; one of the requester's groups is unbounded
		"podSpec.containers.all(c, c.image.split('/')[0].contains(':'))":         {{items: 1 << 6, chars: 1 << 15}, {items: 1 << 8, chars: 1 << 13}, {items: 1 << 10, chars: 1 << 11}},
		"podSpec.containers.all(c, request.userInfo.groups[0].contains(c.name))": nil,
		// quantity() is charged by its string's length, in a loop over the containers
		"podSpec.containers.all(c, quantity(c.resources.limits['memory']) != null)": {{items: 1 << 6, chars: 1 << 17}, {items: 1 << 8, chars: 1 << 15},
			{items: 1 << 10, chars: 1 << 13}, {items: 1 << 12, chars: 1 << 11}},
	} {
		rule := mustCompileCEL(t, expr)
		if (rule.untracked != nil) != (want != nil) || !slices.Equal(rule.untrackedWithin, want) {
			t.Errorf("%s: untracked within %v, want %v", expr, rule.untrackedWithin, want)
		}
	}
	// Through the compiler: a policy's params are sized by their values and its variables
	// inlined where read; what a variable reads unbounded keeps its readers tracked; the policy
	// webhook's check-only compiler plans no twin. A variable has a twin by the same rules as a
	// rule (vars: which have one).
	const policy = `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: p}
spec:
  %s
  rules:
    - {name: r, cel: {expression: %q}}
`
	tenant := strings.NewReplacer("ClusterPolicy", "Policy", "{name: p}", "{name: p, namespace: team}")
	for _, tt := range []struct {
		name     string
		compiler *Compiler
		spec     string
		expr     string
		want     untrackedBounds
		tenant   bool
		vars     []bool
	}{
		{"plain", testCompiler, "", "podSpec.containers.all(c, c.name != 'x')", untrackedBounds{{items: 1 << 16, chars: 1 << 22}}, false, nil},
		{"params", testCompiler, "params: {names: [a, b, c]}", "podSpec.containers.all(c, !(c.name in params.names))", untrackedBounds{{items: 1 << 16, chars: 1 << 22}}, false, nil},
		// a loop over the params in a loop over the containers: the params' 3 items, not items
		{"params loop", testCompiler, "params: {prefixes: [a, b, c]}", "podSpec.containers.all(c, params.prefixes.all(p, !c.image.startsWith(p)))", untrackedBounds{{items: 1 << 14, chars: 1 << 22}}, false, nil},
		// two lists concatenated, each of items entries: 2 items
		{"variables", testCompiler, "variables: [{name: all, expression: \"podSpec.containers + podSpec.?initContainers.orValue([])\"}]",
			"variables.all.all(c, c.name != 'x')", untrackedBounds{{items: 1 << 16, chars: 1 << 22}}, false, []bool{true}},
		{"variable of a variable", testCompiler, "variables: [{name: cs, expression: \"podSpec.containers\"}, {name: names, expression: \"variables.cs.map(c, c.name)\"}]",
			"variables.names.all(n, variables.names.all(m, n == m))", untrackedBounds{{items: 1 << 6, chars: 1 << 11}}, false, []bool{true, true}},
		{"variable unbounded", testCompiler, "variables: [{name: groups, expression: \"request.userInfo.groups\"}]",
			"variables.groups.all(g, g != 'x')", nil, false, []bool{true}}, // reading the list costs the variable little; looping over it is unbounded
		{"tenant variables", testCompiler, "variables: [{name: cs, expression: \"podSpec.containers\"}]", "variables.cs.all(c, c.name != 'x')", nil, true, []bool{false}},
		{"check-only", testCompiler.Checker(), "", "podSpec.containers.all(c, c.name != 'x')", nil, false, nil},
		// a tenant's rules have none: their memory stays within the tenants' budget
		{"tenant", testCompiler, "", "podSpec.containers.all(c, c.name != 'x')", nil, true, nil},
		{"tenant params", testCompiler, "params: {names: [a, b, c]}", "podSpec.containers.all(c, !(c.name in params.names))", nil, true, nil},
	} {
		doc := fmt.Sprintf(policy, tt.spec, tt.expr)
		var cp *CompiledPolicy
		if tt.tenant {
			cp = mustEngineWith(t, tt.compiler, time.Now(), tenant.Replace(doc)).namespaced["team"][0]
		} else {
			cp = mustEngineWith(t, tt.compiler, time.Now(), doc).cluster[0]
		}
		rule := cp.rules[0].eval.(*celRule)
		if (rule.untracked != nil) != (tt.want != nil) || !slices.Equal(rule.untrackedWithin, tt.want) {
			t.Errorf("%s: untracked within %v, want %v", tt.name, rule.untrackedWithin, tt.want)
		}
		var vars []bool
		if rule.scope != nil {
			for _, v := range rule.scope.variables {
				vars = append(vars, v.untracked != nil)
			}
		}
		if !slices.Equal(vars, tt.vars) {
			t.Errorf("%s: variables with an untracked twin %v, want %v", tt.name, vars, tt.vars)
		}
	}
}

// TestUntrackedWithinTheLimit checks the untracked programs against the tracked ones on the load
// set's rules, on Pods of many containers (each with as many environment variables) and long
// strings at and past each step of each rule's bounds: wherever a rule runs untracked, the
// tracked program's actual cost is within the per-call limit and both give the same verdict;
// past the bounds, the tracked program runs. (That the bound holds on every object rests on
// CEL's estimator being an upper bound, as Kubernetes' CRD validation does.)
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
	// pod has n containers, each with n environment variables (one when n is large), and
	// strings of chars bytes: n or chars can be 0 for small.
	pod := func(n, chars int) *Resource {
		long := strings.Repeat("a", max(chars-len("registry.example.com/"), 1))
		env := make([]map[string]any, 0, n)
		for i := range n {
			if n > 128 && i > 0 {
				break
			}
			env = append(env, map[string]any{"name": fmt.Sprintf("E%d", i), "value": "v"})
		}
		var containers []map[string]any
		for i := range max(n, 1) {
			containers = append(containers, map[string]any{"name": fmt.Sprintf("c%d", i), "image": "registry.example.com/" + long, "env": env,
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
		for _, step := range rule.untrackedWithin {
			// The JSON's counts are doubled for defaulting: items/2 containers are at the step. A
			// step past what a test builds in time is checked within it, not at its edge.
			at := [2]int{min(step.items/2, 256), min(step.chars, 1<<16)}
			cases := [][2]int{at}
			if at == [2]int{step.items / 2, step.chars} { // and just past it, both ways
				cases = append(cases, [2]int{at[0] + 1, at[1]}, [2]int{at[0], at[1] + 1})
			}
			for _, c := range cases {
				res := pod(c[0], c[1])
				in := &input{ctx: t.Context(), req: &Request{Operation: v1alpha1.Create, Object: res}, res: res}
				act := activation{in: in}
				if c != at {
					if rule.programFor(in) != rule.program {
						t.Errorf("%s: a request of bounds %+v runs untracked (within %v)", r.Name, in.bounds(), rule.untrackedWithin)
					}
					continue
				}
				if rule.programFor(in) != rule.untracked {
					t.Errorf("%s: a request of bounds %+v runs tracked (within %v)", r.Name, in.bounds(), rule.untrackedWithin)
				}
				want, details, err := rule.program.ContextEval(t.Context(), act)
				if err != nil {
					t.Fatalf("%s on bounds %+v: %v", r.Name, in.bounds(), err)
				}
				if cost := details.ActualCost(); cost == nil || *cost > MaxExpressionCost {
					t.Errorf("%s on bounds %+v: actual cost %v past the limit it was proven within", r.Name, in.bounds(), cost)
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

// TestSizeKindAt pins how podSpec's and podMeta's paths are sized from their Go types, as CEL's
// estimator names them: a wrong kind would size a list by the strings' bound, or the reverse.
func TestSizeKindAt(t *testing.T) {
	spec, meta := podTypes[varPodSpec], podTypes[varPodMeta]
	for _, tt := range []struct {
		root reflect.Type
		path string
		want sizeKind
	}{
		{spec, "containers", sizeItems},
		{spec, "containers @keys env", sizeItems},              // a dyn list's items are @keys
		{spec, "containers @items env @items name", sizeChars}, // an index
		{spec, "containers @values image", sizeChars},
		{spec, "containers @keys resources limits", sizeItems},
		{spec, "containers @keys resources limits @values", sizeChars}, // a Quantity
		{spec, "containers @keys resources limits @keys", sizeChars},
		{spec, "containers @keys livenessProbe httpGet port", sizeChars}, // an IntOrString
		{spec, "containers @keys securityContext capabilities add", sizeItems},
		{spec, "nodeSelector team", sizeChars}, // a field selected on a map
		{spec, "containers @indices", sizeAny},
		{spec, "containers @keys noSuchField", sizeAny},
		{spec, "containers @keys image @keys", sizeAny},
		{meta, "labels", sizeItems},
		{meta, "labels @keys", sizeChars},
		{meta, "creationTimestamp", sizeChars},
		{meta, "managedFields @keys fieldsV1", sizeAny}, // its own JSON, an object
		{meta, "managedFields @keys fieldsV1 f:spec", sizeAny},
		{meta, "ownerReferences @keys", sizeFields},
	} {
		got, _ := sizeKindAt(tt.root, strings.Fields(tt.path))
		if got != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.root.Name(), tt.path, got, tt.want)
		}
	}
	// A struct is a map of its JSON fields, those of inlined structs included.
	if _, n := sizeKindAt(spec, nil); n != uint64(reflect.TypeFor[corev1.PodSpec]().NumField()) { //nolint:gosec // a field count
		t.Errorf("PodSpec: %d fields, want %d", n, reflect.TypeFor[corev1.PodSpec]().NumField())
	}
	type inner struct {
		A string `json:"a"`
		B string `json:"-"`
	}
	type outer struct {
		inner `json:",inline"`
		C     int `json:"c,omitempty"`
		d     int //nolint:unused // unexported: not a JSON field
	}
	if kind, n := sizeKindAt(reflect.TypeFor[outer](), nil); kind != sizeFields || n != 2 {
		t.Errorf("outer: %d, %d fields, want 2", kind, n)
	}
	if kind, _ := sizeKindAt(reflect.TypeFor[outer](), []string{"a"}); kind != sizeChars {
		t.Errorf("outer.a (inlined): %d, want a string", kind)
	}
}

// TestUntrackedAgreesOnTheLibrary runs every CEL rule of the library that has an untracked twin,
// params and variables included, on every object of the library's suites and the examples: both
// programs give the same value or error, and the tracked one's actual cost is within the limit.
func TestUntrackedAgreesOnTheLibrary(t *testing.T) {
	files, _ := filepath.Glob("../../manifests/library/*.yaml")
	var rules, messages []*celRule
	var names, messageNames []string
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range mustEngine(t, time.Now(), string(data)).cluster {
			for _, r := range p.rules {
				c, ok := r.eval.(*celRule)
				if ok && c.untracked != nil {
					rules, names = append(rules, c), append(names, p.Name+"/"+r.name)
				}
				if ok && c.messageExp != nil && c.messageExp.untracked != nil {
					messages, messageNames = append(messages, c), append(messageNames, p.Name+"/"+r.name+" (its message)")
				}
			}
		}
	}
	// 34 of the library's 38 CEL rules. The four left are estimated past the per-call limit at
	// the least bounds: an Ingress's lists are sized as its strings may be, and two search a
	// string joined from lists of lists.
	if len(rules) < 34 {
		t.Fatalf("only %d library rules run untracked", len(rules))
	}
	// And 24 of their 27 messageExpressions: the three left are those of two of these rules, and
	// one that loops over what a filter made, bound to a loop's variable.
	if len(messages) < 24 {
		t.Fatalf("only %d library messageExpressions run untracked", len(messages))
	}
	// Their variables: each run both ways too, afresh (the variables it reads evaluated anew).
	var vars []*celVariable
	var scopes []*celScope
	for _, r := range rules {
		if r.scope == nil || slices.Contains(scopes, r.scope) {
			continue
		}
		scopes = append(scopes, r.scope)
		for _, v := range r.scope.variables {
			if v.untracked != nil {
				vars = append(vars, v)
			}
		}
	}
	if len(vars) < 10 {
		t.Fatalf("only %d library variables run untracked", len(vars))
	}
	varsCompared, messagesCompared := 0, 0
	decoder := NewDecoder(true)
	compared := 0
	for _, js := range corpusJSON(t) {
		res, err := decoder.Decode(js, nil)
		if err != nil {
			continue
		}
		req := &Request{Operation: v1alpha1.Create, Object: res}
		compare := func(name string, twin *twinned, scope *celScope) bool {
			in := &input{ctx: t.Context(), req: req, res: res}
			if twin.programFor(in) != twin.untracked {
				return false
			}
			want, details, wantErr := twin.program.ContextEval(t.Context(), activation{in: in, scope: scope})
			in = &input{ctx: t.Context(), req: req, res: res}                       // the variables evaluated afresh
			got, _, gotErr := twin.untracked.Eval(activation{in: in, scope: scope}) // as twinned.eval runs it
			if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) || (wantErr == nil && got.Equal(want) != types.True) {
				t.Errorf("%s on %s: untracked %v (%v), tracked %v (%v)", name, res.Ref(), got, gotErr, want, wantErr)
			}
			if cost := details.ActualCost(); wantErr == nil && (cost == nil || *cost > MaxExpressionCost) {
				t.Errorf("%s on %s: actual cost %v past the limit", name, res.Ref(), cost)
			}
			return true
		}
		for _, v := range vars {
			scope := scopes[slices.IndexFunc(scopes, func(s *celScope) bool { return slices.Contains(s.variables, v) })]
			if compare("variable "+v.name, &v.twinned, scope) {
				varsCompared++
			}
		}
		for i, rule := range rules {
			if compare(names[i], &rule.twinned, rule.scope) {
				compared++
			}
		}
		for i, rule := range messages {
			if compare(messageNames[i], rule.messageExp, rule.scope) {
				messagesCompared++
			}
		}
	}
	if compared < 1000 || varsCompared < 500 || messagesCompared < 500 {
		t.Fatalf("only %d evaluations of rules, %d of variables and %d of messages compared", compared, varsCompared, messagesCompared)
	}
}
