package policies

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// Runtime cost tracking where it buys nothing.
//
// Every CEL program of the Kubernetes environment counts its cost as it runs and stops at
// ValidatingAdmissionPolicy's per-call limit. Counting is a third of what a CEL rule costs to
// evaluate. It buys nothing when the expression's estimate, taken at the sizes of the actual
// request, is already within the limit: the estimate bounds what the program can cost. So a CEL
// rule of a ClusterPolicy also gets a twin program without tracking, and the bounds
// (jsonbounds.go) at which its estimate is within the per-call limit: a staircase of (items,
// chars) pairs. A request whose objects' JSON is within one runs the twin; any other, or one
// whose bounds are unknown, runs the tracked program. The twin runs without the review's
// deadline, its cost being bounded before it starts (celRule.evaluate); the deadline stops the
// tracked programs, and the engine checks it between rules. (A tenant's rules get no twin: it would be memory past their budget.)
// A rule or variable with a twin has its tracked program planned when a request first needs it
// (lazyProgram, envs.go).
//
// The estimate at (items, chars) sizes what is read from the object, the old object and the pod
// (and the request's names and kinds): where the Go type of podSpec or podMeta says what a path
// holds, a list or map has at most items entries, a string at most chars characters and a
// struct its JSON fields; any other path, the larger of items and chars. What the request's JSON
// does not bound (the namespace's labels, the requester's groups) is of unknown size, and an
// expression that reads it is never untracked. Params are sized by their values, and a variable
// by its definition (untracked, below).

// The bounds tried: items from 64 to 4 Mi by factors of four, chars from 1 KiB to 4 MiB by
// factors of two.
const (
	untrackedMinItemsShift, untrackedMaxItemsShift, untrackedItemsStep = 6, 22, 2
	untrackedMinCharsShift, untrackedMaxCharsShift                     = 10, 22
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
	env, err := extendDeclaring(base, []*apiservercel.DeclType{namespaceType, requestType}, celVariables(namespaceType, requestType))
	if err != nil {
		return nil, fmt.Errorf("building the untracked CEL environment: %w", err)
	}
	return env, nil
})

// untracked plans ast, checked in env (newCELEnv's, or a policy's extended by its scope),
// without cost tracking, and returns the staircase of bounds at which its estimate is within
// the per-call limit; nil and nil when there is none, or when the expression reads what the
// request's size does not bound. A policy's params are sized by their values; its variables
// are estimated inlined, where they are read, as their definitions: a variable's cost counts at
// every read (it is evaluated once, by its own tracked program), and its value is sized as the
// expression that makes it. lazy plans the program when it first runs (lazyProgram): a message
// expression's, which runs only when its rule fails.
func untracked(env *cel.Env, ast *cel.Ast, scope *celScope, lazy bool) (cel.Program, untrackedBounds, error) {
	estimated, params := ast, map[string]any(nil)
	if scope != nil {
		var ok bool
		if estimated, ok = inlineVariables(env, ast, scope.inline); !ok {
			return nil, nil, nil
		}
		params = scope.paramValues
	}
	estimated, slack := estimationAST(env, estimated)
	within := func(items, chars int) bool {
		sizes := boundedSizes{items: uint64(1) << items, chars: uint64(1) << chars, params: params}
		est, err := env.EstimateCost(estimated, newBoundedEstimator(sizes))
		return err == nil && addSlack(est.Max, slack) <= MaxExpressionCost
	}
	// For each items bound, the most chars within the limit: fewer as items grow (an estimate
	// only grows with either), so each step searches below the last one's, by halving.
	var steps untrackedBounds
	chars := untrackedMaxCharsShift
	for items := untrackedMinItemsShift; items <= untrackedMaxItemsShift; items += untrackedItemsStep {
		if !within(items, chars) {
			if !within(items, untrackedMinCharsShift) {
				break
			}
			lo, hi := untrackedMinCharsShift, chars-1 // within at lo, not past hi
			for lo < hi {
				if mid := (lo + hi + 1) / 2; within(items, mid) {
					lo = mid
				} else {
					hi = mid - 1
				}
			}
			chars = lo
		}
		if n := len(steps); n > 0 && steps[n-1].chars == 1<<chars {
			steps = steps[:n-1] // the larger items bound covers it
		}
		steps = append(steps, jsonBounds{items: 1 << items, chars: 1 << chars})
	}
	if len(steps) == 0 {
		return nil, nil, nil
	}
	fast, err := untrackedEnv()
	if scope != nil {
		fast, err = scope.fast()
	}
	if err != nil {
		return nil, nil, err
	}
	plan := func() (cel.Program, error) {
		prog, err := fast.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(celconfig.CheckFrequency), cachedMatches)
		if err != nil {
			return nil, err
		}
		return withDirect(fast, ast, prog), nil // celdirect.go
	}
	if lazy {
		eager := plan
		plan = func() (cel.Program, error) { return &lazyProgram{plan: eager}, nil }
	}
	prog, err := planShared(fast, ast, true, plan)
	if err != nil {
		return nil, nil, fmt.Errorf("planning the untracked program: %w", err)
	}
	return prog, steps, nil
}

