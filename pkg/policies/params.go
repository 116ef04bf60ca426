package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"k8s.io/apimachinery/pkg/util/validation/field"
	apiservercel "k8s.io/apiserver/pkg/cel"
	"k8s.io/apiserver/pkg/cel/library"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// The variables a policy's params and variables add to its CEL expressions.
const (
	varParams    = "params"
	varVariables = "variables"
)

// The bounds of params: they are held compiled with the policy, so their size is bounded like
// the policy's other fields; the depth bounds the recursion that types them.
const (
	// MaxParamsBytes bounds spec.params as JSON.
	MaxParamsBytes = 32 << 10
	// MaxParamsDepth bounds how deep spec.params nests.
	MaxParamsDepth = 16
)

// celScope is what a policy's params and variables add to its expressions: the params value,
// and the compiled variables in order. Every CEL rule of the policy shares it.
type celScope struct {
	params ref.Val // nil: the policy has no params
	// paramValues are the params as decoded, whose sizes the cost model knows.
	paramValues map[string]any
	variables   []*celVariable
	varsType    *apiservercel.DeclType // the object type whose fields are the variables
	varsTypeVal *types.Type            // its type as the variables' values give it (celVars)

	// What the untracked programs of its rules need (untracked.go): the declarations its
	// environment adds, to add them to the untracked one, built once, when a rule first
	// qualifies; and each variable as an expression of the others' definitions, to inline.
	declTypes []*apiservercel.DeclType
	declOpts  []cel.EnvOption
	inline    []*cel.InlineVariable
	fast      func() (*cel.Env, error)

	// paramsType is the type declared for params; nil: the policy has no params.
	paramsType *apiservercel.DeclType
	// env is the environment its expressions are planned in: the compiler's extended with the
	// declarations, shared by every policy that declares the same (envs.go).
	env *cel.Env
}

type celVariable struct {
	name    string
	twinned // its programs, as a rule's
	cost    uint64
	// needs are what the variable reads that only a request has, its variables' included.
	needs []string
}

// evaluate is the variable's value for one request, or the error that evaluating it gave.
func (v *celVariable) evaluate(in *input, act *activation) ref.Val {
	out, err := v.eval(in, act)
	if err != nil {
		return types.NewErr("variable %q: %v", v.name, err)
	}
	return out
}

// celIdentifier is a name CEL can select as a field.
var celIdentifier = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// celReserved are the words CEL reserves, which cannot be selected as fields (params.in).
var celReserved = []string{"as", "break", "const", "continue", "else", "false", "for", "function", "if",
	"import", "in", "let", "loop", "package", "namespace", "null", "return", "true", "var", "void", "while"}

