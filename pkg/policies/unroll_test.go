package policies

import (
	"slices"
	"testing"

	"k8s.io/apiserver/pkg/cel/library"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// TestLiteralLoopsEstimatedAsWrittenOut: a loop over a list literal, all or exists, nested or
// not, and an optional field's default, get the staircase of the expression written out by hand,
// loop by loop: the estimate follows the elements' paths.
func TestLiteralLoopsEstimatedAsWrittenOut(t *testing.T) {
	for literal, written := range map[string]string{
		"[podSpec.containers, podSpec.?initContainers.orValue([])].all(cs, cs.all(c, c.image.split('/').size() > 1))":     "podSpec.containers.all(c, c.image.split('/').size() > 1) && podSpec.?initContainers.orValue([]).all(c, c.image.split('/').size() > 1)",
		"[podSpec.containers, podSpec.?initContainers.orValue([])].exists(cs, cs.exists(c, c.image.endsWith(':latest')))": "podSpec.containers.exists(c, c.image.endsWith(':latest')) || podSpec.?initContainers.orValue([]).exists(c, c.image.endsWith(':latest'))",
		"[podSpec.containers].all(cs, cs.all(c, c.?ports.orValue([]).all(p, p.?hostPort.orValue(0) == 0)))":               "podSpec.containers.all(c, c.?ports.orValue([]).all(p, p.?hostPort.orValue(0) == 0))",
		"[podSpec.containers, podSpec.containers].all(a, [podSpec.containers].all(b, a.size() == b.size()))":              "podSpec.containers.size() == podSpec.containers.size() && podSpec.containers.size() == podSpec.containers.size()",
		// Lists added together, as a policy's variable gathers every container, and chains of
		// optional fields with a default.
		"(podSpec.containers + podSpec.?initContainers.orValue([]) + podSpec.?ephemeralContainers.orValue([])).all(c, c.image.contains('@sha256:'))": "podSpec.containers.all(c, c.image.contains('@sha256:')) && podSpec.?initContainers.orValue([]).all(c, c.image.contains('@sha256:')) && podSpec.?ephemeralContainers.orValue([]).all(c, c.image.contains('@sha256:'))",
		"(podSpec.containers + (podSpec.?initContainers.orValue([]) + podSpec.containers)).exists(c, c.name.endsWith('x'))":                          "podSpec.containers.exists(c, c.name.endsWith('x')) || podSpec.?initContainers.orValue([]).exists(c, c.name.endsWith('x')) || podSpec.containers.exists(c, c.name.endsWith('x'))",
		"(podSpec.containers + podSpec.?initContainers.orValue([])).all(c, 'ALL' in c.?securityContext.?capabilities.?drop.orValue([]))":             "podSpec.containers.all(c, 'ALL' in c.securityContext.capabilities.drop) && podSpec.initContainers.all(c, 'ALL' in c.securityContext.capabilities.drop)",
		// A loop over a filter's result: the filter, and the loop over all it could keep.
		"podSpec.?volumes.orValue([]).filter(v, has(v.hostPath)).all(v, !v.hostPath.path.contains('..'))": "podSpec.?volumes.orValue([]).filter(v, has(v.hostPath)).size() >= 0 && podSpec.?volumes.orValue([]).all(v, !v.hostPath.path.contains('..'))",
	} {
		if got, want := mustCompileCEL(t, literal).untrackedWithin, mustCompileCEL(t, written).untrackedWithin; got == nil || !slices.Equal(got, want) {
			t.Errorf("%s: untracked within %v, want %v (as written out)", literal, got, want)
		}
	}
	for _, expr := range []string{
		"[request.userInfo.groups].all(gs, gs.all(g, g != 'admins'))", // unbounded as written out
		"[podSpec.containers, podSpec.?initContainers.orValue(podSpec.containers + podSpec.containers)].all(cs, cs.all(c, c.image.split('/').size() > 1))",
		"(podSpec.containers + request.userInfo.groups).all(c, c.size() > 1)", // a summand unbounded
	} {
		rule := mustCompileCEL(t, expr)
		if rule.untracked != nil {
			t.Errorf("%s: untracked within %v, want tracked", expr, rule.untrackedWithin)
		}
	}
}

// TestEstimationASTBounds holds the rewrite to its promise: on every object of the library's
// suites, the tracked program's actual cost is within the rewritten expression's estimate at
// the object's own bounds plus the slack. The expressions are the library's own loops over list
// literals and defaults, and the shapes the rewrite knows.
func TestEstimationASTBounds(t *testing.T) {
	exprs := []string{
		"[podSpec.containers, podSpec.?initContainers.orValue([]), podSpec.?ephemeralContainers.orValue([])].all(cs, cs.all(c, c.?ports.orValue([]).all(p, p.?hostPort.orValue(0) == 0)))",
		"[podSpec.containers, podSpec.?initContainers.orValue([])].exists(cs, cs.exists(c, c.image.endsWith(':latest') || c.?imagePullPolicy.orValue('') == 'Always'))",
		"[podSpec.containers, podSpec.containers].all(a, [podSpec.containers].all(b, a.size() == b.size()))",
		"[].all(x, false) && [podSpec.?hostNetwork.orValue(false), podSpec.?hostPID.orValue(false)].all(b, !b)",
		"[podSpec.?volumes.orValue([]), podSpec.?volumes.orValue([])].all(vs, vs.all(v, !has(v.hostPath) && v.name.size() < 300))",
		"[podSpec.containers, podSpec.?initContainers.orValue([]), podSpec.?ephemeralContainers.orValue([])].all(cs, cs.all(c, c.image.contains('@') || (c.image.split('/')[c.image.split('/').size() - 1].contains(':') && !c.image.endsWith(':latest'))))",
		"podSpec.containers.all(c, c.image.split(':', 2)[0].size() < 500 && c.image.split('/')[0].matches('^[a-z.]+$'))",
		"podSpec.containers.all(c, c.?securityContext.orValue({}).size() >= 0 && c.?resources.?limits.orValue({}).size() >= 0 && c.?name.orValue('x') != '')",
		"(podSpec.containers + podSpec.?initContainers.orValue([]) + podSpec.?ephemeralContainers.orValue([])).all(c, 'ALL' in c.?securityContext.?capabilities.?drop.orValue([]) && c.?securityContext.?capabilities.?add.orValue([]).all(cap, cap == 'NET_BIND_SERVICE'))",
		"(podSpec.containers + podSpec.?initContainers.orValue([])).exists(c, c.image.split('/')[0].contains('.') || c.?env.orValue([]).exists(e, e.name.size() > 200))",
		"podSpec.?securityContext.?sysctls.orValue([]).all(s, s.name.startsWith('kernel.shm') || s.?value.orValue('') == '')",
		"podSpec.?volumes.orValue([]).filter(v, has(v.hostPath)).all(v, !v.hostPath.path.contains('..') && v.name.size() < 300)",
		"(podSpec.containers + podSpec.?initContainers.orValue([])).filter(c, c.image.contains(':')).exists(c, c.image.endsWith(':latest'))",
	}
	env := testCompiler.env
	decoder := NewDecoder(true)
	var objects []*Resource
	for _, js := range corpusJSON(t) {
		if res, err := decoder.Decode(js, nil); err == nil && res.Pod != nil {
			objects = append(objects, res)
		}
	}
	checked := 0
	for _, expr := range exprs {
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		rewritten, slack := estimationAST(env, ast)
		if slack == 0 {
			t.Fatalf("%s: nothing rewritten", expr)
		}
		rule := mustCompileCEL(t, expr)
		for _, res := range objects {
			in := &input{ctx: t.Context(), req: &Request{Operation: v1alpha1.Create, Object: res}, res: res}
			b := in.bounds()
			if b == unknownBounds {
				continue
			}
			sizes := boundedSizes{items: uint64(b.items), chars: uint64(b.chars)}
			est, err := env.EstimateCost(rewritten, boundedEstimator{&library.CostEstimator{SizeEstimator: sizes}})
			if err != nil {
				t.Fatal(err)
			}
			_, details, err := rule.program.ContextEval(t.Context(), activation{in: in})
			if err != nil {
				continue
			}
			if cost := details.ActualCost(); cost == nil || *cost > addSlack(est.Max, slack) {
				t.Errorf("%s on %s: actual cost %v, past the estimate %d + %d at %+v", expr, res.Ref(), deref(cost), est.Max, slack, b)
			}
			checked++
		}
	}
	if checked < 100 {
		t.Fatalf("only %d evaluations checked", checked)
	}
}
