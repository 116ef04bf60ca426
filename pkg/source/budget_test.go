package source

import (
	"fmt"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// testController is a PolicyController over a fake client that holds objs, elected leader and
// bounded by budget; a nil compiler is a default one.
func testController(tb testing.TB, compiler *policies.Compiler, budget TenantBudget, objs ...client.Object) (*PolicyController, client.Client) {
	tb.Helper()
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		tb.Fatal(err)
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).
		WithStatusSubresource(&v1alpha1.ClusterPolicy{}, &v1alpha1.Policy{}, &v1alpha1.PolicyException{}).Build()
	if compiler == nil {
		var err error
		if compiler, err = policies.NewCompiler(); err != nil {
			tb.Fatal(err)
		}
	}
	c := &PolicyController{Client: cl, Compiler: compiler, Engines: &EngineHolder{}, Budget: budget,
		compiled: map[types.UID]*compiledObject{}}
	c.leading.Store(true)
	return c, cl
}

func TestTenantUsage(t *testing.T) {
	u := newTenantUsage(TenantBudget{MaxPolicies: 2, MaxRules: 10, MaxCost: 100, MaxNamespacedRules: 15})
	for _, step := range []struct {
		ns    string
		rules int
		want  string
	}{
		{"a", 6, ""},
		{"a", 5, "past its budget of 10 (--namespace-max-rules)"},
		{"a", 4, ""},
		{"a", 1, "already has 2 Policies"},
		{"b", 6, "past the budget of 15 (--max-namespaced-rules)"},
		{"b", 5, ""},
	} {
		if got := u.reserve(step.ns, step.rules); (step.want == "") != (got == "") || !strings.Contains(got, step.want) {
			t.Errorf("reserve(%s, %d) = %q, want %q", step.ns, step.rules, got, step.want)
		}
	}
	if why := u.charge("a", 60); why != "" {
		t.Errorf("charge 60: %s", why)
	}
	if why := u.charge("a", 41); !strings.Contains(why, "estimated to cost 41; with the 60 of namespace a's other Policies that is past its budget of 100") {
		t.Errorf("charge 41: %q", why)
	}
	if why := u.charge("a", ^uint64(0)); why == "" {
		t.Error("an unbounded cost was charged")
	}
	if why := newTenantUsage(TenantBudget{}).reserve("a", 1000); why != "" {
		t.Errorf("the zero budget bounds: %s", why)
	}
}

// TestControllerBudgetOldestFirst is the backstop behind the policy webhook (Policies written at
// once, or a budget lowered on restart): the oldest Policies fit, the newest does not, is not
// compiled, and says so in its status; an earlier compile of it is not kept.
func TestControllerBudgetOldestFirst(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	policy := func(name string, age time.Duration, rules int) *v1alpha1.Policy {
		p := &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(name), Generation: 1,
			CreationTimestamp: metav1.NewTime(t0.Add(-age))}, Spec: v1alpha1.PolicySpec{Enforcement: v1alpha1.Deny}}
		for i := range rules {
			p.Spec.Rules = append(p.Spec.Rules, v1alpha1.Rule{Name: fmt.Sprintf("r%d", i), Labels: &v1alpha1.LabelsRule{Required: []string{"team"}}})
		}
		return p
	}
	// Named so that name order and age order differ. The newest holds 10 rules and 18
	// variables: a variable counts as a rule, a compiled program the server holds, and the
	// policy's own CEL environment as two.
	newest := policy("a-newest", time.Minute, 10)
	for i := range 18 {
		newest.Spec.Variables = append(newest.Spec.Variables, v1alpha1.Variable{Name: fmt.Sprintf("v%d", i), Expression: "1"})
	}
	objs := []client.Object{newest, policy("z-oldest", time.Hour, 60), policy("m-middle", 30*time.Minute, 30)}
	c, cl := testController(t, nil, TenantBudget{MaxRules: 100}, objs...)
	c.compiled["a-newest"] = &compiledObject{generation: 1, policy: &policies.CompiledPolicy{}} // compiled when it fitted
	if _, err := c.Reconcile(t.Context(), rebuild); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"z-oldest": "Compiled", "m-middle": "Compiled", "a-newest": "OverBudget"} {
		var p v1alpha1.Policy
		if err := cl.Get(t.Context(), client.ObjectKey{Namespace: "shop", Name: name}, &p); err != nil {
			t.Fatal(err)
		}
		cond := apimeta.FindStatusCondition(p.Status.Conditions, ConditionReady)
		if cond == nil || cond.Reason != want {
			t.Errorf("%s: %+v, want %s", name, cond, want)
		}
		if want == "OverBudget" && !strings.Contains(cond.Message, "its 30 rules would bring namespace shop to 120, past its budget of 100 (--namespace-max-rules); the namespace's older Policies stay enforced") {
			t.Errorf("%s: %q", name, cond.Message)
		}
	}
	if _, kept := c.compiled["a-newest"]; kept {
		t.Error("the compiled form of a Policy over budget is kept")
	}
	if why := c.BudgetFor(policy("another", 0, 10), 10, 0); why != "" { // 60 + 30 + 10
		t.Errorf("BudgetFor: %q", why)
	}
	if why := c.BudgetFor(policy("another", 0, 11), 11, 0); !strings.Contains(why, "its 11 rules would bring namespace shop to 101") {
		t.Errorf("BudgetFor at the door: %q", why)
	}
}

