package policies

import (
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/go-containerregistry/pkg/authn"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// Engine evaluates requests against a set of compiled policies and exceptions. It is immutable
// and safe for concurrent use; a policy change builds a new Engine.
//
// Policies and exceptions are indexed by namespace: a review looks at the ClusterPolicies and at
// its own namespace's Policies only, so however many Policies other tenants write, a review's
// work does not grow with them.
type Engine struct {
	cluster    []*CompiledPolicy            // ClusterPolicies, in order
	namespaced map[string][]*CompiledPolicy // namespace -> its Policies, in order
	exceptions map[string][]*CompiledException
	acrossNs   []*CompiledException // exceptions that exempt beyond their own namespace
	nsCost     map[string]uint64    // namespace -> the estimated cost of its Policies
	now        func() time.Time
}

// NewEngine returns an engine over the compiled policies and exceptions, each evaluated in the
// order given (ClusterPolicies before a namespace's Policies). now tells the time for exception
// expiry; nil means time.Now.
func NewEngine(policies []*CompiledPolicy, exceptions []*CompiledException, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	e := &Engine{namespaced: map[string][]*CompiledPolicy{}, exceptions: map[string][]*CompiledException{}, nsCost: map[string]uint64{}, now: now}
	for _, p := range policies {
		if p.Namespace == "" {
			e.cluster = append(e.cluster, p)
		} else {
			e.namespaced[p.Namespace] = append(e.namespaced[p.Namespace], p)
			e.nsCost[p.Namespace] = addCost(e.nsCost[p.Namespace], p.cost)
		}
	}
	for _, x := range exceptions {
		if x.acrossNamespaces {
			e.acrossNs = append(e.acrossNs, x)
		} else {
			e.exceptions[x.Namespace] = append(e.exceptions[x.Namespace], x)
		}
	}
	return e
}

// NamespaceCost is the estimated CEL cost of namespace ns's own Policies together (see
// EstimateSize): what judging one of its objects may cost beyond the ClusterPolicies.
func (e *Engine) NamespaceCost(ns string) uint64 { return e.nsCost[ns] }

// Policies yields every policy of the engine: the ClusterPolicies, then the Policies by
// namespace.
func (e *Engine) Policies() iter.Seq[*CompiledPolicy] {
	return func(yield func(*CompiledPolicy) bool) {
		for _, p := range e.cluster {
			if !yield(p) {
				return
			}
		}
		for _, ns := range slices.Sorted(maps.Keys(e.namespaced)) {
			for _, p := range e.namespaced[ns] {
				if !yield(p) {
					return
				}
			}
		}
	}
}

// SameExceptions reports whether o has the very exceptions of e: a policy change that leaves
// them alone needs only the kinds its policies match judged again.
func (e *Engine) SameExceptions(o *Engine) bool {
	if len(e.acrossNs) != len(o.acrossNs) || len(e.exceptions) != len(o.exceptions) || !slices.Equal(e.acrossNs, o.acrossNs) {
		return false
	}
	for ns, xs := range e.exceptions {
		if !slices.Equal(xs, o.exceptions[ns]) {
			return false
		}
	}
	return true
}

// policiesFor yields the policies that may apply in namespace ns, in order: every ClusterPolicy,
// then the namespace's Policies.
func (e *Engine) policiesFor(ns string) iter.Seq[*CompiledPolicy] {
	return func(yield func(*CompiledPolicy) bool) {
		for _, list := range [2][]*CompiledPolicy{e.cluster, e.namespaced[ns]} {
			for _, p := range list {
				if !yield(p) {
					return
				}
			}
		}
	}
}

// Request is one admission request, or one manifest seen as a CREATE.
type Request struct {
	Operation v1alpha1.Operation
	// Object is the new object; nil on DELETE.
	Object *Resource
	// OldObject is the existing object on UPDATE and DELETE.
	OldObject *Resource
	// Namespace is the namespace of the object when known; offline, its labels are taken to be
	// the kubernetes.io/metadata.name label alone.
	Namespace *corev1.Namespace
	// Resource, SubResource, UserInfo, DryRun and Options are what CEL's request variable shows.
	Resource    metav1.GroupVersionResource
	SubResource string
	UserInfo    authenticationv1.UserInfo
	DryRun      bool
	// AuditOnly turns every Deny into Audit: the cluster-wide dry run. Nothing is denied or
	// mutated; results are recorded.
	AuditOnly bool
	// Background: the object is judged as it stands, outside any request (the audit scan), as
	// a CREATE of it would be. Rules that read what only a request has (oldObject,
	// request.userInfo) are skipped, saying so.
	Background bool
	// Keychain has the registry credentials for image verification (the pod's pull secrets and
	// service account in the webhook); nil is the default keychain (~/.docker/config.json).
	Keychain authn.Keychain
	// Results, when not nil, is a slice of results its caller is done with: Evaluate clears it
	// and appends to it, so that a caller judging one object after another (the audit) makes no
	// garbage of each one's results. nil: Evaluate allocates them.
	Results []Result
}

// Release releases the request's objects (Resource.Release): call it once the engine's calls for
// the request have returned.
func (r *Request) Release() {
	r.Object.Release()
	r.OldObject.Release()
}

// reuse returns buf emptied, cleared (so that it keeps nothing of its last results alive) and
// with room for n results; a new slice when buf is nil.
func reuse(buf []Result, n int) []Result {
	if buf == nil {
		return make([]Result, 0, n)
	}
	clear(buf[:cap(buf)])
	return slices.Grow(buf[:0], n)
}

// subject is the object the request is about.
func (r *Request) subject() *Resource {
	if r.Object != nil {
		return r.Object
	}
	return r.OldObject
}

// input is what a rule evaluates: one request, with lazily built CEL values.
type input struct {
	ctx       context.Context
	req       *Request
	res       *Resource
	reqVal    ref.Val
	nsVal     ref.Val
	nsLabels  labels.Set
	unchanged *bool
	vars      []*celVars // the variables of the policies read so far, each evaluated lazily
	act       activation // the CEL variables of the rules with neither params nor variables
}

// activation is what binds the CEL variables of a rule of scope s (nil: neither params nor
// variables) for this request: one per scope, kept, as handing a program a new one would
// allocate it on every rule's evaluation. The input's own is bound to it here rather than where
// the input is made, so that every input has it, however it was made.
func (in *input) activation(s *celScope) *activation {
	if s == nil {
		in.act.in = in
		return &in.act
	}
	return &in.scopeVars(s).act
}

// variables returns the variables of the policy whose scope is s, for this request. A request's
// rules are evaluated policy by policy, so the last policy's are looked at first.
func (in *input) variables(s *celScope) ref.Val { return in.scopeVars(s) }

// scopeVars are the variables of scope s for this request, made on the first call.
func (in *input) scopeVars(s *celScope) *celVars {
	for i := len(in.vars) - 1; i >= 0; i-- {
		if in.vars[i].scope == s {
			return in.vars[i]
		}
	}
	v := newCELVars(s, in)
	in.vars = append(in.vars, v)
	return v
}

// podUnchanged reports whether an UPDATE leaves the pod's spec and annotations as they were.
func (in *input) podUnchanged() bool {
	if in.unchanged == nil {
		old, cur := in.req.OldObject, in.req.Object
		same := in.req.Operation == v1alpha1.Update && old != nil && cur != nil && old.Pod != nil && cur.Pod != nil &&
			equality.Semantic.DeepEqual(old.Pod.Spec, cur.Pod.Spec) &&
			equality.Semantic.DeepEqual(old.Pod.Meta.Annotations, cur.Pod.Meta.Annotations)
		in.unchanged = &same
	}
	return *in.unchanged
}

// bounds are the jsonBounds of the request's objects as evaluation sees them; unknownBounds when
// either's are not known.
func (in *input) bounds() jsonBounds {
	var b jsonBounds
	for _, r := range []*Resource{in.req.Object, in.req.OldObject} {
		switch {
		case r == nil:
		case r.bounds == jsonBounds{}:
			return unknownBounds
		default:
			b = b.union(r.bounds)
		}
	}
	return b.floored()
}

func (in *input) requestValue() ref.Val {
	if in.reqVal == nil {
		in.reqVal = in.res.arena().toVal(in.req.admissionRequest(in.res))
	}
	return in.reqVal
}

func (in *input) namespaceValue() ref.Val {
	if in.nsVal == nil {
		switch {
		case in.req.Namespace != nil:
			in.nsVal = in.res.arena().toVal(in.req.Namespace)
		case in.res.Meta.GetNamespace() != "":
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: in.res.Meta.GetNamespace(), Labels: in.nsLabels}}
			in.nsVal = in.res.arena().toVal(ns)
		default:
			in.nsVal = types.NullValue
		}
	}
	return in.nsVal
}

