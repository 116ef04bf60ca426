package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

// Compiler compiles policies. It holds what is costly to build (the CEL environment, the Pod
// Security registry) and is safe for concurrent use.
type Compiler struct {
	env *cel.Env
	// envs are the environments of policies' scopes, shared by the policies that declare the
	// same params and variables (envs.go).
	envs         *interner[envKey, cel.Env]
	pss          *pssRegistry
	verification VerificationOptions
	exceptions   ExceptionOptions
	// exceptionNamespaces are ExceptionOptions.ClusterPolicyNamespaces compiled; nil: every one.
	exceptionNamespaces []glob
	// checkOnly: compile to find errors and estimate costs, for the admission of policies; keys
	// in Secrets are not read, and what is compiled is not for evaluation.
	checkOnly bool
	// scope is the params and variables of the policy being compiled, whose CEL rules compile in
	// env extended with them; set on a copy of the compiler, for one policy.
	scope *celScope
}

// Checker returns a compiler that finds what is wrong with a policy without evaluating it: it
// reads no Secret (a key's Secret may come after its policy, and whether it exists is not the
// writer's to learn), and what it compiles must not be evaluated.
func (c *Compiler) Checker() *Compiler {
	cc := *c
	cc.checkOnly = true
	return &cc
}

// ExceptionOptions govern PolicyExceptions: how long they may last, and where exceptions to
// ClusterPolicies are honoured.
type ExceptionOptions struct {
	// MaxLifetime bounds how long after its creation an exception may expire; zero: no bound.
	MaxLifetime time.Duration
	// ClusterPolicyNamespaces are globs of the namespaces whose exceptions are honoured for
	// ClusterPolicies; such an exception exempts resources in every namespace its match selects
	// (its own when the match names none). An exception anywhere else exempts only from the
	// Policies of its own namespace. Nil honours every namespace's exceptions, for its own
	// namespace, as a library user without tenants expects.
	ClusterPolicyNamespaces []string
}

// CompilerOption configures a Compiler.
type CompilerOption func(*Compiler)

// WithVerification sets how verifyImages rules reach registries and cache verdicts.
func WithVerification(o VerificationOptions) CompilerOption {
	return func(c *Compiler) { c.verification = o }
}

// WithExceptions sets how PolicyExceptions are governed.
func WithExceptions(o ExceptionOptions) CompilerOption {
	return func(c *Compiler) { c.exceptions = o }
}