// TestControllerExceptionBudget: past --namespace-max-exceptions, the newest exceptions of a
// namespace do not apply and say so; the policy webhook refuses one more at the door.
func TestControllerExceptionBudget(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exception := func(name string, age time.Duration) *v1alpha1.PolicyException {
		return &v1alpha1.PolicyException{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID(name), Generation: 1,
			CreationTimestamp: metav1.NewTime(t0.Add(-age))}, Spec: v1alpha1.PolicyExceptionSpec{
			Exceptions: []v1alpha1.ExceptionTarget{{PolicyName: "p"}}, Owner: "o", Reason: "r", Expires: metav1.NewTime(t0.Add(time.Hour))}}
	}
	c, cl := testController(t, nil, TenantBudget{MaxExceptions: 1}, exception("b-older", time.Hour), exception("a-newer", time.Minute))
	c.Now = func() time.Time { return t0 }
	if _, err := c.Reconcile(t.Context(), rebuild); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"b-older": "Active", "a-newer": "OverBudget"} {
		var x v1alpha1.PolicyException
		if err := cl.Get(t.Context(), client.ObjectKey{Namespace: "shop", Name: name}, &x); err != nil {
			t.Fatal(err)
		}
		if cond := apimeta.FindStatusCondition(x.Status.Conditions, ConditionReady); cond == nil || cond.Reason != want {
			t.Errorf("%s: %+v, want %s", name, cond, want)
		}
	}
	if why := c.ExceptionBudgetFor(exception("another", 0)); !strings.Contains(why, "namespace shop already has 1 PolicyExceptions, its budget (--namespace-max-exceptions)") {
		t.Errorf("at the door: %q", why)
	}
	if why := c.ExceptionBudgetFor(exception("b-older", 0)); why != "" {
		t.Errorf("an update of a counted exception: %q", why)
	}
}

// BenchmarkRebuildWithTenantChurn is one engine build with 20 tenant namespaces at the default
// budget (100 CEL rules each: the cluster's 2,000), when nothing changed (every compile cached)
// and when one tenant has just edited its Policy (its 100 rules compiled again): how long one
// tenant's edit holds up the build that carries everyone else's changes.
func BenchmarkRebuildWithTenantChurn(b *testing.B) {
	var objs []client.Object
	for ns := range 20 {
		p := &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: fmt.Sprintf("tenant-%d", ns), UID: types.UID(fmt.Sprint(ns)), Generation: 1},
			Spec: v1alpha1.PolicySpec{Enforcement: v1alpha1.Deny}}
		for i := range 100 {
			p.Spec.Rules = append(p.Spec.Rules, v1alpha1.Rule{Name: fmt.Sprintf("r%d", i), CEL: &v1alpha1.CELRule{
				Expression: fmt.Sprintf("podSpec == null || podSpec.containers.all(c, c.image.startsWith('registry.example.com/') || %d < %d)", ns, i)}})
		}
		objs = append(objs, p)
	}
	c, _ := testController(b, nil, DefaultTenantBudget, objs...)
	if _, err := c.Reconcile(b.Context(), rebuild); err != nil {
		b.Fatal(err)
	}
	b.Run("nothing changed", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Reconcile(b.Context(), rebuild); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one tenant edited", func(b *testing.B) {
		for b.Loop() {
			delete(c.compiled, "7") // as a new generation would
			if _, err := c.Reconcile(b.Context(), rebuild); err != nil {
				b.Fatal(err)
			}
		}
	})
}