// compileScope compiles a policy's params and variables into the environment its CEL rules
// compile in. A policy with neither gets the compiler's environment, and a nil scope.
// withUntracked also plans the variables' untracked twins, as compileCEL does the rules'.
func (c *Compiler) compileScope(spec *v1alpha1.PolicySpec, withUntracked bool, path *field.Path) (*cel.Env, *celScope, uint64, field.ErrorList) {
	if spec.Params == nil && len(spec.Variables) == 0 {
		return c.env, nil, 0, nil
	}
	scope := &celScope{varsType: apiservercel.NewObjectType("portcullis.variables", map[string]*apiservercel.DeclField{})}
	scope.varsTypeVal = cel.ObjectType(scope.varsType.TypeName(), traits.IndexerType|traits.FieldTesterType|traits.IterableType)
	declTypes := []*apiservercel.DeclType{scope.varsType}
	opts := []cel.EnvOption{cel.Variable(varVariables, scope.varsType.CelType())}
	var errs field.ErrorList
	if spec.Params != nil {
		value, err := decodeParams(spec.Params.Raw)
		if err != nil {
			return nil, nil, 0, field.ErrorList{field.Invalid(path.Child("params"), "", err.Error())}
		}
		t := paramsType(value)
		scope.paramValues, scope.paramsType = value, t
		if withUntracked {
			// Converted once, not at every read: a ClusterPolicy's, whose memory no tenant
			// budget bounds (a tenant's, up to MaxParamsBytes of tiny values, would be
			// several times that converted).
			scope.params = paramsVal(value)
		} else {
			scope.params = types.DefaultTypeAdapter.NativeToValue(value)
		}
		if t.IsObject() {
			declTypes = append(declTypes, t)
		}
		opts = append(opts, cel.Variable(varParams, t.CelType()))
	}
	scope.declTypes, scope.declOpts = declTypes, opts
	// The variables are typed one at a time, each in an environment that declares only the ones
	// before it, which are all it may read: a policy's own. Once they are all typed, the
	// declarations are final, and the scope's environment is the one every policy with the same
	// declarations shares (this one when it is the first); a policy with params alone has its
	// declarations final from the start.
	var env *cel.Env
	var err error
	if len(spec.Variables) == 0 {
		env, err = c.envs.get(envKey{c.env, scope.declKey()}, func() (*cel.Env, error) { return scope.extend(c.env) })
	} else {
		env, err = scope.extend(c.env)
	}
	if err != nil {
		return nil, nil, 0, field.ErrorList{field.InternalError(path, err)}
	}
	scope.fast = sync.OnceValues(func() (*cel.Env, error) {
		base, err := untrackedEnv()
		if err != nil {
			return nil, err
		}
		return c.envs.get(envKey{base, scope.declKey()}, func() (*cel.Env, error) { return scope.extend(base) })
	})
	var cost uint64
	seen := map[string]bool{}
	var asts []*cel.Ast
	var reads []int // how many of the variables before each its estimate inlines
	for i, v := range spec.Variables {
		p := path.Child("variables").Index(i)
		switch {
		case !celIdentifier.MatchString(v.Name):
			errs = append(errs, field.Invalid(p.Child("name"), v.Name, "must be a CEL identifier: a letter or _, then letters, digits or _"))
			continue
		case seen[v.Name]:
			errs = append(errs, field.Duplicate(p.Child("name"), v.Name))
			continue
		}
		seen[v.Name] = true
		p = path.Child(fmt.Sprintf("variables[%d] (%s)", i, v.Name))
		ast, vcost, needs, err := checkTyped(env, v.Expression, nil, scope)
		if err != nil {
			errs = append(errs, field.Invalid(p.Child("expression"), v.Expression, err.Error()))
			// Declared all the same, as dyn: the rules that read it are not also reported.
			scope.varsType.Fields[v.Name] = apiservercel.NewDeclField(v.Name, apiservercel.DynType, true, nil, nil)
			continue
		}
		scope.varsType.Fields[v.Name] = apiservercel.NewDeclField(v.Name, declTypeOf(ast.OutputType()), true, nil, nil)
		scope.variables = append(scope.variables, &celVariable{name: v.Name, cost: vcost, needs: needs}) // planned below
		asts = append(asts, ast)
		reads = append(reads, len(scope.inline))
		if inlined, ok := inlineVariables(env, ast, scope.inline); ok { // else its readers stay tracked
			scope.inline = append(scope.inline, cel.NewInlineVariableWithAlias(varVariables+"."+v.Name, "__variables_"+v.Name, inlined))
		}
		cost = addCost(cost, vcost)
	}
	if len(spec.Variables) > 0 { // a variable that did not compile is declared dyn, in the key too
		private := env
		if env, err = c.envs.get(envKey{c.env, scope.declKey()}, func() (*cel.Env, error) { return private, nil }); err != nil {
			return nil, nil, 0, field.ErrorList{field.InternalError(path, err)}
		}
	}
	scope.env = env
	if len(errs) == 0 { // else the policy is not evaluated: its rules compile to report their errors
		// Once every variable is declared (the untracked environment is built once, with all of
		// them); each is estimated with the ones before it, which are all it may read, inlined.
		for i, v := range scope.variables {
			before := *scope
			before.inline = scope.inline[:reads[i]]
			planned, twinErr, err := planTwinned(env, asts[i], &before, withUntracked, false)
			if twinErr != nil {
				errs = append(errs, field.InternalError(path.Child("variables").Index(i).Child("expression"), twinErr))
			}
			if err != nil {
				errs = append(errs, field.InternalError(path.Child("variables").Index(i).Child("expression"), err))
			}
			v.twinned = planned
		}
	}
	return env, scope, cost, errs
}