// NewCompiler builds a compiler.
func NewCompiler(opts ...CompilerOption) (*Compiler, error) {
	env, err := newCELEnv()
	if err != nil {
		return nil, err
	}
	c := &Compiler{env: env, envs: newInterner[envKey, cel.Env](), pss: newPSSRegistry(), verification: VerificationOptions{Timeout: 5 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	if c.exceptions.ClusterPolicyNamespaces != nil {
		c.exceptionNamespaces = []glob{}
		for _, ns := range c.exceptions.ClusterPolicyNamespaces {
			g, err := compileGlob(ns)
			if err != nil {
				return nil, fmt.Errorf("exception namespace %q: %w", ns, err)
			}
			c.exceptionNamespaces = append(c.exceptionNamespaces, g)
		}
	}
	return c, nil
}

// CompileError lists every problem found in one policy or exception, each with its field path.
type CompileError struct {
	// Object is `ClusterPolicy "name"`, `Policy "ns/name"` or `PolicyException "ns/name"`.
	Object string
	Errs   field.ErrorList
}

// Error puts the object on the first line and each field error on its own indented line.
func (e *CompileError) Error() string {
	var b strings.Builder
	b.WriteString(e.Object + ":")
	for _, fe := range e.Errs {
		b.WriteString("\n  " + strings.ReplaceAll(fe.Error(), "\n", "\n    "))
	}
	return b.String()
}

// evaluator is a compiled rule type.
type evaluator interface {
	evaluate(in *input) verdict
}

type compiledRule struct {
	name    string
	eval    evaluator      // validates, when set
	mutator mutate.Mutator // mutates, when set (verifyImages does both)
	podOnly bool           // judges the pod only (see ruleType)
}

// CompiledPolicy is a ClusterPolicy or Policy ready to evaluate.
type CompiledPolicy struct {
	// Name is the name for a ClusterPolicy and "namespace/name" for a Policy.
	Name string
	// Namespace is empty for a ClusterPolicy; a Policy applies only in its namespace.
	Namespace     string
	localName     string // metadata.name, as exceptions name the policy
	enforcement   v1alpha1.Enforcement
	overrides     []enforcementOverride
	failurePolicy v1alpha1.FailurePolicy
	match         *matcher
	exclude       *matcher // nil when not set
	rules         []compiledRule
	mutating      bool   // has a rule with a mutator: Mutate looks at no other policy
	cost          uint64 // estimated CEL cost of every rule together
	// Category and Severity are what reports say of the policy's results, from its annotations
	// CategoryAnnotation and SeverityAnnotation.
	Category, Severity string
	// Title and Description say what the policy is for and what to change, from its annotations
	// TitleAnnotation and DescriptionAnnotation; SARIF rules carry them.
	Title, Description string
	// Warnings are what may be wrong with the policy but cannot be known when it compiles: a
	// kind no built-in group has, which may be a custom resource's. Each names its field.
	Warnings []string
}

// Cost is the estimated cost of the policy's CEL expressions together (see EstimateSize).
func (p *CompiledPolicy) Cost() uint64 { return p.cost }

// LocalName is the policy's metadata.name: Name without the namespace of a Policy.
func (p *CompiledPolicy) LocalName() string { return p.localName }

// RuleCount is the number of rules of the policy.
func (p *CompiledPolicy) RuleCount() int { return len(p.rules) }

// RuleNames are the names of the policy's rules, in order.
func (p *CompiledPolicy) RuleNames() []string {
	names := make([]string, len(p.rules))
	for i, r := range p.rules {
		names[i] = r.name
	}
	return names
}

// HasRule reports whether the policy has a rule of that name.
func (p *CompiledPolicy) HasRule(name string) bool {
	return slices.ContainsFunc(p.rules, func(r compiledRule) bool { return r.name == name })
}

type enforcementOverride struct {
	match       *matcher
	enforcement v1alpha1.Enforcement
}

// CompileClusterPolicy compiles a ClusterPolicy.
func (c *Compiler) CompileClusterPolicy(p *v1alpha1.ClusterPolicy) (*CompiledPolicy, error) {
	return c.compile(fmt.Sprintf("ClusterPolicy %q", p.Name), p.Name, "", &p.ObjectMeta, &p.Spec)
}

// CompilePolicy compiles a namespaced Policy.
func (c *Compiler) CompilePolicy(p *v1alpha1.Policy) (*CompiledPolicy, error) {
	if p.Namespace == "" {
		return nil, &CompileError{Object: fmt.Sprintf("Policy %q", p.Name), Errs: field.ErrorList{field.Required(field.NewPath("metadata", "namespace"), "a Policy is namespaced")}}
	}
	name := p.Namespace + "/" + p.Name
	return c.compile(fmt.Sprintf("Policy %q", name), name, p.Namespace, &p.ObjectMeta, &p.Spec)
}

// plansUntracked reports whether the CEL expressions of a policy in namespace ("": a
// ClusterPolicy) get untracked twins (untracked.go): a ClusterPolicy's that are evaluated, not a
// tenant's. A twin is a second program (about 23 KiB: cel-go gives each its own function table;
// with params or variables, a second environment too), and a tenant's policies' memory is
// bounded by docs/security.md's budget.
func (c *Compiler) plansUntracked(namespace string) bool { return !c.checkOnly && namespace == "" }

// compile compiles a policy's spec; name is how results name it ("namespace/name" for a
// Policy).
func (c *Compiler) compile(object, name, namespace string, meta *metav1.ObjectMeta, spec *v1alpha1.PolicySpec) (*CompiledPolicy, error) {
	var errs field.ErrorList
	path := field.NewPath("spec")
	localName := meta.Name
	if localName == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), ""))
	}
	// Sizes first: an oversized policy is refused before any compile work.
	if e := checkPolicyBounds(spec, path); len(e) > 0 {
		return nil, &CompileError{Object: object, Errs: append(errs, e...)}
	}
	cp := &CompiledPolicy{Name: name, Namespace: namespace, localName: localName}
	cp.Category, cp.Severity, errs = compileReportAnnotations(meta.Annotations, errs)
	cp.Title, cp.Description = meta.Annotations[TitleAnnotation], meta.Annotations[DescriptionAnnotation]

	var e field.ErrorList
	cp.enforcement, e = compileEnforcement(spec.Enforcement, v1alpha1.Audit, path.Child("enforcement"))
	errs = append(errs, e...)
	for i := range spec.EnforcementOverrides {
		o := &spec.EnforcementOverrides[i]
		p := path.Child("enforcementOverrides").Index(i)
		if len(o.Namespaces) == 0 && o.NamespaceSelector == nil {
			errs = append(errs, field.Required(p, "an override needs namespaces or namespaceSelector"))
		}
		m, e := compileMatch(&v1alpha1.MatchResources{Namespaces: o.Namespaces, NamespaceSelector: o.NamespaceSelector}, false, nil, p)
		errs = append(errs, e...)
		enf, e := compileEnforcement(o.Enforcement, "", p.Child("enforcement"))
		errs = append(errs, e...)
		cp.overrides = append(cp.overrides, enforcementOverride{match: m, enforcement: enf})
	}
	switch spec.FailurePolicy {
	case "":
		cp.failurePolicy = v1alpha1.Fail
	case v1alpha1.Fail, v1alpha1.Ignore:
		cp.failurePolicy = spec.FailurePolicy
	default:
		errs = append(errs, field.NotSupported(path.Child("failurePolicy"), spec.FailurePolicy, []string{"Fail", "Ignore"}))
	}
	podControllers := spec.PodControllers == nil || *spec.PodControllers
	cp.match, e = compileMatch(&spec.Match, podControllers, []v1alpha1.Operation{v1alpha1.Create, v1alpha1.Update}, path.Child("match"))
	errs = append(errs, e...)
	cp.Warnings = append(cp.Warnings, cp.match.warnings...)
	if spec.Exclude != nil {
		cp.exclude, e = compileMatch(spec.Exclude, podControllers, nil, path.Child("exclude"))
		errs = append(errs, e...)
		cp.Warnings = append(cp.Warnings, cp.exclude.warnings...)
		if cp.exclude.empty {
			cp.exclude = nil
		}
	}
	if len(spec.Rules) == 0 {
		errs = append(errs, field.Required(path.Child("rules"), "a policy needs at least one rule"))
	}
	env, scope, cost, e := c.compileScope(spec, c.plansUntracked(namespace), path)
	errs = append(errs, e...)
	if env == nil {
		return nil, &CompileError{Object: object, Errs: errs} // the params are not usable
	}
	cp.cost = cost
	pc := *c
	pc.env, pc.scope = env, scope
	seen := sets.New[string]()
	for i := range spec.Rules {
		r, e := pc.compileRule(&spec.Rules[i], RulePath(path, i, spec.Rules[i].Name), seen, namespace)
		errs = append(errs, e...)
		if r != nil {
			cp.rules = append(cp.rules, *r)
			cp.mutating = cp.mutating || r.mutator != nil
			if cel, ok := r.eval.(*celRule); ok {
				cp.cost = addCost(cp.cost, cel.cost)
			}
		}
	}
	if cp.cost > MaxPolicyCost {
		errs = append(errs, field.Invalid(path.Child("rules"), FormatCost(cp.cost)+" (estimated cost)",
			fmt.Sprintf("the policy's CEL expressions are estimated to cost %s together, past the limit of %s per policy; split the policy or bound its loops", FormatCost(cp.cost), FormatCost(MaxPolicyCost))))
	}
	if len(errs) > 0 {
		return nil, &CompileError{Object: object, Errs: errs}
	}
	return cp, nil
}