// inlineVariables is ast with every variable it reads replaced by its definition (vars: each
// already inlined in the others'); false when that fails, or leaves a variable read (one that
// did not compile).
func inlineVariables(env *cel.Env, ast *cel.Ast, vars []*cel.InlineVariable) (*cel.Ast, bool) {
	if len(vars) > 0 {
		opt, err := cel.NewStaticOptimizer(cel.NewInliningOptimizer(vars...))
		if err != nil {
			return nil, false
		}
		var iss *cel.Issues
		if ast, iss = opt.Optimize(env, ast); iss.Err() != nil {
			return nil, false
		}
	}
	reads := celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), func(e celast.NavigableExpr) bool {
		return e.Kind() == celast.IdentKind && e.AsIdent() == varVariables && !shadowed(e, varVariables)
	})
	return ast, len(reads) == 0
}

// untrackedBounds are the bounds within which a rule's estimate holds: items ascending, chars
// descending.
type untrackedBounds []jsonBounds

// covers reports whether b is within one of the steps.
func (u untrackedBounds) covers(b jsonBounds) bool {
	for _, s := range u {
		if b.items <= s.items {
			return b.chars <= s.chars
		}
	}
	return false
}

// boundedSizes sizes what a request within (items, chars) bounds, and params by their values;
// it leaves the rest unknown.
type boundedSizes struct {
	items, chars uint64
	params       map[string]any
}

func (b boundedSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	return b.sizeAt(n.Path())
}

// sizeAt is the size of the value at path (CEL's, from a variable), or nil when not bounded.
func (b boundedSizes) sizeAt(path []string) *checker.SizeEstimate {
	if len(path) == 0 {
		return nil // computed: CEL sizes it, or takes it as unbounded
	}
	bounded := false
	switch path[0] {
	case varParams:
		if size, ok := sizeAt(b.params, path[1:]); ok && b.params != nil {
			return &checker.SizeEstimate{Min: 0, Max: size}
		}
	case varPodSpec, varPodMeta:
		switch kind, fields := sizeKindAt(podTypes[path[0]], path[1:]); kind {
		case sizeItems:
			return &checker.SizeEstimate{Min: 0, Max: b.items}
		case sizeChars:
			return &checker.SizeEstimate{Min: 0, Max: b.chars}
		case sizeFields:
			return &checker.SizeEstimate{Min: 0, Max: fields}
		}
		bounded = true
	case varObject, varOldObject:
		bounded = true
	case varRequest: // its names and kinds are the object's, or as short; not userInfo, options
		bounded = len(path) > 1 && boundedRequestFields[path[1]]
	case varNamespace:
		bounded = len(path) == 3 && path[1] == "metadata" && path[2] == "name"
	}
	if !bounded {
		return nil
	}
	return &checker.SizeEstimate{Min: 0, Max: max(b.items, b.chars)}
}

// podTypes are the Go types podSpec and podMeta are read from (Resource.celPodValues).
var podTypes = map[string]reflect.Type{varPodSpec: reflect.TypeFor[corev1.PodSpec](), varPodMeta: reflect.TypeFor[metav1.ObjectMeta]()}

// sizeKind is how a value is sized: by what it holds, as typedToVal presents it.
type sizeKind int

const (
	sizeAny    sizeKind = iota // not known: as a list, map or string
	sizeItems                  // a list or map
	sizeChars                  // a string (bytes are base64 in the JSON)
	sizeFields                 // a struct: at most its JSON fields
)

// ownJSONStrings are the types that write their own JSON as a string.
var ownJSONStrings = map[reflect.Type]bool{reflect.TypeFor[resource.Quantity](): true, reflect.TypeFor[metav1.Time](): true,
	reflect.TypeFor[metav1.MicroTime](): true, reflect.TypeFor[metav1.Duration](): true, reflect.TypeFor[intstr.IntOrString](): true}