// extend is base with the scope's declarations: its params and variables, and their types.
func (s *celScope) extend(base *cel.Env) (*cel.Env, error) {
	return extendDeclaring(base, s.declTypes, s.declOpts)
}

// needsOf returns what variable name reads that only a request has.
func (s *celScope) needsOf(name string) []string {
	if s == nil {
		return nil
	}
	for _, v := range s.variables {
		if v.name == name {
			return v.needs
		}
	}
	return nil
}

// estimator is the cost model of the scope's expressions: params have the sizes of their
// values, known when the policy compiles, so a loop over a list of ten registries is estimated
// at ten, not at EstimateSize.
func (s *celScope) estimator() checker.CostEstimator {
	if s == nil || s.paramValues == nil {
		return costEstimator
	}
	return &library.CostEstimator{SizeEstimator: paramSizes{s.paramValues}}
}

// paramSizes estimates the size of params, and of everything else as referenceSizes does.
type paramSizes struct{ params map[string]any }

func (p paramSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if path := n.Path(); len(path) > 0 && path[0] == varParams {
		if size, ok := sizeAt(p.params, path[1:]); ok {
			return &checker.SizeEstimate{Min: 0, Max: size}
		}
	}
	return referenceSizes{}.EstimateSize(n)
}

func (paramSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// sizeAt is the largest size of the values at path in v, a path of the cost model: field
// names, and @items, @keys, @values, @indices for the elements of a list or map.
func sizeAt(v any, path []string) (uint64, bool) {
	if len(path) == 0 {
		switch v := v.(type) {
		case string:
			return uint64(len(v)), true
		case []any:
			return uint64(len(v)), true
		case map[string]any:
			return uint64(len(v)), true
		}
		return 1, true
	}
	var elems []any
	switch v := v.(type) {
	case map[string]any:
		switch path[0] {
		case "@keys":
			for k := range v {
				elems = append(elems, k)
			}
		case "@values", "@items":
			for _, e := range v {
				elems = append(elems, e)
			}
		default:
			e, ok := v[path[0]]
			if !ok {
				return 0, false
			}
			return sizeAt(e, path[1:])
		}
	case []any:
		switch path[0] {
		case "@items", "@values":
			elems = v
		case "@indices":
			return 1, true
		default:
			return 0, false
		}
	default:
		return 0, false
	}
	var largest uint64
	for _, e := range elems {
		size, ok := sizeAt(e, path[1:])
		if !ok {
			return 0, false
		}
		largest = max(largest, size)
	}
	return largest, true
}

// paramsVal is params' value as CEL sees it (what types.DefaultTypeAdapter.NativeToValue makes of
// it), with every map and list converted at once: the adapter's views convert an element at every
// read.
func paramsVal(v any) ref.Val {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[ref.Val]ref.Val, len(v))
		for k, e := range v {
			m[types.String(k)] = paramsVal(e)
		}
		return types.NewRefValMap(types.DefaultTypeAdapter, m)
	case []any:
		l := make([]ref.Val, len(v))
		for i, e := range v {
			l[i] = paramsVal(e)
		}
		return types.NewRefValList(types.DefaultTypeAdapter, l)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

// decodeParams decodes params as JSON: an object, at most MaxParamsDepth deep, whose whole
// numbers are ints (CEL's int), others doubles.
func decodeParams(raw []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not one JSON value")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be an object, not %s", jsonKind(v))
	}
	if len(m) > MaxListItems {
		return nil, fmt.Errorf("has %d keys, more than %d", len(m), MaxListItems)
	}
	out, err := paramValue(m, 1)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

// paramValue converts numbers, and bounds the depth.
func paramValue(v any, depth int) (any, error) {
	if depth > MaxParamsDepth {
		return nil, fmt.Errorf("nests deeper than %d levels", MaxParamsDepth)
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			c, err := paramValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			v[k] = c
		}
	case []any:
		for i, e := range v {
			c, err := paramValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			v[i] = c
		}
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) {
			return nil, fmt.Errorf("number %s is out of range", v)
		}
		return f, nil
	}
	return v, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "an object"
}