func compileEnforcement(e, def v1alpha1.Enforcement, path *field.Path) (v1alpha1.Enforcement, field.ErrorList) {
	switch e {
	case "":
		if def == "" {
			return "", field.ErrorList{field.Required(path, "Deny, Warn or Audit")}
		}
		return def, nil
	case v1alpha1.Deny, v1alpha1.Warn, v1alpha1.Audit:
		return e, nil
	}
	return "", field.ErrorList{field.NotSupported(path, e, []string{"Deny", "Warn", "Audit"})}
}

// RulePath is the path of rule i of the spec at spec, named as its author wrote it when the name
// is a valid rule name: spec.rules[0] (no-latest). An error then says which rule without
// counting.
func RulePath(spec *field.Path, i int, name string) *field.Path {
	if name == "" || len(validation.IsDNS1123Label(name)) > 0 {
		return spec.Child("rules").Index(i)
	}
	return spec.Child(fmt.Sprintf("rules[%d] (%s)", i, name))
}

// compileRule compiles one rule of a policy; namespace is the namespace of a Policy, empty for
// a ClusterPolicy.
func (c *Compiler) compileRule(r *v1alpha1.Rule, path *field.Path, seen sets.Set[string], namespace string) (*compiledRule, field.ErrorList) {
	var errs field.ErrorList
	switch {
	case r.Name == "":
		errs = append(errs, field.Required(path.Child("name"), ""))
	case seen.Has(r.Name):
		errs = append(errs, field.Duplicate(path.Child("name"), r.Name))
	default:
		if msgs := validation.IsDNS1123Label(r.Name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Child("name"), r.Name, strings.Join(msgs, "; ")))
		}
	}
	seen.Insert(r.Name)

	var set []string
	var compiled *compiledRule
	for _, t := range ruleTypes {
		if !t.set(r) {
			continue
		}
		set = append(set, t.field)
		eval, mut, e := t.compile(c, r, path.Child(t.field), namespace)
		errs = append(errs, e...)
		if len(e) == 0 {
			compiled = &compiledRule{name: r.Name, eval: eval, mutator: mut, podOnly: t.podOnly}
		}
	}
	if len(set) != 1 {
		errs = append(errs, field.Invalid(path, strings.Join(set, ", "), exactlyOneRuleType))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return compiled, nil
}

