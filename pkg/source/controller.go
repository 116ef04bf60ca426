package source

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

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
	// Leadership is read once: a replica that becomes leader in the middle of this build neither
	// syncs the rules nor says a policy is enforced; its Lead starts a build of its own.
	b := &build{ctx: ctx, now: time.Now, leading: c.isLeader(), seen: map[types.UID]bool{}, charges: map[types.UID]charge{}, counted: map[types.UID]string{}}
	if c.Now != nil {
		b.now = c.Now
	}
	c.buildClusterPolicies(b, cps.Items)
	c.buildPolicies(b, ps.Items)
	// The policy webhook judges new Policies by this usage: it is in place before any status
	// says a Policy is enforced.
	c.usage.Store(&b.charges)
	c.buildExceptions(b, xs.Items)
	c.exceptionUsage.Store(&b.counted)
	for uid := range c.compiled {
		if !b.seen[uid] {
			delete(c.compiled, uid)
		}
	}
	c.recordCompileErrors()
	compiled := append(b.cluster, b.namespaced...)
	c.Engines.Store(policies.NewEngine(compiled, b.exceptions, c.Now))
	// Then the webhooks' rules: a policy is enforced once the API server sends it its kinds.
	if b.leading {
		var err error
		if b.notIntercepted, err = c.syncWebhooks(ctx, compiled); err != nil {
			return reconcile.Result{}, err
		}
	}
	// Status last: what it says is enforced, is.
	var statusErrs []error
	for _, write := range b.pending {
		statusErrs = append(statusErrs, write())
	}
	if c.Metrics != nil {
		c.Metrics.Policies.Set(float64(len(compiled)))
	}
	return c.requeue(b), errors.Join(statusErrs...)
}

// syncWebhooks, on the leader, brings the webhooks' rules to what compiled needs, and returns
// what each policy cannot have intercepted.
func (c *PolicyController) syncWebhooks(ctx context.Context, compiled []*policies.CompiledPolicy) (map[string][]string, error) {
	if c.Interceptor == nil {
		return nil, nil
	}
	needs := make([]intercept.Need, 0, len(compiled))
	for _, p := range compiled {
		needs = append(needs, intercept.NeedOf(p))
	}
	notIntercepted, err := c.Interceptor.Sync(ctx, needs)
	if err != nil {
		return nil, fmt.Errorf("keeping the webhook rules: %w", err)
	}
	return notIntercepted, nil
}

// requeue says when to build again without a change: when an exception expires (to say so in
// its status), when keys in Secrets are due for a refresh, and while a kind cannot be resolved
// (an API service back, a CRD established after its watch event).
func (c *PolicyController) requeue(b *build) reconcile.Result {
	var after time.Duration
	sooner := func(d time.Duration) {
		if after == 0 || d < after {
			after = d
		}
	}
	if !b.nextExpiry.IsZero() {
		sooner(b.nextExpiry.Sub(b.now()) + time.Second)
	}
	for _, co := range c.compiled {
		if co.usesKeys {
			sooner(c.keyRefresh())
			break
		}
	}
	if len(b.notIntercepted) > 0 {
		sooner(reresolve)
	}
	return reconcile.Result{RequeueAfter: after}
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
		if co.kind != policies.KindClusterPolicy {
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

// usesSecretKeys reports whether a policy reads verification keys from Secrets, or a trusted
// root from a ConfigMap: what is read is refreshed every KeyRefresh.
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
		if tr := r.VerifyImages.TrustedRoot; tr != nil && tr.ConfigMapRef != nil {
			return true
		}
	}
	return false
}

// compile returns the cached result for this generation, or compiles it. A policy with keys in
// Secrets is recompiled once its result is older than KeyRefresh, so a rotated key takes effect.
func (c *PolicyController) compile(obj policies.Object, usesKeys bool) *compiledObject {
	if co, ok := c.compiled[obj.GetUID()]; ok && co.generation == obj.GetGeneration() && (!usesKeys || time.Since(co.compiledAt) < c.keyRefresh()) {
		return co
	}
	name := obj.GetName()
	if obj.GetNamespace() != "" {
		name = obj.GetNamespace() + "/" + name
	}
	co := &compiledObject{generation: obj.GetGeneration(), compiledAt: time.Now(), usesKeys: usesKeys, kind: policies.KindOf(obj), name: name}
	var err error
	co.policy, co.exception, err = c.Compiler.Compile(obj)
	if err != nil {
		var ce *policies.CompileError
		if errors.As(err, &ce) {
			co.errs = policies.FieldErrorStrings(ce.Errs)
		} else {
			co.errs = []string{err.Error()}
		}
		co.errs = policies.BoundErrors(co.errs)
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

func sortByName[T any](items []T, name func(T) string) {
	slices.SortFunc(items, func(a, b T) int { return strings.Compare(name(a), name(b)) })
}
