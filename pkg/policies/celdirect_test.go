package policies

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// directEdgeCases are expressions written to reach what direct evaluation must get exactly right,
// or leave to the interpreter: presence tests, optionals, errors that && and || absorb or not,
// every kind of comprehension, literals, calls with and without the fast bindings, and values of
// every kind. Each is evaluated on every test object both ways.
var directEdgeCases = []string{
	// presence, and fields the JSON leaves out
	`has(object.spec)`, `has(object.spec.hostNetwork)`, `has(object.metadata.labels)`,
	`has(object.metadata.annotations)`, `has(object.spec.containers)`,
	`object.spec.containers.all(c, has(c.securityContext) && has(c.securityContext.runAsNonRoot))`,
	`object.spec.containers.exists(c, has(c.ports))`, `has(object.metadata.name.x)`,
	`has(object.spec.containers[0].name)`, `has(object.spec.?containers.x)`,
	// optionals
	`object.?spec.?hostNetwork.orValue(false)`, `object.spec.?nodeName.orValue('') == ''`,
	`object.spec.?containers[?0].?name.orValue('none')`, `object.?metadata.labels.orValue({})`,
	`object.metadata.?labels.orValue({}).all(k, k != '')`, `object.spec.?containers.hasValue()`,
	`object.?spec.?nope.?deeper.orValue(1) == 1`, `object.spec.?containers[?5].hasValue()`,
	`optional.of(1).or(optional.none()).value() == 1`, `optional.none().orValue(2) == 2`,
	`object.?spec.containers.orValue([]).size()`, `object.?metadata.?labels['app'].orValue('x')`,
	`object.metadata.?labels[?'app'].orValue('x')`, `object.?spec.?containers.or(optional.of([])).value().size() >= 0`,
	`podSpec.?securityContext.?runAsNonRoot.orValue(false)`, `podMeta.?labels.orValue({}).size()`,
	// errors: absorbed, or not
	`object.spec.nope == 1`, `object.spec.nope == 1 || true`, `false && object.spec.nope == 1`,
	`object.spec.nope == 1 || false`, `true && object.spec.nope == 1`, `object.spec.containers[99].name == ''`,
	`object.metadata.name.size() / 0 == 0`, `object.spec.containers.all(c, c.nope == 1)`,
	`object.spec.containers.exists(c, c.nope == 1 || c.name != '')`, `!(object.spec.nope == 1)`,
	`object.kind == 'Pod' ? true : object.spec.nope == 1`, `object.spec.nope == 1 ? 1 : 2`,
	`object.metadata.name.matches('[')`, `object.nope.nope.nope`,
	// comprehensions
	`object.spec.containers.all(c, c.image.startsWith('registry.example.com/'))`,
	`object.spec.containers.exists(c, c.name.endsWith('x'))`,
	`object.spec.containers.exists_one(c, c.name.contains('e'))`,
	`object.spec.containers.map(c, c.name)`, `object.spec.containers.filter(c, c.name.size() > 3)`,
	`object.spec.containers.map(c, c.name.size() > 3, c.image)`,
	`object.spec.containers.all(c, c.?env.orValue([]).all(e, !e.name.startsWith('AWS_SECRET')))`,
	`[object.spec.containers, object.spec.?initContainers.orValue([])].all(cs, cs.all(c, c.name != ''))`,
	`cel.bind(cs, object.spec.containers, cs.size() > 0 && cs[0].name != '')`,
	`object.metadata.?annotations.orValue({}).exists(k, k.startsWith('unsafe'))`,
	`object.metadata.?labels.orValue({}).map(k, k + '=' + object.metadata.labels[k])`,
	`object.metadata.?labels.orValue({}).filter(k, k.size() > 2)`,
	`[1, 2, 3].all(i, i > 0)`, `[1, 2, 3].map(i, i * 2) == [2, 4, 6]`, `{'a': 1}.all(k, k == 'a')`,
	`[].all(x, x)`, `[].exists(x, x)`, `[[1], [2, 3]].map(l, l.size())`,
	// map and filter (collected directly): a predicate that is not a bool, items that are
	// errors (absorbed or not), nothing kept, lists of lists, a map's keys
	`object.spec.containers.filter(c, c.name)`, `object.spec.containers.map(c, c.nope)`,
	`false && object.spec.containers.map(c, c.nope).size() > 0`, `object.spec.containers.filter(c, false)`,
	`object.spec.containers.map(c, c.name == 'x', c.image).size()`, `[].map(x, x)`,
	`object.spec.containers.map(c, [c.name, c.image]).map(l, l.map(s, s.size()))`,
	`object.spec.containers.filter(c, c.?ports.orValue([]).filter(p, p.containerPort > 80).size() > 0).map(c, c.name).join(', ')`,
	`object.metadata.?labels.orValue({}).filter(k, object.metadata.labels[k] != '').map(k, k + '!')`,
	`object.spec.containers.map(c, c.?ports.orValue([]).map(p, p.containerPort)).all(ps, ps.all(p, p > 0))`,
	// literals and calls
	`[?object.spec.?hostname, 'a'].size()`, `[?optional.none(), 1]`, `{}.size() == 0`, `{'a': 1}`,
	`'app' in object.metadata.labels`, `object.metadata.name in ['a', 'b']`, `1 in [1, 2]`,
	`object.metadata.name.lowerAscii().split('-')`, `object.metadata.name.size() <= 63`,
	`object.spec.?terminationGracePeriodSeconds.orValue(30) > 10`, `1u == 1`, `dyn(1) == 1.0`,
	`string(1) == '1'`, `int('12') + 1`, `double(object.spec.containers.size()) / 2.0`,
	`quantity('1Gi').isLessThan(quantity('2Gi'))`, `isQuantity('x')`,
	`object.spec.containers.all(c, !has(c.resources.limits) || quantity(c.resources.limits['memory']).compareTo(quantity('4Gi')) <= 0)`,
	`object.spec.?nodeName.orValue(null) == null`, `oldObject == null`, `type(object) == map`,
	`request.operation == 'CREATE' && request.kind.kind != ''`, `namespaceObject == null`,
	`object.metadata.name.matches('^[a-z][a-z0-9-]*$')`,
	`object.spec.containers.all(c, c.name.matches(object.metadata.name.size() > 0 ? '^[a-z]' : '.'))`,
	`!object.spec.?hostPID.orValue(false) && !object.spec.?hostIPC.orValue(false)`,
	`object.spec.containers.all(c, c.?securityContext.?capabilities.?drop.orValue([]).exists(d, d == 'ALL'))`,
	`object.spec.containers[0]`, `object.metadata`, `object.spec.?volumes.orValue([]).map(v, has(v.hostPath))`,
	`object.spec.containers.all(i, c, i >= 0 && c.name != '')`, `object.metadata.?labels.orValue({}).all(k, v, v != k)`,
	`object.spec.containers.exists(i, c, i == 1)`,
	`object.spec.containers.size() + object.spec.?initContainers.orValue([]).size()`,
	`object.spec.containers.map(c, c.name).join(',')`, `object.metadata.name.indexOf('a')`,
	`object.data.all(k, k != '')`, `object.spec.ports.all(p, p.?targetPort.orValue(0) != 'x')`,
	// a custom resource's and a Secret's values: numbers, nulls, nested maps, bytes
	`object.spec.replicas * 2 > 0`, `object.spec.ratio > 0.5`, `object.spec.?items.orValue([]).exists(i, i.enabled == true)`,
	`object.spec.items.map(i, i.?weight.orValue(0.0))`, `object.spec.?nothing == optional.none()`,
	`object.spec.labels.all(k, object.spec.labels[k].size() < 10)`, `object.spec.items[1].?name.orValue('') == 'b'`,
	`has(object.spec.nullable)`, `object.spec.nullable == null`, `object.data['k'] != ''`,
}