// CompiledException is a PolicyException ready to apply.
type CompiledException struct {
	Name      string // namespace/name
	Namespace string
	// ClusterPolicies: the exception may exempt from ClusterPolicies (it lives in an exception
	// namespace); acrossNamespaces: it exempts in the namespaces its match selects.
	ClusterPolicies  bool
	acrossNamespaces bool
	// Capped: the exception asked to last longer than the maximum lifetime; it expires at the
	// maximum instead.
	Capped  bool
	owner   string
	reason  string
	expires time.Time
	targets map[string]sets.Set[string] // policy name -> rules (empty: all)
	match   *matcher
}

// CompileException compiles a PolicyException.
func (c *Compiler) CompileException(x *v1alpha1.PolicyException) (*CompiledException, error) {
	name := x.Namespace + "/" + x.Name
	var errs field.ErrorList
	path := field.NewPath("spec")
	if x.Namespace == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "namespace"), "a PolicyException is namespaced"))
	}
	if e := checkExceptionBounds(&x.Spec, path); len(e) > 0 {
		return nil, &CompileError{Object: fmt.Sprintf("PolicyException %q", name), Errs: append(errs, e...)}
	}
	if strings.TrimSpace(x.Spec.Owner) == "" {
		errs = append(errs, field.Required(path.Child("owner"), "who is accountable for the exception"))
	}
	if strings.TrimSpace(x.Spec.Reason) == "" {
		errs = append(errs, field.Required(path.Child("reason"), "why the exception exists"))
	}
	if x.Spec.Expires.IsZero() {
		errs = append(errs, field.Required(path.Child("expires"), "every exception expires"))
	}
	if len(x.Spec.Exceptions) == 0 {
		errs = append(errs, field.Required(path.Child("exceptions"), "name at least one policy"))
	}
	ce := &CompiledException{Name: name, Namespace: x.Namespace, owner: x.Spec.Owner, reason: x.Spec.Reason, expires: x.Spec.Expires.Time, targets: map[string]sets.Set[string]{}}
	for i, t := range x.Spec.Exceptions {
		if t.PolicyName == "" {
			errs = append(errs, field.Required(path.Child("exceptions").Index(i).Child("policyName"), ""))
			continue
		}
		ce.targets[t.PolicyName] = sets.New(t.RuleNames...)
	}
	// Past the maximum lifetime an exception no longer applies, whatever it says; the policy
	// webhook refuses such an exception at the door (ExceptionLifetime).
	if limit := c.exceptions.MaxLifetime; limit > 0 && !x.CreationTimestamp.IsZero() {
		if last := x.CreationTimestamp.Add(limit); ce.expires.After(last) {
			ce.expires, ce.Capped = last, true
		}
	}
	var e field.ErrorList
	ce.match, e = compileMatch(&x.Spec.Match, true, nil, path.Child("match"))
	errs = append(errs, e...)
	ce.ClusterPolicies = c.exceptionNamespaces == nil || matchAny(c.exceptionNamespaces, x.Namespace)
	ce.acrossNamespaces = c.exceptionNamespaces != nil && ce.ClusterPolicies &&
		(len(x.Spec.Match.Namespaces) > 0 || x.Spec.Match.NamespaceSelector != nil)
	if len(errs) > 0 {
		return nil, &CompileError{Object: fmt.Sprintf("PolicyException %q", name), Errs: errs}
	}
	return ce, nil
}

