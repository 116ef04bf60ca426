package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// ConditionReady is the condition every policy and exception reports.
const ConditionReady = "Ready"

// ConditionIntercepted says whether the webhooks send a policy every kind and operation it
// matches.
const ConditionIntercepted = "Intercepted"

// ConditionDegraded is set on a policy whose latest generation does not compile while an earlier
// one stays in force.
const ConditionDegraded = "Degraded"

// PolicyController compiles the cluster's policies and exceptions into the engine in force. It
// runs on every replica, each building its own engine from its informer cache; only the leader
// writes status. A policy is recompiled only when its generation changes.
type PolicyController struct {
	Client   client.Client
	Compiler *policies.Compiler
	Engines  *EngineHolder
	Metrics  *metrics.Metrics
	// Now tells the time for exception expiry; nil is time.Now.
	Now func() time.Time
	// KeyRefresh is how often policies with keys in Secrets are recompiled, so that a rotated
	// key takes effect; zero is one minute.
	KeyRefresh time.Duration
	// Budget bounds what namespaced Policies may cost; the zero value bounds nothing.
	Budget TenantBudget
	// Interceptor, when set, keeps the webhooks' rules equal to what the policies need; the
	// leader calls it after each build, before any status says a policy is enforced.
	Interceptor Interceptor

	leading  atomic.Bool // this replica leads: it writes status
	kick     chan event.GenericEvent
	compiled map[types.UID]*compiledObject
	// notIntercepted is what the last sync of the webhooks' rules could not give each policy.
	notIntercepted map[string][]string
	// usage is what each counted Policy used at the last build, for the policy webhook;
	// exceptionUsage the namespace of each counted exception.
	usage          atomic.Pointer[map[types.UID]charge]
	exceptionUsage atomic.Pointer[map[types.UID]string]
}

// ExceptionBudgetFor returns why exception x would take its namespace past
// --namespace-max-exceptions, given the exceptions counted at the last engine build; "" when it
// fits, or before the first build.
func (c *PolicyController) ExceptionBudgetFor(x *v1alpha1.PolicyException) string {
	snapshot := c.exceptionUsage.Load()
	if snapshot == nil {
		return ""
	}
	n := 0
	for uid, ns := range *snapshot {
		if ns == x.Namespace && uid != x.UID {
			n++
		}
	}
	return exceptionBudget(c.Budget, x.Namespace, n)
}

// BudgetFor returns why Policy p, of rules rules estimated to cost cost, would take its
// namespace past the tenant budget, given what every other Policy used at the last engine
// build; "" when it fits, or before the first build.
func (c *PolicyController) BudgetFor(p *v1alpha1.Policy, rules int, cost uint64) string {
	snapshot := c.usage.Load()
	if snapshot == nil {
		return ""
	}
	u := usageWithout(c.Budget, *snapshot, p.UID)
	if why := u.reserve(p.Namespace, rules); why != "" {
		return why
	}
	return u.charge(p.Namespace, cost)
}

// Interceptor keeps the webhooks' rules equal to what the policies need (intercept.Syncer).
type Interceptor interface {
	// Sync returns, per policy, what it matches that the webhooks cannot send it.
	Sync(ctx context.Context, needs []intercept.Need) (map[string][]string, error)
}

// compiledObject is the compile result of one generation of one policy or exception.
type compiledObject struct {
	generation int64
	compiledAt time.Time
	usesKeys   bool // reads verification keys from Secrets: recompiled every KeyRefresh
	kind, name string
	policy     *policies.CompiledPolicy
	exception  *policies.CompiledException
	errs       []string
	overBudget string // why the policy, compiled or not, is not enforced: the tenant budget
	// lastGood, when not zero, is the generation whose compiled policy stays in force while this
	// one does not compile (errs).
	lastGood int64
}

// reresolve is how often the kinds of policies that cannot all be intercepted are resolved again.
const reresolve = 30 * time.Second

// the single work item: every change rebuilds the engine from the cache, coalesced.
var rebuild = reconcile.Request{NamespacedName: types.NamespacedName{Name: "engine"}}