// sizeKindAt is how the value at path (CEL's: field names and @items, @keys, @values, @indices)
// under a value of type t is sized, and a struct's JSON field count; sizeAny when the path leaves
// the Go type (a field it lacks, a value that writes its own JSON as anything but a string).
func sizeKindAt(t reflect.Type, path []string) (sizeKind, uint64) {
	for _, step := range path {
		if t = indirect(t); ownJSON(t) {
			return sizeAny, 0
		}
		switch {
		case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
			if step == "@indices" {
				return sizeAny, 0
			}
			t = t.Elem() // an item: CEL names a dyn list's items @keys, and an index @items or @values
		case t.Kind() == reflect.Map && step == "@keys":
			t = t.Key()
		case t.Kind() == reflect.Map && step != "@indices":
			t = t.Elem() // @values, @items, or a field selected on a map
		case t.Kind() == reflect.Struct:
			if t = jsonField(t, step); t == nil {
				return sizeAny, 0
			}
		default:
			return sizeAny, 0
		}
	}
	t = indirect(t)
	switch {
	case ownJSONStrings[t]:
		return sizeChars, 0
	case ownJSON(t):
		return sizeAny, 0
	case t.Kind() == reflect.String, t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return sizeChars, 0
	case t.Kind() == reflect.Slice, t.Kind() == reflect.Map:
		return sizeItems, 0
	case t.Kind() == reflect.Struct:
		return sizeFields, jsonFieldCount(t)
	}
	return sizeAny, 0
}

func indirect(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// ownJSON reports whether typedToVal converts t as a whole, through its own JSON.
func ownJSON(t reflect.Type) bool {
	if ownJSONStrings[t] {
		return true
	}
	return t.Kind() == reflect.Struct && value.TypeReflectEntryOf(t).CanConvertToUnstructured()
}

// jsonField is the type of struct t's field JSON calls name (inlined structs' included), or nil.
func jsonField(t reflect.Type, name string) reflect.Type {
	for f := range t.Fields() {
		tag, inline := jsonName(f)
		switch {
		case inline:
			if ft := jsonField(indirect(f.Type), name); ft != nil {
				return ft
			}
		case tag == name:
			return f.Type
		}
	}
	return nil
}

// jsonFieldCount is how many JSON fields struct t has, inlined structs' included.
func jsonFieldCount(t reflect.Type) uint64 {
	var n uint64
	for f := range t.Fields() {
		switch tag, inline := jsonName(f); {
		case inline:
			n += jsonFieldCount(indirect(f.Type))
		case tag != "":
			n++
		}
	}
	return n
}

// jsonName is field f's JSON name ("" when JSON skips it), or whether it is inlined.
func jsonName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	switch {
	case tag == "-":
		return "", false
	case name == "" && (f.Anonymous || strings.Contains(opts, "inline")):
		return "", true
	case !f.IsExported():
		return "", false
	case name == "":
		return f.Name, false
	}
	return name, false
}

// boundedEstimator is the Kubernetes libraries' estimator over boundedSizes, which also sizes
// optional fields (x.?f.orValue(d)): a field of what the request bounds is bounded as it is, and
// orValue is the larger of its value and its default. It also estimates the two functions of an
// estimation AST's joins (unroll.go): @elem(f, k) costs nothing and notes the largest size of the
// items of join k, and @join(l, sep, k) is estimated as the Kubernetes libraries estimate
// l.join(sep), with items of that size. One estimator serves one estimate.
type boundedEstimator struct {
	*library.CostEstimator
	items map[int64]uint64 // join k's items: the largest size, math.MaxUint64 when unknown
}

func newBoundedEstimator(sizes boundedSizes) boundedEstimator {
	return boundedEstimator{&library.CostEstimator{SizeEstimator: sizes}, map[int64]uint64{}}
}

// The functions of an estimation AST's joins: declared in the environment that checks it alone
// (estimationEnv), and named so that no expression can call them.
const (
	elemEstimate = "@elem"
	joinEstimate = "@join"
)

// estimationEnvs are the environments extended with elemEstimate and joinEstimate, by the
// environment they extend; held while an estimate is taken.
var estimationEnvs = newInterner[*cel.Env, cel.Env]()

