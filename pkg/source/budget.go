package source

import (
	"fmt"

	"k8s.io/apimachinery/pkg/types"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// TenantBudget bounds what namespaced Policies may cost, so that one tenant cannot take the
// replicas' memory or CPU from every other. A zero field is no bound.
type TenantBudget struct {
	// MaxPolicies is the most Policies a namespace may have enforced.
	MaxPolicies int
	// MaxRules is the most rules a namespace's Policies may hold together.
	MaxRules int
	// MaxCost is the most a namespace's CEL expressions may be estimated to cost together (see
	// policies.EstimateSize): the worst a Pod of the namespace costs to judge.
	MaxCost uint64
	// MaxNamespacedRules is the most rules every namespace's Policies may hold together: with
	// namespaces created by self-service, the per-namespace budget alone does not bound memory.
	MaxNamespacedRules int
	// MaxExceptions is the most PolicyExceptions a namespace may have.
	MaxExceptions int
}

// exceptionBudget returns why one more exception, with n counted already, would take namespace
// ns past its budget, or "".
func exceptionBudget(b TenantBudget, ns string, n int) string {
	if b.MaxExceptions > 0 && n+1 > b.MaxExceptions {
		return fmt.Sprintf("namespace %s already has %d PolicyExceptions, its budget (--namespace-max-exceptions)", ns, n)
	}
	return ""
}

// DefaultTenantBudget is the server's default: a namespace may have 20 Policies of 100 rules
// together, estimated to cost at most one ValidatingAdmissionPolicy runtime budget, and 50
// PolicyExceptions; the cluster 2,000 namespaced rules.
var DefaultTenantBudget = TenantBudget{MaxPolicies: 20, MaxRules: 100, MaxCost: 10_000_000, MaxNamespacedRules: 2000, MaxExceptions: 50}

// tenantUsage counts what the Policies admitted so far use, in the order the controller walks
// them: oldest first, so a new or grown Policy cannot evict an older one.
type tenantUsage struct {
	budget     TenantBudget
	namespaces map[string]*nsUsage
	rules      int // every namespace's
}

type nsUsage struct {
	policies, rules int
	cost            uint64
}

func newTenantUsage(b TenantBudget) *tenantUsage {
	return &tenantUsage{budget: b, namespaces: map[string]*nsUsage{}}
}

func (t *tenantUsage) ns(name string) *nsUsage {
	u := t.namespaces[name]
	if u == nil {
		u = &nsUsage{}
		t.namespaces[name] = u
	}
	return u
}

// reserve counts a Policy of rules rules in namespace ns before it is compiled, and returns why
// it does not fit, or "". A Policy that does not fit is not compiled and not counted; one that
// fits stays counted, compiled or not.
func (t *tenantUsage) reserve(ns string, rules int) string {
	u, b := t.ns(ns), t.budget
	switch {
	case b.MaxPolicies > 0 && u.policies+1 > b.MaxPolicies:
		return fmt.Sprintf("namespace %s already has %d Policies, its budget (--namespace-max-policies)", ns, u.policies)
	case b.MaxRules > 0 && u.rules+rules > b.MaxRules:
		return fmt.Sprintf("its %d rules would bring namespace %s to %d, past its budget of %d (--namespace-max-rules)", rules, ns, u.rules+rules, b.MaxRules)
	case b.MaxNamespacedRules > 0 && t.rules+rules > b.MaxNamespacedRules:
		return fmt.Sprintf("its %d rules would bring the cluster's namespaced Policies to %d rules, past the budget of %d (--max-namespaced-rules)", rules, t.rules+rules, b.MaxNamespacedRules)
	}
	t.add(ns, rules, 0)
	return ""
}

// add counts one Policy.
func (t *tenantUsage) add(ns string, rules int, cost uint64) {
	u := t.ns(ns)
	u.policies++
	u.rules += rules
	u.cost += cost
	t.rules += rules
}

// charge adds a compiled Policy's estimated cost, or returns why it does not fit.
func (t *tenantUsage) charge(ns string, cost uint64) string {
	u, b := t.ns(ns), t.budget
	if b.MaxCost > 0 && (cost > b.MaxCost || u.cost > b.MaxCost-cost) {
		return fmt.Sprintf("its CEL expressions are estimated to cost %s; with the %s of namespace %s's other Policies that is past its budget of %s (--namespace-max-cost)",
			policies.FormatCost(cost), policies.FormatCost(u.cost), ns, policies.FormatCost(b.MaxCost))
	}
	u.cost += cost
	return ""
}

// charge is what one counted Policy uses, as the last engine build saw it.
type charge struct {
	namespace string
	rules     int
	cost      uint64 // zero unless enforced
}

// usageWithout rebuilds the usage of snapshot without the Policy uid: what every other Policy
// uses, to judge one being written.
func usageWithout(b TenantBudget, snapshot map[types.UID]charge, uid types.UID) *tenantUsage {
	t := newTenantUsage(b)
	for id, ch := range snapshot {
		if id != uid {
			t.add(ch.namespace, ch.rules, ch.cost)
		}
	}
	return t
}