// SetupWithManager registers the controller. It also triggers one build at start, so that a
// cluster without any policy is ready too. Lead is the leader-only part.
func (c *PolicyController) SetupWithManager(mgr manager.Manager) error {
	c.compiled = map[types.UID]*compiledObject{}
	c.kick = make(chan event.GenericEvent, 1)
	c.Rebuild()
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request { return []reconcile.Request{rebuild} })
	return ctrl.NewControllerManagedBy(mgr).
		Named("policies").
		Watches(&v1alpha1.ClusterPolicy{}, all).
		Watches(&v1alpha1.Policy{}, all).
		Watches(&v1alpha1.PolicyException{}, all).
		WatchesRawSource(source.Channel(c.kick, all)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, NeedLeaderElection: ptr.To(false)}).
		Complete(c)
}

// Rebuild asks for an engine build, as a policy change does. It never blocks: requests that
// come while one is pending are one.
func (c *PolicyController) Rebuild() {
	select {
	case c.kick <- event.GenericEvent{Object: &v1alpha1.ClusterPolicy{}}:
	default:
	}
}

// Lead is the controller's leader-only work: while ctx lives this replica writes status, starting
// with a build that brings every status up to date.
func (c *PolicyController) Lead(ctx context.Context) error {
	c.leading.Store(true)
	defer c.leading.Store(false)
	c.Rebuild()
	<-ctx.Done()
	return nil
}

func (c *PolicyController) isLeader() bool { return c.leading.Load() }