// estimationEnv is env with elemEstimate and joinEstimate declared, without implementations:
// only estimated, never planned.
func estimationEnv(env *cel.Env) (*cel.Env, error) {
	return estimationEnvs.get(env, func() (*cel.Env, error) {
		item := cel.TypeParamType("T")
		return env.Extend(
			cel.Function(elemEstimate, cel.Overload(elemEstimate+"_any", []*cel.Type{item, cel.IntType}, item)),
			cel.Function(joinEstimate, cel.Overload(joinEstimate+"_dyn", []*cel.Type{cel.DynType, cel.StringType, cel.IntType}, cel.StringType)),
		)
	})
}

func (b boundedEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	one := checker.FixedCostEstimate(1) // what CEL charges both
	switch {
	case function == operators.OptSelect && len(args) == 2:
		// x.?f is sized as x.f: at the path of x, the field f (a constant).
		sizes, ok := b.SizeEstimator.(boundedSizes)
		f, isString := args[1].Expr().AsLiteral().(types.String)
		if path := args[0].Path(); ok && isString && len(path) > 0 {
			if size := sizes.sizeAt(append(slices.Clip(path), string(f))); size != nil {
				return &checker.CallEstimate{CostEstimate: one, ResultSize: size}
			}
		}
	case function == "orValue" && target != nil && len(args) == 1:
		value, def := sizeOf(b, *target), sizeOf(b, args[0])
		if value != nil && def != nil {
			return &checker.CallEstimate{CostEstimate: one, ResultSize: &checker.SizeEstimate{Min: 0, Max: max(value.Max, def.Max)}}
		}
	case function == overloads.TypeConvertString && len(args) == 1 && args[0].Type() != nil && convertedSizes[args[0].Type().Kind()] > 0:
		// CEL sizes no conversion to a string; these are short. Only of an operand typed so: a
		// dyn one has every conversion's overload, whose result sizes CEL joins, leaving out
		// those it has none for (string(s) is as long as s).
		return &checker.CallEstimate{CostEstimate: one, ResultSize: &checker.SizeEstimate{Min: 0, Max: convertedSizes[args[0].Type().Kind()]}}
	case function == elemEstimate && len(args) == 2:
		item, k := sizeOf(b, args[0]), joinKey(args[1])
		largest := uint64(math.MaxUint64)
		if item != nil {
			largest = item.Max
		}
		b.items[k] = max(b.items[k], largest)
		return &checker.CallEstimate{ResultSize: item}
	case function == joinEstimate && len(args) == 3:
		list, sep := sizeOf(b, args[0]), sizeOf(b, args[1])
		item, noted := b.items[joinKey(args[2])]
		if list == nil || sep == nil || !noted {
			return &checker.CallEstimate{CostEstimate: checker.CostEstimate{Min: 0, Max: math.MaxUint64}}
		}
		// As library.CostEstimator estimates join: the items, the separators between them, and
		// twice the result's traversal.
		size := list.Multiply(checker.SizeEstimate{Min: 0, Max: item})
		seps := checker.SizeEstimate{Min: list.Min - min(list.Min, 1), Max: list.Max - min(list.Max, 1)}
		size = size.Add(sep.Multiply(seps))
		return &checker.CallEstimate{CostEstimate: size.MultiplyByCostFactor(2 * common.StringTraversalCostFactor), ResultSize: &size}
	}
	return b.CostEstimator.EstimateCallCost(function, overloadID, target, args)
}

// convertedSizes are the most characters string(x) makes of a number or a bool, by x's type:
// -9223372036854775808, 18446744073709551615, -1.7976931348623157e+308 (and room), false.
var convertedSizes = map[types.Kind]uint64{types.IntKind: 20, types.UintKind: 20, types.DoubleKind: 32, types.BoolKind: 5}

// joinKey is the k of @elem(f, k) and @join(l, sep, k): an int literal.
func joinKey(n checker.AstNode) int64 {
	k, _ := n.Expr().AsLiteral().(types.Int)
	return int64(k)
}

// sizeOf is the size CEL computed for n, or the estimator's; nil when neither knows it.
func sizeOf(b boundedEstimator, n checker.AstNode) *checker.SizeEstimate {
	if sz := n.ComputedSize(); sz != nil {
		return sz
	}
	return b.EstimateSize(n)
}

// boundedRequestFields are the fields of the request variable no longer than the object's
// strings (or than minBoundChars): its names, kinds, resources and operation.
var boundedRequestFields = map[string]bool{"kind": true, "resource": true, "subResource": true, "requestKind": true,
	"requestResource": true, "requestSubResource": true, "name": true, "namespace": true, "operation": true, "dryRun": true, "uid": true}

func (boundedSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}
