package policies

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/version"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/library"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// The variables CEL rules see: ValidatingAdmissionPolicy's, plus the pod of any pod-bearing kind.
const (
	varObject    = plugincel.ObjectVarName
	varOldObject = plugincel.OldObjectVarName
	varRequest   = plugincel.RequestVarName
	varNamespace = plugincel.NamespaceVarName
	varPodSpec   = "podSpec"
	varPodMeta   = "podMeta"
)

// newCELEnv builds the environment once: the Kubernetes base environment and libraries from
// k8s.io/apiserver (the ones ValidatingAdmissionPolicy uses, with its cost limits), the same
// variable types, and podSpec/podMeta.
func newCELEnv() (*cel.Env, error) {
	requestType := plugincel.BuildRequestType()
	namespaceType := plugincel.BuildNamespaceType()
	return adaptingRefVals(newBaseEnvWith(celVariables(namespaceType, requestType), namespaceType, requestType))
}

// celVariables declares the variables of CEL rules.
func celVariables(namespaceType, requestType *apiservercel.DeclType) []cel.EnvOption {
	return []cel.EnvOption{
		cel.Variable(varObject, cel.DynType),
		cel.Variable(varOldObject, cel.DynType),
		cel.Variable(varNamespace, namespaceType.CelType()),
		cel.Variable(varRequest, requestType.CelType()),
		cel.Variable(varPodSpec, cel.DynType),
		cel.Variable(varPodMeta, cel.DynType),
	}
}

// newBaseEnvWith is the Kubernetes base environment, libraries and cost limits with these
// variables.
func newBaseEnvWith(vars []cel.EnvOption, declTypes ...*apiservercel.DeclType) (*cel.Env, error) {
	set, err := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).Extend(
		environment.VersionedOptions{
			IntroducedVersion: version.MajorMinor(1, 0),
			EnvOptions:        vars,
			DeclTypes:         declTypes,
		},
		environment.StrictCostOpt,
	)
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	return set.Env(environment.StoredExpressions)
}

// The compile-time cost model. CEL's estimator needs the size of every value it cannot see; the
// variables are dynamic, so every list, map and string read from a request is taken to hold
// EstimateSize items (characters). The estimate is what evaluating the expression costs on such
// an object, in CEL cost units (ValidatingAdmissionPolicy's: about 0.1 s per million); what a real
// request costs is bounded again at run time, by the per-call limit and the review's deadline.
const (
	EstimateSize = 100
	// MaxExpressionCost is the most an expression may be estimated to cost:
	// ValidatingAdmissionPolicy's per-call limit, which also bounds it at run time.
	MaxExpressionCost = celconfig.PerCallLimit
	// MaxPolicyCost is the most a policy's expressions may be estimated to cost together:
	// ValidatingAdmissionPolicy's runtime budget per policy.
	MaxPolicyCost = celconfig.RuntimeCELCostBudget
)

// referenceSizes is the estimator of the cost model, delegating function costs to the
// Kubernetes CEL libraries' own estimator.
type referenceSizes struct{}

func (referenceSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: EstimateSize}
}