// Reconcile rebuilds the engine from every policy and exception in the cache.
func (c *PolicyController) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	var cps v1alpha1.ClusterPolicyList
	var ps v1alpha1.PolicyList
	var xs v1alpha1.PolicyExceptionList
	for _, l := range []client.ObjectList{&cps, &ps, &xs} {
		if err := c.Client.List(ctx, l); err != nil {
			return reconcile.Result{}, fmt.Errorf("listing policies: %w", err)
		}
	}
	seen := map[types.UID]bool{}
	var compiled []*policies.CompiledPolicy
	var exceptions []*policies.CompiledException
	var statusErrs []error
	sortByName(cps.Items, func(p v1alpha1.ClusterPolicy) string { return p.Name })
	sortByName(ps.Items, func(p v1alpha1.Policy) string { return p.Namespace + "/" + p.Name }) // ties of the oldest-first order below
	sortByName(xs.Items, func(x v1alpha1.PolicyException) string { return x.Namespace + "/" + x.Name })

	refresh := false
	var pending []func() error // status writes, once the engine is in place
	for i := range cps.Items {
		p := &cps.Items[i]
		co := c.compile(p, "ClusterPolicy", p.Name, usesSecretKeys(&p.Spec), func() (*policies.CompiledPolicy, *policies.CompiledException, error) {
			cp, err := c.Compiler.CompileClusterPolicy(p)
			return cp, nil, err
		})
		seen[p.UID] = true
		if co.policy != nil {
			compiled = append(compiled, co.policy)
		}
		pending = append(pending, func() error {
			return c.writeStatus(ctx, p, &p.Status.Conditions, &p.Status.ObservedGeneration, &p.Status.Errors, co)
		})
	}
	// Namespaced Policies within the tenant budget, oldest first: a new or grown Policy cannot
	// push an older one out. Policies and rules are counted before compiling, and what does not
	// fit is not compiled: whatever a tenant writes, compile work and the compiled rules kept are
	// bounded by the budget. A Policy that does not compile, or whose cost does not fit, still
	// holds its count.
	usage := newTenantUsage(c.Budget)
	slices.SortStableFunc(ps.Items, func(a, b v1alpha1.Policy) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	var namespaced []*policies.CompiledPolicy
	charges := map[types.UID]charge{}
	for i := range ps.Items {
		p := &ps.Items[i]
		seen[p.UID] = true
		rules := len(p.Spec.Rules)
		if why := usage.reserve(p.Namespace, rules); why != "" {
			delete(c.compiled, p.UID) // an earlier generation, compiled when it fitted, is not kept
			co := &compiledObject{generation: p.Generation, overBudget: why}
			pending = append(pending, func() error {
				return c.writeStatus(ctx, p, &p.Status.Conditions, &p.Status.ObservedGeneration, &p.Status.Errors, co)
			})
			continue
		}
		co := c.compile(p, "Policy", p.Namespace+"/"+p.Name, usesSecretKeys(&p.Spec), func() (*policies.CompiledPolicy, *policies.CompiledException, error) {
			cp, err := c.Compiler.CompilePolicy(p)
			return cp, nil, err
		})
		ch := charge{namespace: p.Namespace, rules: rules}
		if co.policy != nil {
			if why := usage.charge(p.Namespace, co.policy.Cost()); why != "" {
				over := *co
				over.overBudget = why
				co = &over
			} else {
				namespaced = append(namespaced, co.policy)
				ch.cost = co.policy.Cost()
			}
		}
		charges[p.UID] = ch
		pending = append(pending, func() error {
			return c.writeStatus(ctx, p, &p.Status.Conditions, &p.Status.ObservedGeneration, &p.Status.Errors, co)
		})
	}
	// The policy webhook judges new Policies by this usage: it is in place before any status
	// says a Policy is enforced.
	c.usage.Store(&charges)
	sortByName(namespaced, func(p *policies.CompiledPolicy) string { return p.Name })
	compiled = append(compiled, namespaced...)
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	var nextExpiry time.Time
	// Exceptions within the namespace's budget, oldest first, counted before compiling.
	slices.SortStableFunc(xs.Items, func(a, b v1alpha1.PolicyException) int {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	exceptionsIn := map[string]int{}
	counted := map[types.UID]string{}
	for i := range xs.Items {
		x := &xs.Items[i]
		seen[x.UID] = true
		if why := exceptionBudget(c.Budget, x.Namespace, exceptionsIn[x.Namespace]); why != "" {
			delete(c.compiled, x.UID)
			co := &compiledObject{generation: x.Generation, overBudget: why}
			pending = append(pending, func() error { return c.writeExceptionStatus(ctx, x, co, now()) })
			continue
		}
		exceptionsIn[x.Namespace]++
		counted[x.UID] = x.Namespace
		co := c.compile(x, "PolicyException", x.Namespace+"/"+x.Name, false, func() (*policies.CompiledPolicy, *policies.CompiledException, error) {
			cx, err := c.Compiler.CompileException(x)
			return nil, cx, err
		})
		if co.exception != nil {
			exceptions = append(exceptions, co.exception)
			if exp := co.exception.Expires(); exp.After(now()) && (nextExpiry.IsZero() || exp.Before(nextExpiry)) {
				nextExpiry = exp
			}
		}
		pending = append(pending, func() error { return c.writeExceptionStatus(ctx, x, co, now()) })
	}
	for uid := range c.compiled {
		if !seen[uid] {
			delete(c.compiled, uid)
		}
	}
	c.exceptionUsage.Store(&counted)
	c.recordCompileErrors()
	c.Engines.Store(policies.NewEngine(compiled, exceptions, c.Now))
	// Then the webhooks' rules: a policy is enforced once the API server sends it its kinds.
	var notIntercepted map[string][]string
	if c.Interceptor != nil && c.isLeader() {
		needs := make([]intercept.Need, 0, len(compiled))
		for _, p := range compiled {
			needs = append(needs, intercept.Need{Policy: p.Name, Interception: p.Interception()})
		}
		var err error
		if notIntercepted, err = c.Interceptor.Sync(ctx, needs); err != nil {
			return reconcile.Result{}, fmt.Errorf("keeping the webhook rules: %w", err)
		}
		c.notIntercepted = notIntercepted
	}
	// Status last: what it says is enforced, is.
	for _, write := range pending {
		statusErrs = append(statusErrs, write())
	}
	if c.Metrics != nil {
		c.Metrics.Policies.Set(float64(len(compiled)))
	}
	result := reconcile.Result{}
	if !nextExpiry.IsZero() {
		result.RequeueAfter = nextExpiry.Sub(now()) + time.Second // to report the expiry in status
	}
	for _, co := range c.compiled {
		refresh = refresh || co.usesKeys
	}
	if refresh && (result.RequeueAfter == 0 || result.RequeueAfter > c.keyRefresh()) {
		result.RequeueAfter = c.keyRefresh()
	}
	// A kind not served yet may come (an API service back, a CRD established after its watch
	// event): look again.
	if len(notIntercepted) > 0 && (result.RequeueAfter == 0 || result.RequeueAfter > reresolve) {
		result.RequeueAfter = reresolve
	}
	return result, errors.Join(statusErrs...)
}

// recordCompileErrors sets the compile-error gauge: one series per ClusterPolicy, one for every
// namespaced object together, so that tenants cannot grow the label set.
func (c *PolicyController) recordCompileErrors() {
	if c.Metrics == nil {
		return
	}
	counts := map[[2]string]int{}
	for _, co := range c.compiled {
		key := [2]string{co.kind, co.name}
		if co.kind != "ClusterPolicy" {
			key = [2]string{co.kind, metrics.Namespaced}
		}
		counts[key] += len(co.errs)
	}
	c.Metrics.CompileErrors.Reset()
	for key, n := range counts {
		c.Metrics.CompileErrors.WithLabelValues(key[0], key[1]).Set(float64(n))
	}
}

func (c *PolicyController) keyRefresh() time.Duration {
	if c.KeyRefresh > 0 {
		return c.KeyRefresh
	}
	return time.Minute
}

// usesSecretKeys reports whether a policy reads verification keys from Secrets.
func usesSecretKeys(spec *v1alpha1.PolicySpec) bool {
	for _, r := range spec.Rules {
		if r.VerifyImages == nil {
			continue
		}
		for _, k := range r.VerifyImages.Keys {
			if k.SecretRef != nil {
				return true
			}
		}
	}
	return false
}

// compile returns the cached result for this generation, or compiles it. A policy with keys in
// Secrets is recompiled once its result is older than KeyRefresh, so a rotated key takes effect.
func (c *PolicyController) compile(obj client.Object, kind, name string, usesKeys bool, f func() (*policies.CompiledPolicy, *policies.CompiledException, error)) *compiledObject {
	if co, ok := c.compiled[obj.GetUID()]; ok && co.generation == obj.GetGeneration() && (!usesKeys || time.Since(co.compiledAt) < c.keyRefresh()) {
		return co
	}
	co := &compiledObject{generation: obj.GetGeneration(), compiledAt: time.Now(), usesKeys: usesKeys, kind: kind, name: name}
	var err error
	co.policy, co.exception, err = f()
	if err != nil {
		var ce *policies.CompileError
		if errors.As(err, &ce) {
			co.errs = fieldErrorStrings(ce.Errs)
		} else {
			co.errs = []string{err.Error()}
		}
		co.errs = boundErrors(co.errs)
		// A policy that was enforced stays enforced at its last good generation: a key Secret
		// deleted, a transient read error or an edit the policy webhook did not see must not
		// switch it off. Its status says it is degraded.
		if prev, ok := c.compiled[obj.GetUID()]; ok && prev.policy != nil {
			co.policy, co.lastGood = prev.policy, prev.generation
			if prev.lastGood != 0 {
				co.lastGood = prev.lastGood
			}
		}
	}
	c.compiled[obj.GetUID()] = co
	return co
}

// Status bounds: errors quote what a tenant wrote (an expression is up to 5,000 characters), and a
// status must stay well within an object's size limit.
const (
	maxStatusErrors     = 32
	maxStatusErrorBytes = 1 << 10
	maxConditionMessage = 16 << 10 // the API allows 32768
)

// boundErrors keeps the first maxStatusErrors errors, each cut at maxStatusErrorBytes, and says
// how many were left out.
func boundErrors(errs []string) []string {
	out := make([]string, 0, min(len(errs), maxStatusErrors+1))
	for i, e := range errs {
		if i == maxStatusErrors {
			out = append(out, fmt.Sprintf("… and %d more errors", len(errs)-i))
			break
		}
		out = append(out, policies.Truncate(e, maxStatusErrorBytes))
	}
	return out
}

func (c *PolicyController) writeStatus(ctx context.Context, obj client.Object, conds *[]metav1.Condition, observed *int64, statusErrs *[]string, co *compiledObject) error {
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Compiled", Message: "the policy is compiled and enforced", ObservedGeneration: co.generation}
	errs := co.errs
	var degraded *metav1.Condition
	switch {
	case len(co.errs) > 0 && co.lastGood != 0 && co.overBudget == "":
		cond.Reason = "LastGoodGeneration"
		cond.Message = fmt.Sprintf("generation %d is enforced: generation %d does not compile (see the Degraded condition)", co.lastGood, co.generation)
		degraded = &metav1.Condition{Type: ConditionDegraded, Status: metav1.ConditionTrue, Reason: "CompileError", ObservedGeneration: co.generation,
			Message: policies.Truncate(fmt.Sprintf("%d compile error(s) in generation %d; generation %d stays in force until it compiles: %s",
				len(co.errs), co.generation, co.lastGood, strings.Join(co.errs, "; ")), maxConditionMessage)}
	case len(co.errs) > 0:
		cond = metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "CompileError",
			Message: fmt.Sprintf("%d compile error(s), the policy is not enforced: %s", len(co.errs), strings.Join(co.errs, "; ")), ObservedGeneration: co.generation}
	case co.overBudget != "":
		cond = metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "OverBudget",
			Message: "the policy is not enforced, its namespace is over budget: " + co.overBudget + "; the namespace's older Policies stay enforced", ObservedGeneration: co.generation}
		errs = []string{"over budget: " + co.overBudget}
	}
	cond.Message = policies.Truncate(cond.Message, maxConditionMessage)
	intercepted := c.interceptedCondition(co)
	return c.patchStatus(ctx, obj, func() bool {
		changed := apimeta.SetStatusCondition(conds, cond)
		if intercepted != nil {
			changed = apimeta.SetStatusCondition(conds, *intercepted) || changed
		} else {
			changed = apimeta.RemoveStatusCondition(conds, ConditionIntercepted) || changed
		}
		if degraded != nil {
			changed = apimeta.SetStatusCondition(conds, *degraded) || changed
		} else {
			changed = apimeta.RemoveStatusCondition(conds, ConditionDegraded) || changed
		}
		if *observed != co.generation {
			*observed, changed = co.generation, true
		}
		if !slices.Equal(*statusErrs, errs) {
			*statusErrs, changed = errs, true
		}
		return changed
	})
}

