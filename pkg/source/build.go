package source

import (
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// build is one engine build: what it compiled, what it counted against the tenant budgets, and
// the status writes that wait until the engine is in place.
type build struct {
	ctx                 context.Context
	now                 func() time.Time
	leading             bool // writes status and syncs the webhooks' rules
	seen                map[types.UID]bool
	cluster, namespaced []*policies.CompiledPolicy
	exceptions          []*policies.CompiledException
	charges             map[types.UID]charge // each counted Policy's use of its namespace's budget
	counted             map[types.UID]string // each counted exception's namespace
	nextExpiry          time.Time            // of the exceptions in force
	// notIntercepted is, per policy, what the webhooks' rules cannot send it (on the leader).
	notIntercepted map[string][]string
	pending        []func() error
}

func (c *PolicyController) buildClusterPolicies(b *build, items []v1alpha1.ClusterPolicy) {
	sortByName(items, func(p v1alpha1.ClusterPolicy) string { return p.Name })
	for i := range items {
		p := &items[i]
		b.seen[p.UID] = true
		co := c.compile(p, usesSecretKeys(&p.Spec))
		if co.policy != nil {
			b.cluster = append(b.cluster, co.policy)
		}
		b.pending = append(b.pending, func() error { return c.writeStatus(b, p, &p.Status, co) })
	}
}

// buildPolicies compiles the namespaced Policies within the tenant budget, oldest first: a new
// or grown Policy cannot push an older one out. Policies and rules are counted before compiling,
// and what does not fit is not compiled: whatever a tenant writes, compile work and the compiled
// rules kept are bounded by the budget. A Policy that does not compile, or whose cost does not
// fit, still holds its count.
func (c *PolicyController) buildPolicies(b *build, items []v1alpha1.Policy) {
	sortByName(items, func(p v1alpha1.Policy) string { return p.Namespace + "/" + p.Name }) // ties of the oldest-first order
	slices.SortStableFunc(items, func(a, b v1alpha1.Policy) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	usage := newTenantUsage(c.Budget)
	for i := range items {
		p := &items[i]
		b.seen[p.UID] = true
		rules := policies.BudgetRules(&p.Spec)
		if why := usage.reserve(p.Namespace, rules); why != "" {
			delete(c.compiled, p.UID) // an earlier generation, compiled when it fitted, is not kept
			co := &compiledObject{generation: p.Generation, overBudget: why}
			b.pending = append(b.pending, func() error { return c.writeStatus(b, p, &p.Status, co) })
			continue
		}
		co := c.compile(p, usesSecretKeys(&p.Spec))
		ch := charge{namespace: p.Namespace, rules: rules}
		if co.policy != nil {
			if why := usage.charge(p.Namespace, co.policy.Cost()); why != "" {
				over := *co
				over.overBudget = why
				co = &over
			} else {
				b.namespaced = append(b.namespaced, co.policy)
				ch.cost = co.policy.Cost()
			}
		}
		b.charges[p.UID] = ch
		b.pending = append(b.pending, func() error { return c.writeStatus(b, p, &p.Status, co) })
	}
	sortByName(b.namespaced, func(p *policies.CompiledPolicy) string { return p.Name })
}

// buildExceptions compiles the exceptions within their namespace's budget, oldest first, counted
// before compiling.
func (c *PolicyController) buildExceptions(b *build, items []v1alpha1.PolicyException) {
	sortByName(items, func(x v1alpha1.PolicyException) string { return x.Namespace + "/" + x.Name })
	slices.SortStableFunc(items, func(a, b v1alpha1.PolicyException) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	in := map[string]int{}
	for i := range items {
		x := &items[i]
		b.seen[x.UID] = true
		if why := exceptionBudget(c.Budget, x.Namespace, in[x.Namespace]); why != "" {
			delete(c.compiled, x.UID)
			co := &compiledObject{generation: x.Generation, overBudget: why}
			b.pending = append(b.pending, func() error { return c.writeExceptionStatus(b.ctx, x, co, b.now()) })
			continue
		}
		in[x.Namespace]++
		b.counted[x.UID] = x.Namespace
		co := c.compile(x, false)
		if co.exception != nil {
			b.exceptions = append(b.exceptions, co.exception)
			if exp := co.exception.Expires(); exp.After(b.now()) && (b.nextExpiry.IsZero() || exp.Before(b.nextExpiry)) {
				b.nextExpiry = exp
			}
		}
		b.pending = append(b.pending, func() error { return c.writeExceptionStatus(b.ctx, x, co, b.now()) })
	}
}