func (referenceSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

var costEstimator = &library.CostEstimator{SizeEstimator: referenceSizes{}}

// celRule is a compiled boolean expression with its message.
type celRule struct {
	expression string
	twinned    // the expression's programs
	message    string
	messageExp *twinned // nil when not set
	cost       uint64   // estimated: the expression's plus the message expression's
	// needs names what the expressions read that only a request has (oldObject,
	// request.userInfo); a background scan skips the rule, saying so.
	needs []string
	// scope is the policy's params and variables; nil when it has neither.
	scope *celScope
}

// twinned is an expression's program, and its twin without runtime cost tracking, for requests
// within untrackedWithin, where the estimate bounds its cost (untracked.go).
type twinned struct {
	program         cel.Program
	untracked       cel.Program // nil when there is none
	untrackedWithin untrackedBounds
}

// planTwinned plans the checked ast in env: with withUntracked its twin, where there is one
// (twinErr: planning it failed), and the tracked program, planned when a request past the twin's
// bounds first needs it (lazyProgram, envs.go). With withUntracked, seldom plans both when they
// first run: a message expression's, which runs only when its rule fails.
func planTwinned(env *cel.Env, ast *cel.Ast, scope *celScope, withUntracked, seldom bool) (t twinned, twinErr, err error) {
	seldom = seldom && withUntracked
	if withUntracked {
		t.untracked, t.untrackedWithin, twinErr = untracked(env, ast, scope, seldom)
	}
	t.program, err = planTracked(env, ast, t.untracked != nil || seldom)
	return t, twinErr, err
}

// programFor is the untracked program when the request is within its bound, else the tracked.
func (t *twinned) programFor(in *input) cel.Program {
	if t.untracked != nil && t.untrackedWithin.covers(in.bounds()) {
		return t.untracked
	}
	return t.program
}

// eval runs programFor(in). The twin's cost is bounded before it runs, so there is nothing to
// interrupt: Eval spares it the cancelable context that ContextEval makes for every evaluation.
// The review's deadline stops the tracked program, and the engine checks it between rules.
func (t *twinned) eval(in *input, act interpreter.Activation) (ref.Val, error) {
	var out ref.Val
	var err error
	if prog := t.programFor(in); prog == t.untracked {
		out, _, err = prog.Eval(act)
	} else {
		out, _, err = prog.ContextEval(in.ctx, act)
	}
	return out, err
}

// requestTimeNeeds implements backgroundSkipper.
func (r *celRule) requestTimeNeeds() []string { return r.needs }

// compileCEL compiles a CEL rule in env (newCELEnv's, or its policy's scope's); withUntracked
// also plans its untracked twin, for rules that will be evaluated.
func compileCEL(r *v1alpha1.CELRule, env *cel.Env, scope *celScope, withUntracked bool, path *field.Path) (*celRule, field.ErrorList) {
	var errs field.ErrorList
	rule := &celRule{expression: r.Expression, message: r.Message, scope: scope}
	if strings.TrimSpace(r.Expression) == "" {
		errs = append(errs, field.Required(path.Child("expression"), "a boolean CEL expression"))
	} else {
		ast, cost, needs, err := checkTyped(env, r.Expression, cel.BoolType, scope)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("expression"), r.Expression, err.Error()))
		} else {
			var e field.ErrorList
			rule.twinned, e = rule.plan(env, ast, withUntracked, false, path.Child("expression"), r.Expression)
			errs = append(errs, e...)
		}
		rule.cost, rule.needs = cost, needs
	}
	if r.MessageExpression != "" {
		// It runs only when the rule fails: its programs, tracked and untracked, are planned
		// then (for a rule that will be evaluated).
		ast, cost, needs, err := checkTyped(env, r.MessageExpression, cel.StringType, scope)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("messageExpression"), r.MessageExpression, err.Error()))
		} else {
			message, e := rule.plan(env, ast, withUntracked, true, path.Child("messageExpression"), r.MessageExpression)
			rule.messageExp = &message
			errs = append(errs, e...)
		}
		rule.cost = addCost(rule.cost, cost)
		for _, n := range needs {
			if !slices.Contains(rule.needs, n) {
				rule.needs = append(rule.needs, n)
			}
		}
	}
	if strings.Contains(r.Message, "\n") {
		errs = append(errs, field.Invalid(path.Child("message"), r.Message, "must be one line"))
	}
	return rule, errs
}

// plan plans one of the rule's expressions (planTwinned); what fails is reported at path.
func (r *celRule) plan(env *cel.Env, ast *cel.Ast, withUntracked, seldom bool, path *field.Path, expr string) (twinned, field.ErrorList) {
	var errs field.ErrorList
	planned, twinErr, err := planTwinned(env, ast, r.scope, withUntracked, seldom)
	if twinErr != nil {
		errs = append(errs, field.InternalError(path, twinErr))
	}
	if err != nil {
		errs = append(errs, field.Invalid(path, expr, err.Error()))
	}
	return planned, errs
}

// compileTyped compiles expr, which must have type want (nil: any), and estimates its cost; an
// expression estimated past MaxExpressionCost is refused, before a program is built for it. It
// also returns its checked AST and what it reads that only an admission request has. scope is the
// policy's params and variables (nil: none): their sizes and needs.
func compileTyped(env *cel.Env, expr string, want *cel.Type, scope *celScope) (cel.Program, *cel.Ast, uint64, []string, error) {
	ast, cost, needs, err := checkTyped(env, expr, want, scope)
	if err != nil {
		return nil, ast, cost, nil, err
	}
	prog, err := planTracked(env, ast, false)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	return prog, ast, cost, needs, nil
}

// checkTyped is compileTyped without planning the program: the checked expression, its
// estimated cost and what it reads that only a request has.
func checkTyped(env *cel.Env, expr string, want *cel.Type, scope *celScope) (*cel.Ast, uint64, []string, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, 0, nil, fmt.Errorf("compilation failed: %w", iss.Err())
	}
	if want != nil && !ast.OutputType().IsExactType(want) {
		return nil, 0, nil, fmt.Errorf("must evaluate to %s but got %s", want, ast.OutputType())
	}
	est, err := env.EstimateCost(ast, scope.estimator())
	if err != nil {
		return nil, 0, nil, fmt.Errorf("estimating its cost: %w", err)
	}
	if est.Max > MaxExpressionCost {
		return nil, est.Max, nil, fmt.Errorf("estimated cost %s exceeds the limit of %s per expression (on an object whose lists hold %d items and strings %d characters); bound its loops, e.g. with size() checks",
			FormatCost(est.Max), FormatCost(MaxExpressionCost), EstimateSize, EstimateSize)
	}
	return ast, est.Max, requestTimeNeeds(ast, scope.needsOf), nil
}

