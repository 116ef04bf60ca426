package policies

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// tenantEngine is an engine with one ClusterPolicy and, for each of n namespaces, perNS Policies
// of five CEL rules that apply to every Pod of their namespace (the compiled rules are shared:
// only the engine's walk is measured).
func tenantEngine(tb testing.TB, n, perNS int) *Engine {
	tb.Helper()
	base := mustEngine(tb, time.Now(),
		"apiVersion: portcullis.dev/v1alpha1\nkind: ClusterPolicy\nmetadata: {name: labels}\nspec:\n  enforcement: Deny\n  match: {kinds: [Pod]}\n  rules:\n  - {name: team, labels: {required: [team]}}\n",
		"apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: t, namespace: tenant}\nspec:\n  enforcement: Deny\n  match: {kinds: [Pod]}\n  rules:\n"+
			"  - {name: a, cel: {expression: \"podSpec.containers.all(c, c.image.startsWith('ghcr.io/'))\"}}\n"+
			"  - {name: b, cel: {expression: \"podSpec.containers.all(c, has(c.resources.limits))\"}}\n"+
			"  - {name: c, cel: {expression: \"object.metadata.name.size() < 64\"}}\n"+
			"  - {name: d, cel: {expression: \"!has(podSpec.hostNetwork) || !podSpec.hostNetwork\"}}\n"+
			"  - {name: e, cel: {expression: \"podSpec.containers.exists(c, c.name == 'app')\"}}\n")
	template := base.namespaced["tenant"][0]
	policies := append([]*CompiledPolicy{}, base.cluster...)
	for i := range n {
		for j := range perNS {
			p := *template
			p.Namespace = fmt.Sprintf("tenant-%d", i)
			p.Name = fmt.Sprintf("%s/p%d", p.Namespace, j)
			policies = append(policies, &p)
		}
	}
	return NewEngine(policies, nil, nil)
}

// TestEngineIndexesByNamespace: a review sees the ClusterPolicies and its own namespace's
// Policies, whatever other namespaces hold.
func TestEngineIndexesByNamespace(t *testing.T) {
	e := tenantEngine(t, 50, 3)
	pod := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: tenant-7, labels: {team: x}}\nspec: {containers: [{name: app, image: ghcr.io/x:1}]}\n")
	got := map[string]int{}
	for _, r := range e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: pod}) {
		got[r.Policy]++
	}
	want := map[string]int{"labels": 1, "tenant-7/p0": 5, "tenant-7/p1": 5, "tenant-7/p2": 5}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results per policy: %v, want %v", got, want)
	}
	quiet := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: quiet, labels: {team: x}}\nspec: {containers: [{name: app, image: ghcr.io/x:1}]}\n")
	if rs := e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: quiet}); len(rs) != 1 {
		t.Errorf("a quiet namespace got %d results, want 1: %v", len(rs), rs)
	}
}

// BenchmarkEvaluateQuietNamespace is one review in a namespace without Policies, with 0 and with
// 2,000 namespaces of 20 Policies (200,000 CEL rules) beside it: the two should cost the same.
func BenchmarkEvaluateQuietNamespace(b *testing.B) {
	pod := mustResource(b, "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: quiet, labels: {team: x}}\nspec: {containers: [{name: app, image: ghcr.io/x:1}]}\n")
	for _, tenants := range []int{0, 2000} {
		e := tenantEngine(b, tenants, 20)
		b.Run(fmt.Sprintf("tenants=%d", tenants), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e.Evaluate(b.Context(), &Request{Operation: v1alpha1.Create, Object: pod})
			}
		})
	}
}

// BenchmarkEvaluateWithExceptions is one review of a Pod in a namespace whose Policy has 30
// rules and 20 exceptions, each for one rule, selecting Pods by label: what matching the
// exceptions costs.
func BenchmarkEvaluateWithExceptions(b *testing.B) {
	var docs []string
	var rules strings.Builder
	for i := range 30 {
		fmt.Fprintf(&rules, "    - {name: r%d, labels: {required: [team]}}\n", i)
	}
	docs = append(docs, "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: p, namespace: shop}\nspec:\n  enforcement: Deny\n  rules:\n"+rules.String())
	for i := range 20 {
		docs = append(docs, fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: PolicyException
metadata: {name: x%d, namespace: shop}
spec:
  exceptions: [{policyName: p, ruleNames: [r%d]}]
  match: {objectSelector: {matchLabels: {tier: t%d}}}
  owner: team-a
  reason: migration
  expires: "2099-01-01T00:00:00Z"
`, i, i, i%4))
	}
	e := mustEngineWith(b, testCompiler, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), docs...)
	pod := mustResource(b, "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: shop, labels: {team: x, tier: t1}}\nspec: {containers: [{name: app, image: ghcr.io/x:1}]}\n")
	results := e.Evaluate(b.Context(), &Request{Operation: v1alpha1.Create, Object: pod})
	skipped := 0
	for _, r := range results {
		if r.Result == Skip {
			skipped++
		}
	}
	if len(results) != 30 || skipped != 5 {
		b.Fatalf("%d results, %d exempted; want 30 and 5", len(results), skipped)
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(b.Context(), &Request{Operation: v1alpha1.Create, Object: pod})
	}
}