// ExceptionLifetime returns the error of an exception that would last longer than the maximum
// lifetime after its creation (now, when it is being created), or nil.
func (c *Compiler) ExceptionLifetime(x *v1alpha1.PolicyException, now time.Time) *field.Error {
	limit := c.exceptions.MaxLifetime
	created := x.CreationTimestamp.Time
	if created.IsZero() {
		created = now
	}
	if limit <= 0 || x.Spec.Expires.IsZero() || !x.Spec.Expires.After(created.Add(limit)) {
		return nil
	}
	return field.Invalid(field.NewPath("spec", "expires"), x.Spec.Expires.UTC().Format(time.RFC3339),
		fmt.Sprintf("must be at most %s after the exception's creation (%s): the maximum lifetime (--max-exception-lifetime); to renew, create a new exception",
			formatDays(limit), created.UTC().Format(time.RFC3339)))
}

// Expires is when the exception stops applying: its expiry, or the end of its maximum lifetime.
func (x *CompiledException) Expires() time.Time { return x.expires }

// formatDays writes a duration of whole days as "90d".
func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// reaches reports whether the exception may exempt a resource in namespace ns from policy p:
// from a Policy, only an exception of the Policy's namespace; from a ClusterPolicy, only one in
// an exception namespace, for resources of its own namespace or, when its match selects
// namespaces, of those.
func (x *CompiledException) reaches(p *CompiledPolicy, ns string) bool {
	if p.Namespace != "" {
		return x.Namespace == p.Namespace
	}
	return x.ClusterPolicies && (x.Namespace == ns || x.acrossNamespaces)
}

// rulesOf returns the rules of p the exception names (empty: every rule), and false when it
// does not name p.
func (x *CompiledException) rulesOf(p *CompiledPolicy) (sets.Set[string], bool) {
	if p.Namespace != "" && p.Namespace != x.Namespace {
		return nil, false
	}
	rules, ok := x.targets[p.localName]
	return rules, ok
}
