package policies

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"k8s.io/apiserver/pkg/cel/lazy"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// TestCELVarsReadsAsLazyMapValue holds a policy's variables to what k8s.io/apiserver's
// lazy.MapValue (ValidatingAdmissionPolicy's) answers for the same keys: the names as written,
// names with "__" in them (unescaped as it does, so a_x__y__z is no variable), keys that are no
// variable, and keys that are not strings.
func TestCELVarsReadsAsLazyMapValue(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("vars", `variables:
- {name: a, expression: "1"}
- {name: b__c, expression: "'two'"}
- {name: a_x__y__z, expression: "3"}
rules:
- {name: r, cel: {expression: "variables.a == 1"}}
`))
	scope := e.cluster[0].rules[0].eval.(*celRule).scope
	res := mustResource(t, paramsPod)
	in := &input{ctx: t.Context(), req: &Request{Operation: v1alpha1.Create, Object: res}, res: res}
	ours := newCELVars(scope, in)
	theirs := lazy.NewMapValue(scope.varsType)
	for i, v := range scope.variables {
		theirs.Append(v.name, func(*lazy.MapValue) ref.Val { return ours.at(i) })
	}
	for _, key := range []ref.Val{types.String("a"), types.String("b__c"), types.String("a_x__y__z"), types.String("b__dot__c"),
		types.String("nope"), types.String(""), types.Int(1)} {
		gotV, gotOK := ours.Find(key)
		wantV, wantOK := theirs.Find(key)
		if gotOK != wantOK || fmt.Sprint(gotV) != fmt.Sprint(wantV) {
			t.Errorf("Find(%v): %v %v, lazy.MapValue: %v %v", key, gotV, gotOK, wantV, wantOK)
		}
		if got, want := ours.Contains(key), theirs.Contains(key); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("Contains(%v): %v, lazy.MapValue: %v", key, got, want)
		}
	}
	if got, want := ours.Size(), theirs.Size(); got != want {
		t.Errorf("Size: %v, lazy.MapValue: %v", got, want)
	}
	if got, want := ours.Type().TypeName(), theirs.Type().TypeName(); got != want {
		t.Errorf("Type: %v, lazy.MapValue: %v", got, want)
	}
	if ours.Equal(ours) != types.True || ours.Equal(newCELVars(scope, in)) != types.False {
		t.Error("a request's variables equal themselves only")
	}
}

// TestParamsConvertedOnceReadAsAdapted holds a ClusterPolicy's params, converted to CEL once, to
// what the type adapter's views of them give (a tenant's keep the views).
func TestParamsConvertedOnceReadAsAdapted(t *testing.T) {
	v, err := decodeParams([]byte(`{"s": "x", "i": 3, "f": 1.5, "b": true, "n": null, "l": [1, "a", [2], {"k": "v"}],
		"m": {"nested": {"deep": ["x", "y"]}, "empty": {}}, "el": []}`))
	if err != nil {
		t.Fatal(err)
	}
	got, want := paramsVal(v), types.DefaultTypeAdapter.NativeToValue(v)
	if got.Equal(want) != types.True || want.Equal(got) != types.True {
		t.Errorf("converted %v, adapted %v", got, want)
	}
	if _, ok := got.(interface{ Find(ref.Val) (ref.Val, bool) }); !ok {
		t.Fatalf("converted params are a %T, not a map", got)
	}
	m := got.(interface{ Find(ref.Val) (ref.Val, bool) })
	for key, wantType := range map[string]*types.Type{"s": types.StringType, "i": types.IntType, "f": types.DoubleType, "b": types.BoolType,
		"n": types.NullType, "l": types.ListType, "m": types.MapType, "el": types.ListType} {
		val, ok := m.Find(types.String(key))
		if !ok || val.Type() != wantType {
			t.Errorf("params.%s: %v (%v), want a %v", key, val, ok, wantType)
		}
	}
	tenant := mustEngine(t, time.Now(), "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: p, namespace: team}\nspec:\n"+
		"  params: {names: [a]}\n  rules:\n  - {name: r, cel: {expression: \"'a' in params.names\"}}\n").namespaced["team"][0]
	if p := tenant.rules[0].eval.(*celRule).scope.params; p.Equal(paramsVal(map[string]any{"names": []any{"a"}})) != types.True {
		t.Errorf("a tenant's params: %v", p)
	}
}

// TestVariablesAndParamsShared evaluates a ClusterPolicy with params (converted once, shared) and
// variables (untracked twins, shared programs) from several goroutines at once, each review
// with its own variables: every evaluation gives the single one's results (run with -race,
// as CI does, it also holds the shared values to being only read).
func TestVariablesAndParamsShared(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("shared", `enforcement: Deny
params:
  registries: [ghcr.io/acme/, docker.io/library/]
  patterns: {app: '^[a-z]+$'}
variables:
- {name: images, expression: "podSpec.containers.map(c, c.image)"}
- {name: foreign, expression: "variables.images.filter(i, !params.registries.exists(r, i.startsWith(r)))"}
rules:
- name: registries
  cel: {expression: "size(variables.foreign) == 0", messageExpression: "'foreign: ' + variables.foreign.join(', ')"}
- name: names
  cel: {expression: "podSpec.containers.all(c, c.name.matches(params.patterns['app']))"}
`))
	for _, v := range e.cluster[0].rules[0].eval.(*celRule).scope.variables {
		if v.untracked == nil {
			t.Fatalf("variable %s has no untracked twin: the test would not share one", v.name)
		}
	}
	pods := []string{paramsPod, strings.Replace(paramsPod, "docker.io/library/nginx", "quay.io/x/nginx", 1)}
	want, docs := make([]string, len(pods)), make([][]byte, len(pods))
	for i, p := range pods {
		docs[i] = mustJSON(t, p)
		want[i] = fmt.Sprint(e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, p)}))
	}
	if want[0] == want[1] || !strings.Contains(want[1], "foreign: quay.io/x/nginx") {
		t.Fatalf("the two pods are judged alike: %s / %s", want[0], want[1])
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 50 {
				i := (g + n) % len(pods)
				res, err := NewDecoder(false).Decode(docs[i], nil)
				if err != nil {
					t.Error(err)
					return
				}
				if got := fmt.Sprint(e.Evaluate(context.Background(), &Request{Operation: v1alpha1.Create, Object: res})); got != want[i] {
					t.Errorf("pod %d: %s, want %s", i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