// admissionRequest is the request as ValidatingAdmissionPolicy's request variable shows it.
func (r *Request) admissionRequest(res *Resource) *admissionv1.AdmissionRequest {
	gvk := metav1.GroupVersionKind{Group: res.GVK.Group, Version: res.GVK.Version, Kind: res.GVK.Kind}
	gvr := r.Resource
	if gvr.Resource == "" {
		plural, _ := meta.UnsafeGuessKindToResource(res.GVK)
		gvr = metav1.GroupVersionResource{Group: plural.Group, Version: plural.Version, Resource: plural.Resource}
	}
	dryRun := r.DryRun
	return &admissionv1.AdmissionRequest{
		Kind: gvk, Resource: gvr, SubResource: r.SubResource,
		RequestKind: &gvk, RequestResource: &gvr, RequestSubResource: r.SubResource,
		Name: res.Meta.GetName(), Namespace: res.Meta.GetNamespace(),
		Operation: admissionv1.Operation(r.Operation), UserInfo: r.UserInfo, DryRun: &dryRun,
	}
}

// Evaluate returns one result for every validating rule of every policy that matches the
// request, in policy order. A request no policy matches has no results.
func (e *Engine) Evaluate(ctx context.Context, req *Request) []Result {
	res := req.subject()
	if res == nil {
		return nil
	}
	ns := res.Meta.GetNamespace()
	in := &input{ctx: ctx, req: req, res: res, nsLabels: namespaceLabels(req.Namespace, ns)}
	target := res.Ref()
	// The policies that apply first, so the results are allocated once, at their number.
	var buf [16]*CompiledPolicy
	applying, n := buf[:0], 0
	for p := range e.policiesFor(ns) {
		if p.applies(req, res, in.nsLabels) {
			applying = append(applying, p)
			n += len(p.rules)
		}
	}
	if n == 0 {
		return nil
	}
	results := reuse(req.Results, n)
	for _, p := range applying {
		action := p.enforcementFor(req, res, in.nsLabels)
		exemptions := e.exemptionsFor(p, req, res, in.nsLabels)
		for _, r := range p.rules {
			if r.eval == nil {
				continue // a mutation: reported by Mutate
			}
			result := Result{Policy: p.Name, Rule: r.name, Resource: target, Action: action, Namespaced: p.Namespace != ""}
			if r.podOnly && in.podUnchanged() {
				// As Pod Security Admission does: an update that leaves the pod as it was (labels,
				// owner references, status-like metadata) is not judged again, so controllers can
				// still manage pods admitted before a policy was tightened.
				result.Result, result.Message = Skip, "the update does not change the pod"
				results = append(results, result)
				continue
			}
			if x := exempting(exemptions, r.name); x != nil {
				result.Result, result.Message = Skip, exemptionMessage(x)
				results = append(results, result)
				continue
			}
			if why := backgroundSkip(req, r.eval); why != "" {
				result.Result, result.Message = Skip, why
				results = append(results, result)
				continue
			}
			v := evaluateRule(r.eval, in)
			result.Result, result.Message = v.outcome, Truncate(v.message, MaxMessageBytes)
			if v.outcome == Error && p.failurePolicy == v1alpha1.Fail {
				// failurePolicy Fail: an evaluation error fails the rule, as the webhook rejects.
				result.Result = Fail
				result.Message = Truncate("evaluation error (failurePolicy Fail): "+v.message, MaxMessageBytes)
			}
			results = append(results, result)
		}
	}
	return results
}

