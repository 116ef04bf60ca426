package policies

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// TestLiteralLoopsEstimatedAsWrittenOut: each idiom estimationAST rewrites (a loop over a list
// literal, a sum, a filter or a choice, an optional field's default, a join of what a loop made,
// a number made a string) gets the staircase of the expression written out by hand, loop by
// loop: the estimate follows the elements' paths. What reads an unbounded value stays tracked.
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
		// Map and filter over a sum, a filter, a choice and a list literal, and the join of what
		// they made, as messageExpressions name what failed.
		"(podSpec.containers + podSpec.?initContainers.orValue([])).map(c, c.name).join(', ') != ''":                                  "(podSpec.containers.map(c, c.name) + podSpec.?initContainers.orValue([]).map(c, c.name)).join(', ') != ''",
		"(podSpec.containers + podSpec.?initContainers.orValue([])).filter(c, c.image.contains('@')).map(c, c.name).join(', ') != ''": "(podSpec.containers.filter(c, c.image.contains('@')).map(c, c.name) + podSpec.?initContainers.orValue([]).filter(c, c.image.contains('@')).map(c, c.name)).join(', ') != ''",
		"podSpec.?volumes.orValue([]).filter(v, has(v.hostPath)).map(v, v.name + '=' + v.hostPath.path).join(', ').size() < 100":      "(podSpec.?volumes.orValue([]).filter(v, has(v.hostPath)).size() >= 0 ? podSpec.?volumes.orValue([]).map(v, v.name + '=' + v.hostPath.path) : []).join(', ').size() < 100",
		"[podSpec.containers, podSpec.?initContainers.orValue([])].map(cs, cs.map(c, c.name).join(',')).join(';') != ''":              "[podSpec.containers.map(c, c.name).join(','), podSpec.?initContainers.orValue([]).map(c, c.name).join(',')].join(';') != ''",
		"'n=' + string(podSpec.containers.size()) != ''":                                                                              "'n=' + 'xxxxxxxxxxxxxxxxxxxx' != ''",
	} {
		if got, want := mustCompileCEL(t, literal).untrackedWithin, mustCompileCEL(t, written).untrackedWithin; got == nil || !slices.Equal(got, want) {
			t.Errorf("%s: untracked within %v, want %v (as written out)", literal, got, want)
		}
	}
	for _, expr := range []string{
		"[request.userInfo.groups].all(gs, gs.all(g, g != 'admins'))", // unbounded as written out
		"[podSpec.containers, podSpec.?initContainers.orValue(podSpec.containers + podSpec.containers)].all(cs, cs.all(c, c.image.split('/').size() > 1))",
		"(podSpec.containers + request.userInfo.groups).all(c, c.size() > 1)",  // a summand unbounded
		"podSpec.containers.map(c, request.userInfo.username).join(',') != ''", // items unbounded
		"(podSpec.containers.map(c, c.name) + request.userInfo.groups).join(',') != ''",
		"request.userInfo.groups.filter(g, g != '').join(',') != ''",
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
		// messageExpressions: joins of what map and filter made, over sums, filters, choices
		// and list literals, and numbers made strings.
		"'not pinned: ' + (podSpec.containers + podSpec.?initContainers.orValue([])).filter(c, !c.image.contains('@sha256:')).map(c, c.name).join(', ')",
		"'hostPaths: ' + podSpec.?volumes.orValue([]).filter(v, has(v.hostPath)).filter(v, !v.hostPath.path.startsWith('/data')).map(v, v.name + '=' + v.hostPath.path).join(', ')",
		"'ports: ' + [podSpec.containers, podSpec.?initContainers.orValue([])].map(cs, cs.filter(c, c.?ports.orValue([]).exists(p, p.?hostPort.orValue(0) != 0)).map(c, c.name).join(', ')).filter(s, s != '').join(', ')",
		"podSpec.containers.map(c, c.name + ':' + c.?ports.orValue([]).map(p, string(int(p.containerPort))).join('/')).join()",
		"'found ' + string(podSpec.containers.size()) + ' containers, ' + string(podSpec.containers.all(c, c.name.size() < 10)) + ': ' + podSpec.containers.map(c, c.image).join(';')",
		"(podSpec.?hostNetwork.orValue(false) ? podSpec.containers : podSpec.containers.filter(c, c.name != 'x')).map(c, c.name).join(', ')",
		"podSpec.containers.map(c, string(c.name)).join(',')", // string() of a dyn operand, a string here: as long as it

	}
	env := testCompiler.env
	decoder := NewDecoder(true)
	var objects []*Resource
	for _, js := range append(corpusJSON(t), largePods(t)...) {
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
		if rewritten == ast {
			t.Fatalf("%s: nothing rewritten", expr)
		}
		prog, _, _, _, err := compileTyped(env, expr, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		within := 0 // evaluations whose estimate is within the limit: where the twin would run
		for _, res := range objects {
			in := &input{ctx: t.Context(), req: &Request{Operation: v1alpha1.Create, Object: res}, res: res}
			b := in.bounds()
			if b == unknownBounds {
				continue
			}
			sizes := boundedSizes{items: uint64(b.items), chars: uint64(b.chars)}
			est, err := env.EstimateCost(rewritten, newBoundedEstimator(sizes))
			if err != nil {
				t.Fatal(err)
			}
			_, details, err := prog.ContextEval(t.Context(), activation{in: in})
			if err != nil {
				continue
			}
			if cost := details.ActualCost(); cost == nil || *cost > addSlack(est.Max, slack) {
				t.Errorf("%s on %s: actual cost %v, past the estimate %d + %d at %+v", expr, res.Ref(), deref(cost), est.Max, slack, b)
			}
			if addSlack(est.Max, slack) <= MaxExpressionCost {
				within++
			}
			checked++
		}
		if within == 0 {
			t.Errorf("%s: estimated past the limit on every object", expr)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d evaluations checked", checked)
	}
}

// largePods are Pods whose lists and strings are long enough that what a join costs, and what
// the string it makes costs to add to, outweigh the slack: many containers of long names,
// images and ports, long hostPaths.
func largePods(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, n := range []int{40, 120} {
		pod := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "large", Namespace: "default"}}
		long := func(prefix string, i, size int) string {
			s := fmt.Sprintf("%s-%d-", prefix, i)
			return s + strings.Repeat("x", size-len(s))
		}
		for i := range n {
			c := corev1.Container{Name: long("c", i, 200), Image: long("registry.example/app", i, 300) + ":1.0"}
			for j := range 8 {
				c.Ports = append(c.Ports, corev1.ContainerPort{Name: long("p", j, 15), ContainerPort: int32(8000 + j), HostPort: int32(j % 2 * 9000)})
			}
			pod.Spec.Containers = append(pod.Spec.Containers, c)
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: long("init", i, 200), Image: long("registry.example/init", i, 300)})
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: long("v", i, 60), VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/" + long("host", i, 500)}}})
		}
		js, err := json.Marshal(pod)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, js)
	}
	return out
}

// TestEstimationFunctionsUncallable: @elem and @join, which the estimator trusts, cannot be
// written in an expression, even in the environment that declares them.
func TestEstimationFunctionsUncallable(t *testing.T) {
	declaring, err := estimationEnv(testCompiler.env)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []*cel.Env{testCompiler.env, declaring} {
		for _, expr := range []string{"@join(['a'], ',', 0) == ''", "['a'].map(x, @elem(x, 0)).size() == 1", "`@join`(['a'], ',', 0) == ''"} {
			if _, iss := env.Compile(expr); iss.Err() == nil {
				t.Errorf("%s compiled", expr)
			}
		}
	}
}
