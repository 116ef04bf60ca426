package audit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// TestJudgeAsTheClusterWould: a LIST item (no apiVersion, no kind) is judged as a CREATE: the
// enforced mutation first, then the validating rules on the mutated object; a rule that reads
// request.userInfo is skipped.
func TestJudgeAsTheClusterWould(t *testing.T) {
	engine := podPolicyEngine(t, "probes", v1alpha1.Deny,
		v1alpha1.Rule{Name: "defaults", DefaultProbes: &v1alpha1.DefaultProbesRule{}},
		v1alpha1.Rule{Name: "has-probe", CEL: &v1alpha1.CELRule{Expression: "object.spec.containers.all(c, has(c.readinessProbe))"}},
		v1alpha1.Rule{Name: "who", CEL: &v1alpha1.CELRule{Expression: "request.userInfo.username != ''"}})
	item := `{"metadata":{"name":"web","namespace":"shop","uid":"u1"},"spec":{"containers":[{"name":"web","image":"web:1","ports":[{"containerPort":8080}]}]}}`
	pods := intercept.Resource{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true}
	res, results, err := Judge(t.Context(), engine, policies.NewDecoder(false), pods, []byte(item), func(string) (*corev1.Namespace, bool) { return nil, true }, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range results {
		got = append(got, r.Rule+"="+string(r.Result))
	}
	if res.Ref().Name != "web" || strings.Join(got, " ") != "defaults=pass has-probe=pass who=skip" || len(results[0].Changes) == 0 {
		t.Errorf("judged %v: %v, changes %v; want the mutation applied, the probe found, the userInfo rule skipped", res.Ref(), got, results[0].Changes)
	}
}

// TestJudgedKeepsNoPartOfThePage: the scan decodes objects in place, as parts of their LIST page;
// what the store keeps of one (its namespace, name, uid and messages) is a copy, so the page,
// reused or changed after, changes nothing in the report, and is not kept alive by it.
func TestJudgedKeepsNoPartOfThePage(t *testing.T) {
	engine := podPolicyEngine(t, "named", v1alpha1.Audit,
		v1alpha1.Rule{Name: "n", CEL: &v1alpha1.CELRule{Expression: "object.metadata.name == 'other'", MessageExpression: "string(object.metadata.name)"}})
	page := []byte(`{"metadata":{"name":"web","namespace":"shop","uid":"u1"},"spec":{"containers":[{"name":"web","image":"web:1"}]}}`)
	pods := intercept.Resource{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true}
	s := &Scanner{Store: NewStore(sets.New(Fail), 10, time.Now), ObjectTimeout: time.Minute}
	if judged, err := s.judge(t.Context(), engine, pods, page, &NamespaceCache{}); err != nil || !judged {
		t.Fatalf("judged %v: %v", judged, err)
	}
	for i := range page { // the next page read into the same buffer
		page[i] = 'x'
	}
	if _, ok := s.Store.Fingerprint("shop", "u1"); !ok {
		t.Error("the object is not found by its namespace and uid: the store's keys were the page's bytes")
	}
	changed, _ := s.Store.Changed()
	if len(changed) != 1 || len(changed[0].Results) != 1 {
		t.Fatalf("changed %+v, want one result in one namespace", changed)
	}
	if r := changed[0].Results[0]; changed[0].Namespace != "shop" || r.Object.Name != "web" || r.Object.Namespace != "shop" || r.Object.UID != "u1" || r.Message != "web" {
		t.Errorf("the report holds %q: %+v: parts of the page, not copies", changed[0].Namespace, r)
	}
}

// TestReusedResultsLeaveTheStoreAsItWas: the scan writes each object's results over the last
// one's (Request.Results); what the store kept of the last (its findings' messages and rules)
// is its own, and an object with fewer results than the last one gets no stale result.
func TestReusedResultsLeaveTheStoreAsItWas(t *testing.T) {
	engine := podPolicyEngine(t, "named", v1alpha1.Audit,
		v1alpha1.Rule{Name: "n", CEL: &v1alpha1.CELRule{Expression: "object.metadata.name == 'other'", MessageExpression: "'named ' + object.metadata.name"}},
		v1alpha1.Rule{Name: "privileged", CEL: &v1alpha1.CELRule{
			Expression: "object.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged)",
			Message:    "privileged"}})
	pods := intercept.Resource{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true}
	s := &Scanner{Store: NewStore(sets.New(Fail), 10, time.Now), ObjectTimeout: time.Minute}
	objects := []string{
		`{"metadata":{"name":"a","namespace":"shop","uid":"ua"},"spec":{"containers":[{"name":"c","image":"c:1","securityContext":{"privileged":true}}]}}`,
		`{"metadata":{"name":"b","namespace":"shop","uid":"ub"},"spec":{"containers":[{"name":"c","image":"c:1"}]}}`,
		`{"metadata":{"name":"other","namespace":"shop","uid":"uc"},"spec":{"containers":[{"name":"c","image":"c:1"}]}}`,
	}
	for _, o := range objects {
		if judged, err := s.judge(t.Context(), engine, pods, []byte(o), &NamespaceCache{}); err != nil || !judged {
			t.Fatalf("judged %v: %v", judged, err)
		}
	}
	if cap(s.results) == 0 {
		t.Fatal("the scanner kept no results to write the next object's over")
	}
	changed, _ := s.Store.Changed()
	var got []string
	for _, c := range changed {
		for _, r := range c.Results {
			got = append(got, r.Object.Name+": "+r.Rule+": "+r.Message)
		}
	}
	slices.Sort(got)
	if want := []string{"a: n: named a", "a: privileged: privileged", "b: n: named b"}; !slices.Equal(got, want) {
		t.Errorf("the store holds %q, want %q", got, want)
	}
	// The engine, given the results back, judges alike.
	d := policies.NewDecoder(false)
	for _, o := range objects {
		_, fresh, err1 := Judge(t.Context(), engine, d, pods, []byte(o), func(string) (*corev1.Namespace, bool) { return nil, true }, nil)
		_, reused, err2 := Judge(t.Context(), engine, d, pods, []byte(o), func(string) (*corev1.Namespace, bool) { return nil, true }, s.results)
		if err1 != nil || err2 != nil || !slices.EqualFunc(fresh, reused, func(a, b policies.Result) bool {
			return a.Rule == b.Rule && a.Result == b.Result && a.Message == b.Message && a.Resource == b.Resource
		}) {
			t.Errorf("%s: judged %+v (%v) with a fresh slice, %+v (%v) with the last results", o, fresh, err1, reused, err2)
		}
		s.results = reused
	}
}

// TestJudgedObjectsAreCountedAsJudged: the observer (portcullis_audit_objects_scanned_total) is
// told of each object as it is judged, so that the counter rises while a long scan runs; not of
// an object another replica owns.
func TestJudgedObjectsAreCountedAsJudged(t *testing.T) {
	engine := podPolicyEngine(t, "named", v1alpha1.Audit, v1alpha1.Rule{Name: "n", CEL: &v1alpha1.CELRule{Expression: "true"}})
	pods := intercept.Resource{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true}
	seen := &countingObserver{}
	s := &Scanner{Store: NewStore(sets.New(Fail), 10, time.Now), ObjectTimeout: time.Minute, Observer: seen,
		Owns: func(ns string) bool { return ns != "theirs" }}
	for i, ns := range []string{"shop", "theirs", "shop"} {
		page := fmt.Appendf(nil, `{"metadata":{"name":"p%d","namespace":%q,"uid":"u%d"},"spec":{"containers":[{"name":"c","image":"c:1"}]}}`, i, ns, i)
		judged, err := s.judge(t.Context(), engine, pods, page, &NamespaceCache{})
		if err != nil || judged != (ns == "shop") {
			t.Fatalf("object %d in %s: judged %v, %v", i, ns, judged, err)
		}
		if want := (i + 2) / 2; seen.judged != want { // 1, 1, 2
			t.Fatalf("after object %d: the observer was told of %d judged, want %d", i, seen.judged, want)
		}
	}
}

// countingObserver counts the objects it is told were judged.
type countingObserver struct{ judged int }

func (*countingObserver) AuditScan(bool, time.Duration)                  {}
func (o *countingObserver) AuditJudged()                                 { o.judged++ }
func (*countingObserver) AuditScanOutcome(bool)                          {}
func (*countingObserver) AuditViolationCounts(map[string]map[string]int) {}

// podPolicyEngine is an engine of one ClusterPolicy, name, that matches Pods with the rules.
func podPolicyEngine(t *testing.T, name string, enforcement v1alpha1.Enforcement, rules ...v1alpha1.Rule) *policies.Engine {
	t.Helper()
	c, err := policies.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	p := &v1alpha1.ClusterPolicy{}
	p.Name = name
	p.Spec = v1alpha1.PolicySpec{Enforcement: enforcement, Match: v1alpha1.MatchResources{Kinds: []string{"Pod"}}, Rules: rules}
	cp, err := c.CompileClusterPolicy(p)
	if err != nil {
		t.Fatal(err)
	}
	return policies.NewEngine([]*policies.CompiledPolicy{cp}, nil, time.Now)
}