// backgroundSkipper is a rule that may read what only an admission request has.
type backgroundSkipper interface {
	requestTimeNeeds() []string
}

// backgroundSkip says why a background request skips a rule: what it reads that only an
// admission request has; "" when the rule can be judged.
func backgroundSkip(req *Request, e evaluator) string {
	if !req.Background {
		return ""
	}
	if s, ok := e.(backgroundSkipper); ok {
		if needs := s.requestTimeNeeds(); len(needs) > 0 {
			return "not judged in the background: the rule reads " + strings.Join(needs, " and ") + ", which only an admission request has"
		}
	}
	return ""
}

// evaluateRule evaluates one rule, or reports the deadline when the review has run out of time:
// every rule past the deadline is an evaluation error, for its policy's failurePolicy to decide.
func evaluateRule(e evaluator, in *input) verdict {
	if err := in.ctx.Err(); err != nil {
		return evalError(fmt.Errorf("not evaluated: %w", context.Cause(in.ctx)))
	}
	return e.evaluate(in)
}

func exemptionMessage(x *CompiledException) string {
	return fmt.Sprintf("exempted by PolicyException %s (owner %s, expires %s): %s", x.Name, x.owner, x.expires.UTC().Format(time.RFC3339), x.reason)
}

func (p *CompiledPolicy) applies(req *Request, res *Resource, nsLabels labels.Set) bool {
	if p.Namespace != "" && res.Meta.GetNamespace() != p.Namespace {
		return false
	}
	if !p.match.matches(req, res, nsLabels) {
		return false
	}
	return p.exclude == nil || !p.exclude.matches(req, res, nsLabels)
}