// directExtraObjects are objects of the kinds the test objects lack: a custom resource (read
// as unstructured JSON) and a Secret.
var directExtraObjects = []string{
	`{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns", "labels": {"app": "w"}},
	  "spec": {"replicas": 3, "ratio": 0.75, "nullable": null, "labels": {"a": "b", "c": "dddddddddddd"},
	           "items": [{"name": "a", "enabled": true, "weight": 1.5}, {"name": "b", "enabled": false}, {}]}}`,
	`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}, "type": "Opaque",
	  "data": {"k": "AP8=", "empty": ""}, "stringData": {"a": "b"}}`,
}

// TestDirectAgrees holds direct evaluation (celdirect.go) to the interpreter: on every test
// object, every untracked program of every policy of the library, the examples and the load
// harness, and every edge case above, gives the same value both ways whenever direct evaluation
// answers; direct evaluation never answers where the interpreter fails, and always answers
// where the interpreter gives a value (or it would be a slower way to call the interpreter). Of
// the policies' evaluations (not the edge cases', many of which fail by design), most answer.
func TestDirectAgrees(t *testing.T) {
	objects := directObjects(t)
	var answered, asked int
	for _, prog := range directPrograms(t) {
		for _, res := range objects {
			in := &input{ctx: t.Context(), req: &Request{Operation: v1alpha1.Create, Object: res}, res: res}
			ok, agree := prog.agree(in)
			if !prog.edge {
				asked++
				if ok {
					answered++
				}
			}
			if agree != "" {
				t.Errorf("%s on %s: %s", prog.name, res.Ref(), agree)
			}
		}
	}
	t.Logf("%d evaluations of the policies' programs, %d answered directly", asked, answered)
	if asked < 10000 || answered*10 < asked*7 {
		t.Errorf("direct evaluation answered %d of the policies' %d evaluations: want at least 10,000, 70%% of them answered", answered, asked)
	}
}