// paramsType is the CEL type of params: an object whose fields are its keys, each typed by its
// value, so that a misspelt params.field is a compile error. Within, an object is a map from
// string to its values' type, a list a list of its items' type; values of mixed types, and
// empty lists and maps, are dyn. Params with a key CEL cannot select are a map(string, dyn).
func paramsType(params map[string]any) *apiservercel.DeclType {
	fields := map[string]*apiservercel.DeclField{}
	for k, v := range params {
		if !celIdentifier.MatchString(k) || slices.Contains(celReserved, k) {
			return apiservercel.NewMapType(apiservercel.StringType, apiservercel.DynType, -1)
		}
		fields[k] = apiservercel.NewDeclField(k, valueType(v), true, nil, nil)
	}
	return apiservercel.NewObjectType("portcullis.params", fields)
}

func valueType(v any) *apiservercel.DeclType {
	switch v := v.(type) {
	case string:
		return apiservercel.StringType
	case bool:
		return apiservercel.BoolType
	case int64:
		return apiservercel.IntType
	case float64:
		return apiservercel.DoubleType
	case []any:
		return apiservercel.NewListType(commonType(v), -1)
	case map[string]any:
		items := make([]any, 0, len(v))
		for _, e := range v {
			items = append(items, e)
		}
		return apiservercel.NewMapType(apiservercel.StringType, commonType(items), -1)
	}
	return apiservercel.DynType // null
}

// commonType is the type every item has, or dyn.
func commonType(items []any) *apiservercel.DeclType {
	if len(items) == 0 {
		return apiservercel.DynType
	}
	t := valueType(items[0])
	for _, e := range items[1:] {
		if !valueType(e).CelType().IsExactType(t.CelType()) {
			return apiservercel.DynType
		}
	}
	return t
}

// declTypeOf is the declared type of a variable whose expression has CEL type t: its
// primitives, lists and maps as they are, anything else dyn.
func declTypeOf(t *cel.Type) *apiservercel.DeclType {
	for _, p := range []*apiservercel.DeclType{apiservercel.BoolType, apiservercel.BytesType, apiservercel.DoubleType,
		apiservercel.DurationType, apiservercel.IntType, apiservercel.NullType, apiservercel.StringType,
		apiservercel.TimestampType, apiservercel.UintType} {
		if t.IsExactType(p.CelType()) {
			return p
		}
	}
	if t.HasTrait(traits.ContainerType) && t.HasTrait(traits.IndexerType) {
		switch ps := t.Parameters(); len(ps) {
		case 1:
			return apiservercel.NewListType(declTypeOf(ps[0]), -1)
		case 2:
			return apiservercel.NewMapType(declTypeOf(ps[0]), declTypeOf(ps[1]), -1)
		}
	}
	return apiservercel.DynType
}

// scopeBudgetRules is what a policy's own CEL environment (it has params or variables) counts
// against the tenant budgets: about 60 KiB of heap (a tenant's one-rule Policy with params of
// its own holds 79 KiB, 20 KiB without), about as much as two CEL rules. It counts even when the
// environment is shared with another policy's (envs.go): a tenant can make each of its policies
// declare something of its own.
const scopeBudgetRules = 2

// BudgetRules is what a policy counts against the tenant budgets' rules, which bound the memory
// of compiled tenant policies: its rules, its variables and its attestation conditions, each a
// compiled CEL program the server holds, and scopeBudgetRules for its own CEL environment when
// it has params or variables.
func BudgetRules(spec *v1alpha1.PolicySpec) int {
	n := len(spec.Rules) + len(spec.Variables)
	if spec.Params != nil || len(spec.Variables) > 0 {
		n += scopeBudgetRules
	}
	// Attestation conditions are compiled programs too (in one shared environment).
	for _, r := range spec.Rules {
		if r.VerifyImages != nil {
			for _, a := range r.VerifyImages.Attestations {
				n += len(a.Conditions)
			}
		}
	}
	return n
}