func (p *CompiledPolicy) enforcementFor(req *Request, res *Resource, nsLabels labels.Set) v1alpha1.Enforcement {
	e := p.enforcement
	for _, o := range p.overrides {
		if res.Meta.GetNamespace() != "" && o.match.matches(req, res, nsLabels) {
			e = o.enforcement
			break
		}
	}
	if req.AuditOnly && e == v1alpha1.Deny {
		return v1alpha1.Audit
	}
	return e
}

// exemption is an exception in force that matches a request, and the rules of one policy it
// exempts the request from (empty: every rule).
type exemption struct {
	x     *CompiledException
	rules sets.Set[string]
}

// exemptionsFor returns, in order, the exceptions that exempt the request from rules of p:
// matched once per policy, not once per rule.
func (e *Engine) exemptionsFor(p *CompiledPolicy, req *Request, res *Resource, nsLabels labels.Set) []exemption {
	if len(e.exceptions) == 0 && len(e.acrossNs) == 0 {
		return nil
	}
	now := e.now()
	ns := res.Meta.GetNamespace()
	var out []exemption
	for _, list := range [][]*CompiledException{e.exceptions[ns], e.acrossNs} {
		for _, x := range list {
			if !now.Before(x.expires) || !x.reaches(p, ns) {
				continue
			}
			rules, ok := x.rulesOf(p)
			if ok && x.match.matches(req, res, nsLabels) {
				out = append(out, exemption{x: x, rules: rules})
			}
		}
	}
	return out
}

// exempting returns the first exception that exempts the request from rule, or nil.
func exempting(exemptions []exemption, rule string) *CompiledException {
	for _, ex := range exemptions {
		if ex.rules.Len() == 0 || ex.rules.Has(rule) {
			return ex.x
		}
	}
	return nil
}
