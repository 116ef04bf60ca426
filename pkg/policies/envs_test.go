package policies

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	authenticationv1 "k8s.io/api/authentication/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// scopedPolicy is a ClusterPolicy with params (JSON; "" for none), variables (name=expression)
// and one CEL rule.
func scopedPolicy(name, params, expr string, variables ...string) *v1alpha1.ClusterPolicy {
	p := &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.PolicySpec{Enforcement: v1alpha1.Deny, Rules: []v1alpha1.Rule{{Name: "r", CEL: &v1alpha1.CELRule{Expression: expr}}}}}
	if params != "" {
		p.Spec.Params = &apiextensionsv1.JSON{Raw: []byte(params)}
	}
	for _, v := range variables {
		n, e, _ := strings.Cut(v, "=")
		p.Spec.Variables = append(p.Spec.Variables, v1alpha1.Variable{Name: n, Expression: e})
	}
	return p
}

// scopeEnvs are the tracked and untracked environments of cp's first rule's scope.
func scopeEnvs(t *testing.T, cp *CompiledPolicy) (tracked, untracked *cel.Env) {
	t.Helper()
	rule, ok := cp.rules[0].eval.(*celRule)
	if !ok || rule.scope == nil {
		t.Fatalf("%s: no CEL rule with a scope", cp.Name)
	}
	fast, err := rule.scope.fast()
	if err != nil {
		t.Fatal(err)
	}
	return rule.scope.env, fast
}

// TestScopeEnvironmentsAreShared: policies that declare the same params and variables share
// their environments, tracked and untracked; any difference in what is declared (a param's
// name or type, a variable's type, one more variable) gets its own; and sharing an environment
// shares nothing else: each policy reads its own params.
func TestScopeEnvironmentsAreShared(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	const registries = "podSpec.containers.all(c, params.registries.exists(r, c.image.startsWith(r)))"
	const viaVariable = "variables.images.all(i, params.registries.exists(r, i.startsWith(r)))"
	policies := map[string]*v1alpha1.ClusterPolicy{
		"ghcr":          scopedPolicy("ghcr", `{"registries": ["ghcr.io/"]}`, registries),
		"docker":        scopedPolicy("docker", `{"registries": ["docker.io/", "quay.io/"]}`, registries),
		"ints":          scopedPolicy("ints", `{"registries": [1, 2]}`, "params.registries.all(r, r > 0)"),
		"renamed":       scopedPolicy("renamed", `{"registry": "ghcr.io/"}`, "podSpec.containers.all(c, c.image.startsWith(params.registry))"),
		"vars-ghcr":     scopedPolicy("vars-ghcr", `{"registries": ["ghcr.io/"]}`, viaVariable, "images=podSpec.containers.map(c, c.image)"),
		"vars-docker":   scopedPolicy("vars-docker", `{"registries": ["docker.io/"]}`, viaVariable, "images=podSpec.containers.map(x, x.image)"),
		"vars-count":    scopedPolicy("vars-count", `{"registries": ["ghcr.io/"]}`, "variables.images > 0", "images=size(podSpec.containers)"),
		"vars-two":      scopedPolicy("vars-two", `{"registries": ["ghcr.io/"]}`, viaVariable, "images=podSpec.containers.map(c, c.image)", "n=size(variables.images)"),
		"vars-no-param": scopedPolicy("vars-no-param", "", "variables.images.all(i, i != '')", "images=podSpec.containers.map(c, c.image)"),
	}
	compiled := map[string]*CompiledPolicy{}
	for name, p := range policies {
		if compiled[name], err = c.CompileClusterPolicy(p); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	shared := [][]string{{"ghcr", "docker"}, {"ints"}, {"renamed"}, {"vars-ghcr", "vars-docker"}, {"vars-count"}, {"vars-two"}, {"vars-no-param"}}
	for i, group := range shared {
		tracked, untracked := scopeEnvs(t, compiled[group[0]])
		if tracked == nil || untracked == nil || tracked == untracked {
			t.Fatalf("%s: environments %p and %p", group[0], tracked, untracked)
		}
		for _, name := range group[1:] {
			if tr, un := scopeEnvs(t, compiled[name]); tr != tracked || un != untracked {
				t.Errorf("%s and %s declare the same, but do not share their environments", group[0], name)
			}
		}
		for _, other := range shared[i+1:] {
			if tr, un := scopeEnvs(t, compiled[other[0]]); tr == tracked || un == untracked {
				t.Errorf("%s and %s declare differently, but share an environment", group[0], other[0])
			}
		}
	}
	if got := c.envs.len(); got != 2*len(shared) {
		t.Errorf("%d environments interned, want %d", got, 2*len(shared))
	}

	e := NewEngine([]*CompiledPolicy{compiled["ghcr"], compiled["docker"], compiled["vars-ghcr"], compiled["vars-docker"]}, nil, time.Now)
	pod := mustResource(t, testPod) // ghcr.io/acme/web:1.0
	got := summarize(e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: pod}))
	slices.Sort(got)
	want := []string{"docker/r=fail:Deny", "ghcr/r=pass:Deny", "vars-docker/r=fail:Deny", "vars-ghcr/r=pass:Deny"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestSharedEnvironmentKeepsVariableOrder: a variable may read only the ones before it, even
// when a policy that declares the same variables, in order, has compiled before.
func TestSharedEnvironmentKeepsVariableOrder(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	inOrder := scopedPolicy("in-order", "", "variables.n > 0", "images=podSpec.containers.map(c, c.image)", "n=size(variables.images)")
	if _, err := c.CompileClusterPolicy(inOrder); err != nil {
		t.Fatal(err)
	}
	reversed := scopedPolicy("reversed", "", "variables.n > 0", "n=size(variables.images)", "images=podSpec.containers.map(c, c.image)")
	_, err = c.CompileClusterPolicy(reversed)
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "spec.variables[0] (n).expression") || !strings.Contains(err.Error(), "undefined field 'images'") {
		t.Fatalf("got %v, want variables[0] refused for reading a later variable", err)
	}
}