// interceptedCondition says whether the webhooks send an enforced policy all it matches; nil when
// the policy is not enforced or no Interceptor keeps the rules.
func (c *PolicyController) interceptedCondition(co *compiledObject) *metav1.Condition {
	if c.Interceptor == nil || co.policy == nil || co.overBudget != "" {
		return nil
	}
	cond := &metav1.Condition{Type: ConditionIntercepted, Status: metav1.ConditionTrue, Reason: "Intercepted", ObservedGeneration: co.generation,
		Message: "the webhooks send this policy every kind and operation it matches"}
	if problems := c.notIntercepted[co.policy.Name]; len(problems) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, "NotIntercepted"
		cond.Message = policies.Truncate("the cluster does not enforce all this policy matches, the rest is enforced: "+strings.Join(problems, "; "), maxConditionMessage)
	}
	return cond
}

func (c *PolicyController) writeExceptionStatus(ctx context.Context, x *v1alpha1.PolicyException, co *compiledObject, now time.Time) error {
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Active", ObservedGeneration: co.generation}
	switch {
	case co.overBudget != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "OverBudget", "the exception does not apply, its namespace is over budget: "+co.overBudget
	case len(co.errs) > 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "CompileError", strings.Join(co.errs, "; ")
	case !now.Before(co.exception.Expires()):
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Expired", "the exception expired at "+co.exception.Expires().UTC().Format(time.RFC3339)
	default:
		cond.Message = "the exception applies until " + co.exception.Expires().UTC().Format(time.RFC3339)
	}
	if co.exception != nil && co.exception.Capped {
		cond.Message += " (the end of its maximum lifetime, --max-exception-lifetime, before " + x.Spec.Expires.UTC().Format(time.RFC3339) + ")"
	}
	if co.exception != nil && !co.exception.ClusterPolicies {
		cond.Message += "; it exempts only from the Policies of its namespace: exceptions to ClusterPolicies are honoured only in the exception namespaces (--exception-namespaces)"
	}
	cond.Message = policies.Truncate(cond.Message, maxConditionMessage)
	return c.patchStatus(ctx, x, func() bool {
		changed := apimeta.SetStatusCondition(&x.Status.Conditions, cond)
		if x.Status.ObservedGeneration != co.generation {
			x.Status.ObservedGeneration, changed = co.generation, true
		}
		return changed
	})
}

// patchStatus applies mutate to obj's status and patches it when something changed; only the
// leader writes.
func (c *PolicyController) patchStatus(ctx context.Context, obj client.Object, mutate func() bool) error {
	if !c.isLeader() {
		return nil
	}
	base := obj.DeepCopyObject().(client.Object)
	if !mutate() {
		return nil
	}
	if err := c.Client.Status().Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("updating the status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}

func sortByName[T any](items []T, name func(T) string) {
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(name(a), name(b)) })
}
