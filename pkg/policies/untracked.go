package policies

import (
	"fmt"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/ext"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"
)

// Runtime cost tracking where it buys nothing.
//
// Every CEL program of the Kubernetes environment counts its cost as it runs and stops at
// ValidatingAdmissionPolicy's per-call limit. Counting is a third of what a CEL rule costs to
// evaluate. It buys nothing when the expression's estimate, taken at the sizes of the actual
// request, is already within the limit: the estimate bounds what the program can cost. So a CEL
// rule also gets a twin program without tracking, and untrackedUpTo, the largest request size
// (in JSON bytes) at which its estimate is within the per-call limit. A request no larger runs
// the twin; a larger one, or one whose size is unknown, runs the tracked program. The bound
// holds for ClusterPolicies and tenants' Policies alike, and the review's deadline still stops
// any evaluation.
//
// The estimate at size S takes every list, map and string read from the object, the old object
// and the pod (and request's names and kinds) to hold at most S items or characters: a JSON
// document of S bytes holds no longer one. Defaulting adds only short strings, so sizes start at
// untrackedMinSize. What the request's JSON does not bound (the namespace's labels, the
// requester's groups) is of unknown size, and an expression that reads it is never untracked;
// neither is one of a policy with params or variables (they have their own environment).

// The sizes tried are the powers of two from 1 KiB to 4 MiB.
const (
	untrackedMinShift = 10
	untrackedMaxShift = 22
	untrackedMinSize  = 1 << untrackedMinShift
)

// untrackedEnv is newCELEnv's environment without runtime cost tracking: the same libraries,
// language options and variables as the Kubernetes base environment for stored expressions,
// built from the same constructors (TestUntrackedEnvMatchesKubernetes holds them equal). Only
// programs are planned in it: expressions are compiled and estimated in newCELEnv's.
var untrackedEnv = sync.OnceValues(func() (*cel.Env, error) {
	base, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		library.URLs(),
		library.Regex(),
		cel.CostEstimatorOptions(checker.PresenceTestHasCost(false)),
		library.Authz(),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		library.Quantity(),
		cel.ASTValidators(
			cel.ValidateDurationLiterals(),
			cel.ValidateTimestampLiterals(),
			cel.ValidateRegexLiterals(),
			cel.ValidateHomogeneousAggregateLiterals(),
		),
		ext.Strings(ext.StringsVersion(2)),
		ext.Sets(),
		library.IP(),
		library.CIDR(),
		library.Format(),
		library.AuthzSelectors(),
		ext.TwoVarComprehensions(),
		library.SemverLib(library.SemverVersion(1)),
		ext.Lists(ext.ListsVersion(3)),
		library.Lists(library.ListsVersion(1)),
	)
	if err != nil {
		return nil, fmt.Errorf("building the untracked CEL environment: %w", err)
	}
	requestType, namespaceType := plugincel.BuildRequestType(), plugincel.BuildNamespaceType()
	provider := apiservercel.NewDeclTypeProvider(namespaceType, requestType)
	provider.SetRecognizeKeywordAsFieldName(true)
	providerOpts, err := provider.EnvOptions(base.CELTypeProvider())
	if err != nil {
		return nil, fmt.Errorf("building the untracked CEL environment: %w", err)
	}
	env, err := base.Extend(append(celVariables(namespaceType, requestType), providerOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("building the untracked CEL environment: %w", err)
	}
	return env, nil
})

// untracked plans ast, checked in newCELEnv's environment, without cost tracking, and returns
// the largest request size at which its estimate is within the per-call limit; nil and 0 when
// there is none, or when the expression reads what the request's size does not bound.
func untracked(env *cel.Env, ast *cel.Ast) (cel.Program, int, error) {
	within := func(shift int) bool { // at a size of 1<<shift bytes
		sizes := boundedSizes{uint64(1) << shift}
		est, err := env.EstimateCost(ast, boundedEstimator{&library.CostEstimator{SizeEstimator: sizes}})
		return err == nil && est.Max <= MaxExpressionCost
	}
	shift := untrackedMinShift
	if !within(shift) {
		return nil, 0, nil
	}
	for shift < untrackedMaxShift && within(shift+1) {
		shift++
	}
	fast, err := untrackedEnv()
	if err != nil {
		return nil, 0, err
	}
	prog, err := fast.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(celconfig.CheckFrequency))
	if err != nil {
		return nil, 0, fmt.Errorf("planning the untracked program: %w", err)
	}
	return prog, 1 << shift, nil
}

// boundedSizes sizes what a request of max bytes of JSON bounds, and leaves the rest unknown.
type boundedSizes struct{ max uint64 }

func (b boundedSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	path := n.Path()
	if len(path) == 0 {
		return nil // computed: CEL sizes it, or takes it as unbounded
	}
	bounded := false
	switch path[0] {
	case varObject, varOldObject, varPodSpec, varPodMeta:
		bounded = true
	case varRequest: // its names and kinds are the object's, or as short; not userInfo, options
		bounded = len(path) > 1 && boundedRequestFields[path[1]]
	case varNamespace:
		bounded = len(path) == 3 && path[1] == "metadata" && path[2] == "name"
	}
	if !bounded {
		return nil
	}
	return &checker.SizeEstimate{Min: 0, Max: b.max}
}

// boundedEstimator is the Kubernetes libraries' estimator over boundedSizes, which also sizes
// optional fields (x.?f.orValue(d)): a field of what the request bounds is bounded as it is, and
// orValue is the larger of its value and its default.
type boundedEstimator struct{ *library.CostEstimator }

func (b boundedEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	one := checker.FixedCostEstimate(1) // what CEL charges both
	switch {
	case function == operators.OptSelect && len(args) == 2:
		if size := b.SizeEstimator.EstimateSize(args[0]); size != nil {
			return &checker.CallEstimate{CostEstimate: one, ResultSize: size}
		}
	case function == "orValue" && target != nil && len(args) == 1:
		value, def := sizeOf(b, *target), sizeOf(b, args[0])
		if value != nil && def != nil {
			return &checker.CallEstimate{CostEstimate: one, ResultSize: &checker.SizeEstimate{Min: 0, Max: max(value.Max, def.Max)}}
		}
	}
	return b.CostEstimator.EstimateCallCost(function, overloadID, target, args)
}

// sizeOf is the size CEL computed for n, or the estimator's; nil when neither knows it.
func sizeOf(b boundedEstimator, n checker.AstNode) *checker.SizeEstimate {
	if sz := n.ComputedSize(); sz != nil {
		return sz
	}
	return b.EstimateSize(n)
}

// boundedRequestFields are the fields of the request variable no longer than the object's JSON
// (or than untrackedMinSize): its names, kinds, resources and operation.
var boundedRequestFields = map[string]bool{"kind": true, "resource": true, "subResource": true, "requestKind": true,
	"requestResource": true, "requestSubResource": true, "name": true, "namespace": true, "operation": true, "dryRun": true, "uid": true}

func (boundedSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}
