package policies

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
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
	set, err := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()).Extend(
		environment.VersionedOptions{
			IntroducedVersion: version.MajorMinor(1, 0),
			EnvOptions: []cel.EnvOption{
				cel.Variable(varObject, cel.DynType),
				cel.Variable(varOldObject, cel.DynType),
				cel.Variable(varNamespace, namespaceType.CelType()),
				cel.Variable(varRequest, requestType.CelType()),
				cel.Variable(varPodSpec, cel.DynType),
				cel.Variable(varPodMeta, cel.DynType),
			},
			DeclTypes: []*apiservercel.DeclType{namespaceType, requestType},
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
	program    cel.Program
	message    string
	messageExp cel.Program // nil when not set
	cost       uint64      // estimated: the expression's plus the message expression's
}

func compileCEL(r *v1alpha1.CELRule, env *cel.Env, path *field.Path) (*celRule, field.ErrorList) {
	var errs field.ErrorList
	rule := &celRule{expression: r.Expression, message: r.Message}
	if strings.TrimSpace(r.Expression) == "" {
		errs = append(errs, field.Required(path.Child("expression"), "a boolean CEL expression"))
	} else {
		prog, cost, err := compileExpression(env, r.Expression, cel.BoolType)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("expression"), r.Expression, err.Error()))
		}
		rule.program, rule.cost = prog, cost
	}
	if r.MessageExpression != "" {
		prog, cost, err := compileExpression(env, r.MessageExpression, cel.StringType)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("messageExpression"), r.MessageExpression, err.Error()))
		}
		rule.messageExp, rule.cost = prog, addCost(rule.cost, cost)
	}
	if strings.Contains(r.Message, "\n") {
		errs = append(errs, field.Invalid(path.Child("message"), r.Message, "must be one line"))
	}
	return rule, errs
}

// compileExpression compiles expr and estimates its cost; an expression estimated past
// MaxExpressionCost is refused, before a program is built for it.
func compileExpression(env *cel.Env, expr string, want *cel.Type) (cel.Program, uint64, error) {
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		return nil, 0, fmt.Errorf("compilation failed: %w", iss.Err())
	}
	if !ast.OutputType().IsExactType(want) {
		return nil, 0, fmt.Errorf("must evaluate to %s but got %s", want, ast.OutputType())
	}
	est, err := env.EstimateCost(ast, costEstimator)
	if err != nil {
		return nil, 0, fmt.Errorf("estimating its cost: %w", err)
	}
	if est.Max > MaxExpressionCost {
		return nil, est.Max, fmt.Errorf("estimated cost %s exceeds the limit of %s per expression (on an object whose lists hold %d items and strings %d characters); bound its loops, e.g. with size() checks",
			FormatCost(est.Max), FormatCost(MaxExpressionCost), EstimateSize, EstimateSize)
	}
	prog, err := env.Program(ast, cel.InterruptCheckFrequency(celconfig.CheckFrequency))
	if err != nil {
		return nil, 0, fmt.Errorf("program instantiation failed: %w", err)
	}
	return prog, est.Max, nil
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
	act := in.activation()
	out, _, err := r.program.ContextEval(in.ctx, act)
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
	return fail(r.failureMessage(in.ctx, act))
}

// failureMessage follows ValidatingAdmissionPolicy: messageExpression when it yields a non-empty
// one-line string, else message, else the failed expression.
func (r *celRule) failureMessage(ctx context.Context, act interpreter.Activation) string {
	if r.messageExp != nil {
		if out, _, err := r.messageExp.ContextEval(ctx, act); err == nil {
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
	in *input
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
	}
	return nil, false
}

func (a activation) Parent() interpreter.Activation { return nil }