// FuzzDirectAgrees is TestDirectAgrees on any Pod: the library's programs and the edge cases
// evaluated both ways.
func FuzzDirectAgrees(f *testing.F) {
	for _, js := range corpusJSON(f) {
		if bytes.Contains(js, []byte(`"kind":"Pod"`)) {
			f.Add(js)
		}
	}
	progs := directPrograms(f)
	f.Fuzz(func(t *testing.T, js []byte) {
		res, err := NewDecoder(false).Decode(js, nil)
		if err != nil {
			return
		}
		for _, prog := range progs {
			in := &input{ctx: t.Context(), req: &Request{Operation: v1alpha1.Create, Object: res}, res: res}
			if _, agree := prog.agree(in); agree != "" {
				t.Errorf("%s: %s", prog.name, agree)
			}
		}
		res.Release()
	})
}

// directTest is a program with direct evaluation, and the scope its activation needs.
type directTest struct {
	name  string
	prog  *directProgram
	scope *celScope
	edge  bool // one of directEdgeCases, many of which fail by design
}

// agree evaluates the program on in both ways: whether direct evaluation answered, and what
// was wrong ("" when nothing was).
func (d directTest) agree(in *input) (bool, string) {
	act := in.activation(d.scope)
	direct := d.prog.direct(act)
	interpreted, _, err := d.prog.Program.Eval(act)
	switch {
	case direct == nil && err == nil:
		return false, "direct evaluation left to the interpreter what it gives a value for: " + describe(interpreted)
	case direct == nil:
		return false, ""
	case err != nil:
		return true, "direct evaluation gave " + describe(direct) + " where the interpreter failed: " + err.Error()
	case !sameValue(direct, interpreted):
		return true, "direct evaluation gave " + describe(direct) + ", the interpreter " + describe(interpreted)
	}
	return true, ""
}

// sameValue is whether a and b are equal values of the same type; two lists are also the same
// when they hold the same elements in another order, as the lists made by iterating over a map
// may (Go's maps have no order, and CEL's over them none either, in the interpreter as here).
func sameValue(a, b ref.Val) bool {
	if a.Type() != b.Type() {
		return false
	}
	if a.Equal(b) == types.True {
		return true
	}
	la, ok := a.(traits.Lister)
	lb, ok2 := b.(traits.Lister)
	if !ok || !ok2 || la.Size() != lb.Size() {
		return false
	}
	used := map[int]bool{}
	n := int(la.Size().(types.Int)) //nolint:forcetypeassert // a list's size is an int
next:
	for i := range n {
		for j := range n {
			if !used[j] && la.Get(types.Int(i)).Equal(lb.Get(types.Int(j))) == types.True {
				used[j] = true
				continue next
			}
		}
		return false
	}
	return true
}