// planTracked plans a checked expression with runtime cost tracking, in env or in one declaring
// the same. lazy: when it first runs (lazyProgram), for an expression that seldom needs it.
func planTracked(env *cel.Env, ast *cel.Ast, lazy bool) (cel.Program, error) {
	plan := func() (cel.Program, error) {
		prog, err := env.Program(ast, cel.InterruptCheckFrequency(celconfig.CheckFrequency), cachedMatches)
		if err != nil {
			return nil, fmt.Errorf("program instantiation failed: %w", err)
		}
		return prog, nil
	}
	if lazy {
		return planShared(env, ast, false, func() (cel.Program, error) { return &lazyProgram{plan: plan}, nil })
	}
	return planShared(env, ast, false, plan)
}

// shadowed reports whether identifier e names a comprehension's variable rather than the
// declared variable of that name: it sits in a comprehension over another range that binds name.
func shadowed(e celast.NavigableExpr, name string) bool {
	child := e
	for p, ok := e.Parent(); ok; p, ok = p.Parent() {
		if p.Kind() == celast.ComprehensionKind {
			c := p.AsComprehension()
			if (c.IterVar() == name || c.IterVar2() == name || c.AccuVar() == name) && child.ID() != c.IterRange().ID() {
				return true
			}
		}
		child = p
	}
	return false
}

// requestTimeNeeds names what a checked expression reads that exists only while the API server
// admits a request: oldObject, and request.userInfo, directly or through the variables it reads
// (varNeeds gives theirs). Identifiers are matched by what the checker resolved them to, so a
// comprehension variable of the same name is not taken for them.
func requestTimeNeeds(a *cel.Ast, varNeeds func(string) []string) []string {
	native := a.NativeRep()
	refs := native.ReferenceMap()
	declared := func(e celast.NavigableExpr, name string) bool {
		r, ok := refs[e.ID()]
		return ok && e.Kind() == celast.IdentKind && r.Name == name && !shadowed(e, name)
	}
	var needs []string
	for _, e := range celast.MatchDescendants(celast.NavigateAST(native), celast.AllMatcher()) {
		var found []string
		switch {
		case declared(e, varOldObject):
			found = []string{varOldObject}
		case e.Kind() == celast.SelectKind && e.AsSelect().FieldName() == "userInfo" && len(e.Children()) == 1 && declared(e.Children()[0], varRequest):
			found = []string{varRequest + ".userInfo"}
		case e.Kind() == celast.SelectKind && len(e.Children()) == 1 && declared(e.Children()[0], varVariables):
			found = varNeeds(e.AsSelect().FieldName())
		}
		for _, need := range found {
			if !slices.Contains(needs, need) {
				needs = append(needs, need)
			}
		}
	}
	slices.Sort(needs)
	return needs
}

// addCost adds without overflowing.
func addCost(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// FormatCost writes a cost with thousands separators; "unbounded" for the estimator's maximum.
func FormatCost(c uint64) string {
	if c == math.MaxUint64 {
		return "unbounded"
	}
	s := strconv.FormatUint(c, 10)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (r *celRule) evaluate(in *input) verdict {
	act := in.activation(r.scope)
	out, err := r.eval(in, act)
	if err != nil {
		return evalError(fmt.Errorf("expression %q: %w", r.expression, err))
	}
	ok, isBool := out.(types.Bool)
	if !isBool {
		return evalError(fmt.Errorf("expression %q returned %s, not bool", r.expression, out.Type()))
	}
	if ok {
		return pass()
	}
	return fail(r.failureMessage(in, act))
}

// failureMessage follows ValidatingAdmissionPolicy: messageExpression when it yields a non-empty
// one-line string, else message, else the failed expression.
func (r *celRule) failureMessage(in *input, act interpreter.Activation) string {
	if r.messageExp != nil {
		if out, err := r.messageExp.eval(in, act); err == nil {
			if s, ok := out.(types.String); ok && strings.TrimSpace(string(s)) != "" && !strings.Contains(string(s), "\n") {
				return string(s)
			}
		}
	}
	if r.message != "" {
		return r.message
	}
	return fmt.Sprintf("failed expression: %s", r.expression)
}

// activation binds the variables for one request; the values are built lazily and once.
type activation struct {
	in    *input
	scope *celScope // the policy's params and variables; nil when it has neither
}

func (a activation) ResolveName(name string) (any, bool) {
	switch name {
	case varObject:
		return a.in.req.Object.celValue(), true
	case varOldObject:
		return a.in.req.OldObject.celValue(), true
	case varRequest:
		return a.in.requestValue(), true
	case varNamespace:
		return a.in.namespaceValue(), true
	case varPodSpec:
		spec, _ := a.in.res.celPodValues()
		return spec, true
	case varPodMeta:
		_, meta := a.in.res.celPodValues()
		return meta, true
	case varParams:
		if a.scope != nil && a.scope.params != nil {
			return a.scope.params, true
		}
	case varVariables:
		if a.scope != nil {
			return a.in.variables(a.scope), true
		}
	}
	return nil, false
}

func (a activation) Parent() interpreter.Activation { return nil }