// TestSharedEnvironmentsAreDropped: an interned environment goes when the last policy that
// declared it does.
func TestSharedEnvironmentsAreDropped(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	p := scopedPolicy("p", `{"registries": ["ghcr.io/"]}`, "podSpec.containers.all(c, params.registries.exists(r, c.image.startsWith(r + 'dropped')))")
	cp, err := c.CompileClusterPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	scopeEnvs(t, cp) // plans the untracked environment too
	if n := c.envs.len(); n != 2 {
		t.Fatalf("%d environments interned, want 2", n)
	}
	expr := p.Spec.Rules[0].CEL.Expression
	if n := internedPrograms(expr); n != 2 {
		t.Fatalf("%d programs of the rule interned, want 2 (tracked and untracked)", n)
	}
	runtime.KeepAlive(cp)
	cp = nil //nolint:ineffassign,wastedassign // dropped: nothing holds the environments now
	for range 20 {
		runtime.GC() // the cleanups run after a cycle finds them unreachable
		if c.envs.len() == 0 && internedPrograms(expr) == 0 {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("%d environments and %d programs still interned after 20 collections, none held", c.envs.len(), internedPrograms(expr))
}

// internedPrograms is how many programs of expr are interned.
func internedPrograms(expr string) int {
	programs.mu.Lock()
	defer programs.mu.Unlock()
	n := 0
	for k := range programs.m {
		if k.expr == expr {
			n++
		}
	}
	return n
}

// TestProgramsAreShared: an expression planned in the same environment the same way is one
// program, whichever policies hold it; another expression, environment or way (tracked or
// not) is another.
func TestProgramsAreShared(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	const registries = "podSpec.containers.all(c, params.registries.exists(r, c.image.startsWith(r)))"
	compile := func(p *v1alpha1.ClusterPolicy) *celRule {
		t.Helper()
		cp, err := c.CompileClusterPolicy(p)
		if err != nil {
			t.Fatal(err)
		}
		rule, ok := cp.rules[0].eval.(*celRule)
		if !ok || rule.program == nil || rule.untracked == nil {
			t.Fatalf("%s: want a CEL rule with an untracked twin", p.Name)
		}
		return rule
	}
	a := compile(scopedPolicy("a", `{"registries": ["ghcr.io/"]}`, registries))
	b := compile(scopedPolicy("b", `{"registries": ["docker.io/"]}`, registries))
	if a.program != b.program || a.untracked != b.untracked {
		t.Errorf("the same expression in the same environment: programs %p, %p and twins %p, %p, want one each", a.program, b.program, a.untracked, b.untracked)
	}
	if a.program == a.untracked {
		t.Error("the tracked program is its untracked twin")
	}
	other := compile(scopedPolicy("other", `{"registries": ["docker.io/"]}`, registries+" && true"))
	elsewhere := compile(scopedPolicy("elsewhere", `{"registries": ["docker.io/"], "n": 1}`, registries))
	for name, r := range map[string]*celRule{"another expression": other, "another environment": elsewhere} {
		if r.program == a.program || r.untracked == a.untracked {
			t.Errorf("%s shares a's program", name)
		}
	}
	plain1 := compile(scopedPolicy("plain1", "", "podSpec.containers.all(c, c.image != '')"))
	plain2 := compile(scopedPolicy("plain2", "", "podSpec.containers.all(c, c.image != '')"))
	if plain1.program != plain2.program {
		t.Error("policies without params: the same expression is two programs")
	}
}

// TestSharedEnvironmentsConcurrently: policies declaring the same compile at once, as the
// server's rebuilds do; run with -race. They all end up with one environment.
func TestSharedEnvironmentsConcurrently(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	compiled := make([]*CompiledPolicy, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p := scopedPolicy(fmt.Sprint("p", i), fmt.Sprintf(`{"registries": ["r%d/"]}`, i), "variables.images.all(i, params.registries.exists(r, i.startsWith(r)))",
				"images=podSpec.containers.map(c, c.image)")
			cp, err := c.CompileClusterPolicy(p)
			if err != nil {
				t.Error(err)
				return
			}
			scopeEnvs(t, cp)
			compiled[i] = cp
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	tracked, untracked := scopeEnvs(t, compiled[0])
	for _, cp := range compiled[1:] {
		if tr, un := scopeEnvs(t, cp); tr != tracked || un != untracked {
			t.Errorf("%s: environments not shared", cp.Name)
		}
	}
}

// lazyOf is the lazy program p is, or nil.
func lazyOf(p cel.Program) *lazyProgram {
	if sp, ok := p.(*sharedProgram); ok {
		l, _ := sp.Program.(*lazyProgram)
		return l
	}
	return nil
}

// TestUntwinnedMessagePlannedWhenNeeded: a message expression with no twin (it reads what the
// request does not bound) is planned when its rule first fails, as before messages had twins.
func TestUntwinnedMessagePlannedWhenNeeded(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	p := scopedPolicy("untwinned", "", "object.metadata.name != 'bad'")
	p.Spec.Rules[0].CEL.MessageExpression = "'bad, for ' + request.userInfo.groups.join(', ')"
	cp, err := c.CompileClusterPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	message := cp.rules[0].eval.(*celRule).messageExp
	tracked := lazyOf(message.program)
	if message.untracked != nil || tracked == nil || tracked.planned.Load() {
		t.Fatalf("the message: twin %v, tracked %v; want no twin, the tracked program lazy and not planned", message.untracked, tracked)
	}
	e := NewEngine([]*CompiledPolicy{cp}, nil, time.Now)
	evaluate := func(manifest string) Result {
		t.Helper()
		req := &Request{Operation: v1alpha1.Create, Object: mustResource(t, manifest), UserInfo: authenticationv1.UserInfo{Groups: []string{"dev"}}}
		results := e.Evaluate(context.Background(), req)
		if len(results) != 1 {
			t.Fatalf("got %+v", results)
		}
		return results[0]
	}
	if r := evaluate(testPod); r.Result != Pass || tracked.planned.Load() {
		t.Fatalf("passing: %+v, the message planned: %v", r, tracked.planned.Load())
	}
	bad := strings.Replace(testPod, "name: web", "name: bad", 1)
	if r := evaluate(bad); r.Result != Fail || r.Message != "bad, for dev" || !tracked.planned.Load() {
		t.Fatalf("failing: %+v, the message planned: %v", r, tracked.planned.Load())
	}
}

// TestTrackedProgramsPlannedWhenNeeded: a rule's, variable's or message expression's tracked
// program, when it has an untracked twin, is planned when first run: a request within the twins'
// bounds runs none of them, failing or not, one of unknown bounds the tracked programs, which
// answer as the twins did. The message's twin too is planned when a failing request first needs
// it.
func TestTrackedProgramsPlannedWhenNeeded(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	p := scopedPolicy("lazy", `{"registry": "ghcr.io/"}`, "variables.images.all(i, i.startsWith(params.registry) || i == 'lazy-test')",
		"images=podSpec.containers.map(c, c.image + '')")
	p.Spec.Rules[0].CEL.MessageExpression = "'images from elsewhere: ' + variables.images.join(', ')"
	cp, err := c.CompileClusterPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	rule := cp.rules[0].eval.(*celRule)
	variable := rule.scope.variables[0]
	programs := map[string]*lazyProgram{"the rule's": lazyOf(rule.program), "the variable's": lazyOf(variable.program), "the message's": lazyOf(rule.messageExp.program)}
	for name, l := range programs {
		if l == nil || l.planned.Load() {
			t.Fatalf("%s tracked program: %v, want lazy and not planned", name, l)
		}
	}
	if rule.untracked == nil || variable.untracked == nil || rule.messageExp.untracked == nil {
		t.Fatal("the rule, its variable or its message has no untracked twin")
	}
	messageTwin := lazyOf(rule.messageExp.untracked)
	if messageTwin == nil || messageTwin.planned.Load() {
		t.Fatalf("the message's twin: %v, want lazy and not planned", messageTwin)
	}
	e := NewEngine([]*CompiledPolicy{cp}, nil, time.Now)
	evaluate := func(manifest string, unknownBounds bool) Result {
		t.Helper()
		res := mustResource(t, manifest)
		if unknownBounds {
			res.bounds = jsonBounds{}
		}
		results := e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: res})
		if len(results) != 1 {
			t.Fatalf("got %+v", results)
		}
		return results[0]
	}
	elsewhere := strings.Replace(testPod, "ghcr.io/acme/web:1.0", "docker.io/web:1.0", 1)

	if r := evaluate(testPod, false); r.Result != Pass {
		t.Fatalf("within bounds: %+v", r)
	}
	if messageTwin.planned.Load() {
		t.Error("the message's twin planned by a passing request")
	}
	for name, l := range programs {
		if l.planned.Load() {
			t.Errorf("%s tracked program planned by a request within the twin's bounds", name)
		}
	}
	within := evaluate(elsewhere, false)
	if within.Result != Fail || within.Message != "images from elsewhere: docker.io/web:1.0" {
		t.Fatalf("failing, within bounds: %+v", within)
	}
	for name, l := range programs {
		if l.planned.Load() {
			t.Errorf("%s tracked program planned by a failing request within the twins' bounds", name)
		}
	}
	if !messageTwin.planned.Load() {
		t.Error("the message's twin not planned by the failing request that ran it")
	}
	if r := evaluate(elsewhere, true); r.Result != within.Result || r.Message != within.Message {
		t.Errorf("tracked: %+v; untracked: %+v", r, within)
	}
	if r := evaluate(testPod, true); r.Result != Pass {
		t.Errorf("tracked, passing: %+v", r)
	}
	for name, l := range programs {
		if !l.planned.Load() {
			t.Errorf("%s tracked program not planned by a request of unknown bounds", name)
		}
	}
}