func describe(v ref.Val) string {
	return fmt.Sprintf("%s %v", v.Type().TypeName(), v.Value())
}

// directPrograms are the untracked programs of every policy in the repository, and of the edge
// cases, each with direct evaluation.
func directPrograms(tb testing.TB) []directTest {
	tb.Helper()
	var out []directTest
	edge := false
	add := func(name string, p cel.Program, scope *celScope) {
		if sp, ok := p.(*sharedProgram); ok {
			p = sp.Program
		}
		if lp, ok := p.(*lazyProgram); ok { // a message's
			p, _ = lp.program()
		}
		if dp, ok := p.(*directProgram); ok {
			out = append(out, directTest{name: name, prog: dp, scope: scope, edge: edge})
		}
	}
	for _, p := range repositoryPolicies(tb) {
		for _, r := range p.rules {
			rule, ok := r.eval.(*celRule)
			if ok && rule.messageExp != nil && rule.messageExp.untracked != nil {
				add(p.Name+"/"+r.name+" (its message)", rule.messageExp.untracked, rule.scope)
			}
			if !ok || rule.untracked == nil {
				continue
			}
			add(p.Name+"/"+r.name, rule.untracked, rule.scope)
			if rule.scope != nil {
				for _, v := range rule.scope.variables {
					if v.untracked != nil {
						add(p.Name+"/variables."+v.name, v.untracked, rule.scope)
					}
				}
			}
		}
	}
	policies := len(out)
	if policies < 40 {
		tb.Fatalf("only %d programs of the repository's policies with direct evaluation: the globs no longer find them, or it no longer compiles them", policies)
	}
	env := testCompiler.env
	edge = true
	for _, expr := range directEdgeCases {
		ast, _, _, err := checkTyped(env, expr, nil, nil)
		if err != nil {
			continue // an edge case the checker refuses (a two-variable comprehension, say) tests nothing here
		}
		// Planned as untracked plans its programs, whatever the estimate (unbounded for most).
		fast, err := untrackedEnv()
		if err != nil {
			tb.Fatal(err)
		}
		prog, err := fast.Program(ast, cel.EvalOptions(cel.OptOptimize), cachedMatches)
		if err != nil {
			tb.Fatalf("%s: %v", expr, err)
		}
		add(expr, withDirect(fast, ast, prog), nil)
	}
	if len(out)-policies < len(directEdgeCases)*3/4 {
		tb.Fatalf("only %d of %d edge cases compiled for direct evaluation", len(out)-policies, len(directEdgeCases))
	}
	return out
}

// repositoryPolicies are the library's, the examples' and the load harness's policies, compiled.
func repositoryPolicies(tb testing.TB) []*CompiledPolicy {
	tb.Helper()
	var docs []string
	for _, doc := range yamlDocuments(tb, "../../manifests/library/*.yaml", "../../examples/policies/*.yaml", "../../test/load/policies/*.yaml") {
		if bytes.Contains(doc, []byte("kind: ClusterPolicy")) || bytes.Contains(doc, []byte("kind: Policy\n")) {
			docs = append(docs, string(doc))
		}
	}
	e := mustEngine(tb, time.Now(), docs...)
	out := e.cluster
	for _, ps := range e.namespaced {
		out = append(out, ps...)
	}
	return out
}

// directObjects are the test objects, decoded as the webhook decodes them.
func directObjects(tb testing.TB) []*Resource {
	tb.Helper()
	var out []*Resource
	for _, js := range corpusJSON(tb) {
		if res, err := NewDecoder(false).Decode(js, nil); err == nil {
			out = append(out, res)
		}
	}
	for _, js := range directExtraObjects {
		res, err := NewDecoder(false).Decode([]byte(js), nil)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, res)
	}
	return out
}
