package policies

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/decls"
	"github.com/google/cel-go/common/functions"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// Direct evaluation of untracked programs.
//
// An untracked program (untracked.go) runs where its estimate already bounds its cost, so all
// its interpreter does is walk the expression: resolve each attribute through the activation
// and a chain of qualifiers, bind each comprehension's variables in an activation of their own,
// and dispatch each call. That walk, not the functions called, is much of what a rule of the
// usual shapes costs (field paths, optional fields with defaults, all and exists over lists,
// string predicates, comparisons). A directProgram is the same checked expression compiled to Go
// closures over the same CEL values, calling the same function bindings as the interpreter: the
// environment's own (decls.FunctionDecl.Bindings), found by the overload the type checker
// resolved, as the interpreter's planner finds them.
//
// It answers only when it is sure: any error or unknown value it reaches, and any value it does
// not handle, makes it hand the whole evaluation to the interpreter's program, which then gives
// the error (or value) it always did. So it can cost the rule at most one evaluation more, on
// requests whose rules fail to evaluate, and it never answers differently: where CEL absorbs an
// error (false && error is false), the answer does not depend on the error's text, and where it
// does not, the interpreter runs. TestDirectAgrees holds the two equal on every policy of the
// library, the examples and the load harness, and on hand-written edge cases, over the test
// objects (fields present, absent, empty; Pods, workloads, Services, Secrets, custom
// resources), and requires direct evaluation to answer wherever the interpreter gives a value;
// FuzzDirectAgrees does the same over any Pod.
//
// An expression with a construct it does not compile (a message literal, a map literal with
// entries, a type's name, a call with no binding) keeps the interpreter alone.

// directEval evaluates one node of an expression.
type directEval func(*directFrame) ref.Val

// directFrame is one evaluation's state: the activation and the comprehensions' variables.
type directFrame struct {
	act   interpreter.Activation
	slots []ref.Val
}

// directProgram is an untracked program evaluated directly where it can be, and by the
// interpreter otherwise. It is safe for concurrent use, as the interpreter's programs are.
type directProgram struct {
	cel.Program // the interpreter's, for everything direct evaluation does not answer
	eval        directEval
	slots       int
}

// Eval answers from direct evaluation when it gives a value, else from the interpreter.
func (p *directProgram) Eval(vars any) (ref.Val, *cel.EvalDetails, error) {
	if out := p.direct(vars); out != nil {
		return out, nil, nil
	}
	return p.Program.Eval(vars)
}

// ContextEval is Eval: the program's cost is bounded before it runs, so direct evaluation has
// nothing to interrupt; the interpreter, when it runs, is given ctx.
func (p *directProgram) ContextEval(ctx context.Context, vars any) (ref.Val, *cel.EvalDetails, error) {
	if out := p.direct(vars); out != nil {
		return out, nil, nil
	}
	return p.Program.ContextEval(ctx, vars)
}

// direct is the expression's value, or nil when direct evaluation cannot answer. A panic in a
// function it calls is the interpreter's to report, as it recovers from them.
func (p *directProgram) direct(vars any) (out ref.Val) {
	act, ok := vars.(interpreter.Activation)
	if !ok {
		return nil
	}
	f := directFrames.Get().(*directFrame) //nolint:forcetypeassert // the pool holds nothing else
	defer func() {
		if recover() != nil {
			out = nil
			return // the frame is dropped, not reused
		}
		clear(f.slots) // the request's values, not to be kept alive by the pool
		f.act = nil
		directFrames.Put(f)
	}()
	f.act = act
	if cap(f.slots) < p.slots {
		f.slots = make([]ref.Val, p.slots)
	}
	f.slots = f.slots[:p.slots]
	if out = p.eval(f); out == nil || types.IsUnknownOrError(out) {
		return nil
	}
	return out
}

// directFrames are frames to reuse: one is taken for every evaluation.
var directFrames = sync.Pool{New: func() any { return new(directFrame) }}

// withDirect is prog with direct evaluation of ast, checked in env; prog itself when ast has a
// construct that direct evaluation does not compile.
func withDirect(env *cel.Env, ast *cel.Ast, prog cel.Program) cel.Program {
	eval, slots, err := compileDirect(env, ast)
	if err != nil {
		return prog
	}
	return &directProgram{Program: prog, eval: eval, slots: slots}
}

// compileDirect compiles a checked expression to closures, with the number of comprehension
// variables they bind.
func compileDirect(env *cel.Env, ast *cel.Ast) (directEval, int, error) {
	if !ast.IsChecked() {
		return nil, 0, errDirectUnsupported
	}
	native := ast.NativeRep()
	c := &directCompiler{
		adapter: env.CELTypeAdapter(),
		refs:    native.ReferenceMap(),
		typeMap: native.TypeMap(),
		fns:     env.Functions(),
	}
	eval, err := c.compile(native.Expr())
	if err != nil {
		return nil, 0, err
	}
	return eval, c.slots, nil
}

// errDirectUnsupported is what compileDirect returns for what it does not compile.
var errDirectUnsupported = fmt.Errorf("not compiled for direct evaluation")

// directCompiler compiles one checked expression.
type directCompiler struct {
	adapter types.Adapter
	refs    map[int64]*celast.ReferenceInfo
	typeMap map[int64]*types.Type
	fns     map[string]*decls.FunctionDecl
	// locals are the comprehension variables in scope, innermost last, and their slots.
	locals []directLocal
	slots  int
}

type directLocal struct {
	name string
	slot int
}

func (c *directCompiler) compile(e celast.Expr) (directEval, error) {
	switch e.Kind() {
	case celast.LiteralKind:
		return constant(e.AsLiteral()), nil
	case celast.IdentKind:
		return c.ident(e.ID(), e.AsIdent())
	case celast.SelectKind:
		if r, ok := c.refs[e.ID()]; ok { // a qualified name, resolved by the checker
			return c.ident(e.ID(), r.Name)
		}
		return c.selectField(e.AsSelect())
	case celast.CallKind:
		return c.call(e)
	case celast.ListKind:
		return c.list(e.AsList())
	case celast.MapKind:
		if e.AsMap().Size() == 0 { // made once, as the interpreter's optimizer folds it
			return constant(types.NewRefValMap(c.adapter, map[ref.Val]ref.Val{})), nil
		}
	case celast.ComprehensionKind:
		if collect, err := c.collect(e); collect != nil || err != nil {
			return collect, err
		}
		return c.comprehension(e.AsComprehension())
	}
	return nil, errDirectUnsupported
}

func constant(v ref.Val) directEval { return func(*directFrame) ref.Val { return v } }

// ident is a variable: a comprehension's, or one the activation resolves (as the
// interpreter's absolute attribute does, in an environment without a container).
func (c *directCompiler) ident(id int64, name string) (directEval, error) {
	if r, ok := c.refs[id]; ok {
		if r.Value != nil {
			return constant(r.Value), nil
		}
		if t, ok := c.typeMap[id]; ok && t.Kind() == types.TypeKind {
			return nil, errDirectUnsupported // a type's name
		}
		name = r.Name
	}
	for i := len(c.locals) - 1; i >= 0; i-- {
		if c.locals[i].name == name {
			slot := c.locals[i].slot
			return func(f *directFrame) ref.Val { return f.slots[slot] }, nil
		}
	}
	adapter := c.adapter
	return func(f *directFrame) ref.Val {
		v, found := f.act.ResolveName(name)
		if !found {
			return types.NewErr("no such attribute: %s", name)
		}
		return adapter.NativeToValue(v)
	}, nil
}

// selectField is operand.field, or has(operand.field).
func (c *directCompiler) selectField(sel celast.SelectExpr) (directEval, error) {
	operand, err := c.compile(sel.Operand())
	if err != nil {
		return nil, err
	}
	var field ref.Val = types.String(sel.FieldName()) // boxed once, not at every evaluation
	adapter := c.adapter
	if sel.IsTestOnly() {
		return func(f *directFrame) ref.Val {
			obj := operand(f)
			if types.IsUnknownOrError(obj) {
				return obj
			}
			if opt, ok := obj.(*types.Optional); ok {
				if !opt.HasValue() {
					return types.False
				}
				obj = opt.GetValue()
			}
			_, present, err := qualify(obj, field, true, true)
			if err != nil {
				return err
			}
			return types.Bool(present)
		}, nil
	}
	return func(f *directFrame) ref.Val { return qualified(adapter, operand(f), field, false) }, nil
}

// qualified is obj[key] (obj.key): optional, obj.?key, an optional of it when present; any
// qualification of an optional value is optional too, as in the interpreter's attributes.
func qualified(adapter types.Adapter, obj, key ref.Val, optional bool) ref.Val {
	if types.IsUnknownOrError(obj) {
		return obj
	}
	if types.IsUnknownOrError(key) {
		return key
	}
	if _, ok := key.(types.Double); ok {
		return errDirect // the interpreter's double qualifier: left to it
	}
	if opt, ok := obj.(*types.Optional); ok {
		if !opt.HasValue() {
			return types.OptionalNone
		}
		obj, optional = opt.GetValue(), true
	}
	val, present, err := qualify(obj, key, optional, false)
	switch {
	case err != nil:
		return err
	case !optional:
		return adapter.NativeToValue(val)
	case !present:
		return types.OptionalNone
	}
	val = adapter.NativeToValue(val)
	if types.IsUnknown(val) {
		return val
	}
	return types.OptionalOf(val)
}

// errDirect stands for a value direct evaluation leaves to the interpreter.
var errDirect = types.NewErr("left to the interpreter")

// qualify is the interpreter's qualification of a CEL value by a key (refQualify, in an
// environment that does not make a bad presence test an error): the value, whether it is
// present, or an error (nil when there is none).
func qualify(obj, key ref.Val, presenceTest, presenceOnly bool) (ref.Val, bool, ref.Val) {
	switch v := obj.(type) {
	case *types.Err:
		return nil, false, v
	case *types.Unknown:
		return nil, false, errDirect
	case traits.Mapper:
		val, found := v.Find(key)
		if e, ok := val.(*types.Err); ok {
			return nil, false, e
		}
		if found {
			return val, true, nil
		}
		if presenceTest {
			return nil, false, nil
		}
		return nil, false, errDirect // no such key
	case traits.Lister:
		i, err := types.IndexOrError(key)
		if err != nil {
			return nil, false, errDirect
		}
		if i >= 0 && types.Int(i) < v.Size().(types.Int) { //nolint:forcetypeassert // a list's size is an int
			return v.Get(key), true, nil
		}
		if presenceTest {
			return nil, false, nil
		}
		return nil, false, errDirect // no such index
	case traits.Indexer:
		if presenceTest {
			if ft, ok := v.(traits.FieldTester); ok {
				presence := ft.IsSet(key)
				if e, ok := presence.(*types.Err); ok {
					return nil, false, e
				}
				if presenceOnly || presence == types.False {
					return nil, presence == types.True, nil
				}
			}
		}
		val := v.Get(key)
		if e, ok := val.(*types.Err); ok {
			return nil, false, e
		}
		return val, true, nil
	}
	if presenceTest {
		return nil, false, nil
	}
	return nil, false, errDirect // no such key
}

func (c *directCompiler) args(e celast.Expr) ([]directEval, error) {
	call := e.AsCall()
	var exprs []celast.Expr
	if call.IsMemberFunction() {
		exprs = append(exprs, call.Target())
	}
	exprs = append(exprs, call.Args()...)
	args := make([]directEval, len(exprs))
	for i, a := range exprs {
		var err error
		if args[i], err = c.compile(a); err != nil {
			return nil, err
		}
	}
	return args, nil
}

func (c *directCompiler) call(e celast.Expr) (directEval, error) {
	args, err := c.args(e)
	if err != nil {
		return nil, err
	}
	fn := e.AsCall().FunctionName()
	adapter := c.adapter
	switch fn {
	case operators.LogicalAnd:
		return logical(args, types.False), nil
	case operators.LogicalOr:
		return logical(args, types.True), nil
	case operators.Conditional:
		return conditional(args[0], args[1], args[2]), nil
	case operators.Equals, operators.NotEquals:
		lhs, rhs, ne := args[0], args[1], fn == operators.NotEquals
		return func(f *directFrame) ref.Val {
			l, r := lhs(f), rhs(f)
			if types.IsUnknownOrError(l) {
				return l
			}
			if types.IsUnknownOrError(r) {
				return r
			}
			eq := types.Equal(l, r)
			if ne {
				return types.Bool(eq != types.True)
			}
			return eq
		}, nil
	case operators.Index, operators.OptSelect, operators.OptIndex:
		obj, key, optional := args[0], args[1], fn != operators.Index
		return func(f *directFrame) ref.Val { return qualified(adapter, obj(f), key(f), optional) }, nil
	}
	overload := ""
	if r, ok := c.refs[e.ID()]; ok && len(r.OverloadIDs) == 1 {
		overload = r.OverloadIDs[0]
	}
	switch {
	case (overload == overloads.Matches || overload == overloads.MatchesString) && len(args) == 2:
		return matching(args[0], args[1]), nil
	case fn == "or" && len(args) == 2 && (overload == "" || overload == "optional_or_optional"):
		return optionalOr(args[0], args[1], false), nil
	case fn == "orValue" && len(args) == 2 && (overload == "" || overload == "optional_orValue_value"):
		return optionalOr(args[0], args[1], true), nil
	}
	impl, err := c.binding(fn, overload)
	if err != nil {
		return nil, err
	}
	return callBinding(impl, args, overload)
}

// unshielded are the bindings of a few functions that every rule calls, for the operand types
// they are for: the same values as the bindings give, without the type guards the environment
// puts around them (which check the operands' types against the overload's, in the interpreter
// as here). nil means the operands are not of those types: the binding is called.
var (
	unshieldedUnary = map[string]func(ref.Val) ref.Val{
		overloads.LogicalNot: func(v ref.Val) ref.Val {
			if b, ok := v.(types.Bool); ok {
				return !b
			}
			return nil
		},
		overloads.NotStrictlyFalse: func(v ref.Val) ref.Val { // non-strict: an error is not false
			if b, ok := v.(types.Bool); ok {
				return b
			}
			return types.True
		},
	}
	unshieldedBinary = map[string]func(ref.Val, ref.Val) ref.Val{
		overloads.StartsWithString: stringPredicate(strings.HasPrefix),
		overloads.EndsWithString:   stringPredicate(strings.HasSuffix),
		overloads.ContainsString:   stringPredicate(strings.Contains),
	}
)

func stringPredicate(pred func(s, t string) bool) func(ref.Val, ref.Val) ref.Val {
	return func(l, r ref.Val) ref.Val {
		s, ok := l.(types.String)
		t, ok2 := r.(types.String)
		if !ok || !ok2 {
			return nil
		}
		return types.Bool(pred(string(s), string(t)))
	}
}

// binding is the implementation the interpreter's dispatcher holds for the overload the checker
// resolved, else for the function's name (which dispatches on the arguments' types).
func (c *directCompiler) binding(fn, overload string) (*functions.Overload, error) {
	bindings, err := c.fns[fn].Bindings()
	if err != nil {
		return nil, err
	}
	var byName *functions.Overload
	for _, b := range bindings {
		switch b.Operator {
		case overload:
			return b, nil
		case fn:
			byName = b
		}
	}
	if byName == nil {
		return nil, errDirectUnsupported
	}
	return byName, nil
}

// callBinding calls impl as the interpreter's evalUnary, evalBinary and evalVarArgs do: a
// strict function is not called on an error or unknown, which is its value; an operand without
// the trait impl needs is left to the interpreter (which would try it as a receiver).
func callBinding(impl *functions.Overload, args []directEval, overload string) (directEval, error) {
	strict, trait := !impl.NonStrict, impl.OperandTrait
	callable := func(arg0 ref.Val) bool {
		return trait == 0 || (!strict && types.IsUnknownOrError(arg0)) || arg0.Type().HasTrait(trait)
	}
	switch {
	case len(args) == 0 && impl.Function != nil:
		fn := impl.Function
		return func(*directFrame) ref.Val { return fn() }, nil
	case len(args) == 1 && impl.Unary != nil:
		fn, arg, unshielded := impl.Unary, args[0], unshieldedUnary[overload]
		return func(f *directFrame) ref.Val {
			v := arg(f)
			if unshielded != nil {
				if out := unshielded(v); out != nil {
					return out
				}
			}
			if strict && types.IsUnknownOrError(v) {
				return v
			}
			if !callable(v) {
				return errDirect
			}
			return fn(v)
		}, nil
	case len(args) == 2 && impl.Binary != nil:
		fn, lhs, rhs, unshielded := impl.Binary, args[0], args[1], unshieldedBinary[overload]
		return func(f *directFrame) ref.Val {
			l, r := lhs(f), rhs(f)
			if unshielded != nil {
				if out := unshielded(l, r); out != nil {
					return out
				}
			}
			if strict {
				if types.IsUnknownOrError(l) {
					return l
				}
				if types.IsUnknownOrError(r) {
					return r
				}
			}
			if !callable(l) {
				return errDirect
			}
			return fn(l, r)
		}, nil
	case len(args) > 0 && impl.Function != nil: // more operands, or no unary or binary form
		fn := impl.Function
		return func(f *directFrame) ref.Val {
			vals := make([]ref.Val, len(args))
			for i, arg := range args {
				vals[i] = arg(f)
				if strict && types.IsUnknownOrError(vals[i]) {
					return vals[i]
				}
			}
			if !callable(vals[0]) {
				return errDirect
			}
			return fn(vals...)
		}, nil
	}
	return nil, errDirectUnsupported
}

// logical is && (absorbing false) or || (absorbing true) over terms: the absorbing value if any
// term has it, else an error or unknown if a term is one, else the other value.
func logical(terms []directEval, absorbing types.Bool) directEval {
	return func(f *directFrame) ref.Val {
		var failed ref.Val
		for _, term := range terms {
			v := term(f)
			b, ok := v.(types.Bool)
			switch {
			case ok && b == absorbing:
				return absorbing
			case !ok && failed == nil:
				failed = v
			}
		}
		if failed != nil {
			if types.IsUnknownOrError(failed) {
				return failed
			}
			return errDirect // not a bool: no such overload
		}
		return !absorbing
	}
}

// conditional is cond ? t : e.
func conditional(cond, t, e directEval) directEval {
	return func(f *directFrame) ref.Val {
		switch c := cond(f); c {
		case types.True:
			return t(f)
		case types.False:
			return e(f)
		default:
			if types.IsUnknownOrError(c) {
				return c
			}
			return errDirect // not a bool: no such overload
		}
	}
}

// optionalOr is opt.or(other) or, value, opt.orValue(other), which the optional library's
// decorator makes short-circuit: other is evaluated only when opt is none.
func optionalOr(opt, other directEval, value bool) directEval {
	return func(f *directFrame) ref.Val {
		switch v := opt(f).(type) {
		case *types.Optional:
			switch {
			case !v.HasValue():
				return other(f)
			case value:
				return v.GetValue()
			}
			return v
		case *types.Err, *types.Unknown:
			return v
		}
		return errDirect // no such overload
	}
}

// matching is s.matches(pattern) with the patterns cached, as cachedMatches gives the
// interpreter's programs.
func matching(str, pattern directEval) directEval {
	cache := &regexCache{}
	return func(f *directFrame) ref.Val {
		s, p := str(f), pattern(f)
		switch {
		case types.IsUnknownOrError(s):
			return s
		case types.IsUnknownOrError(p):
			return p
		}
		if out := cache.match(s, p); out != nil {
			return out
		}
		return errDirect // not two strings: the interpreter tries its receiver
	}
}

// list is a list literal, whose optional elements are left out when absent.
func (c *directCompiler) list(l celast.ListExpr) (directEval, error) {
	if lit := literalList(c.adapter, l); lit != nil {
		return constant(lit), nil
	}
	elems := make([]directEval, len(l.Elements()))
	for i, e := range l.Elements() {
		var err error
		if elems[i], err = c.compile(e); err != nil {
			return nil, err
		}
	}
	optional := make([]bool, len(elems))
	for _, i := range l.OptionalIndices() {
		if i < 0 || int(i) >= len(elems) {
			return nil, errDirectUnsupported
		}
		optional[i] = true
	}
	adapter := c.adapter
	return func(f *directFrame) ref.Val {
		vals := make([]ref.Val, 0, len(elems))
		for i, elem := range elems {
			v := elem(f)
			if types.IsUnknownOrError(v) {
				return v
			}
			if optional[i] {
				opt, ok := v.(*types.Optional)
				if !ok {
					return errDirect
				}
				if !opt.HasValue() {
					continue
				}
				v = opt.GetValue()
			}
			vals = append(vals, v)
		}
		return types.NewRefValList(adapter, vals)
	}, nil
}

// comprehension is a fold, as the interpreter's evalFold runs one that is not exhaustive: the
// range's elements (a map's keys) bound in turn while the condition is not false, the
// accumulator starting as its initial value (an empty list or map one that the steps append
// to), the result evaluated at the end.
func (c *directCompiler) comprehension(comp celast.ComprehensionExpr) (directEval, error) {
	iterRange, err := c.compile(comp.IterRange())
	if err != nil {
		return nil, err
	}
	accuInit, err := c.compile(comp.AccuInit())
	if err != nil {
		return nil, err
	}
	scope := len(c.locals)
	accu := c.local(comp.AccuVar())
	iter := c.local(comp.IterVar())
	iter2 := -1
	if comp.HasIterVar2() {
		iter2 = c.local(comp.IterVar2())
	}
	cond, err := c.compile(comp.LoopCondition())
	if err != nil {
		return nil, err
	}
	step, err := c.compile(comp.LoopStep())
	if err != nil {
		return nil, err
	}
	c.locals = c.locals[:scope+1] // the result sees the accumulator, not the iteration variables
	result, err := c.compile(comp.Result())
	if err != nil {
		return nil, err
	}
	c.locals = c.locals[:scope]
	loop := &directLoop{adapter: c.adapter, accu: accu, iter: iter, iter2: iter2, cond: cond, step: step}
	return func(f *directFrame) ref.Val {
		r := iterRange(f)
		if types.IsUnknownOrError(r) {
			return r
		}
		init := accuInit(f)
		mutable := false
		if l, ok := init.(traits.Lister); ok && l.Size() == types.IntZero {
			init, mutable = types.NewMutableList(loop.adapter), true
		} else if m, ok := init.(traits.Mapper); ok && m.Size() == types.IntZero {
			init, mutable = types.NewMutableMap(loop.adapter, map[ref.Val]ref.Val{}), true
		}
		f.slots[accu] = init
		if iter2 >= 0 {
			var foldable traits.Foldable
			switch rv := r.(type) {
			case traits.Mapper:
				foldable = types.ToFoldableMap(rv)
			case traits.Lister:
				foldable = types.ToFoldableList(rv)
			default:
				return errDirect
			}
			foldable.Fold(directFolder{loop, f})
		} else if !each(loop.adapter, r, func(v ref.Val) bool { return loop.next(f, v, nil) }) {
			return errDirect
		}
		out := result(f)
		if mutable && !types.IsUnknownOrError(out) {
			switch m := out.(type) {
			case traits.MutableLister:
				out = m.ToImmutableList()
			case traits.MutableMapper:
				out = m.ToImmutableMap()
			}
		}
		return out
	}, nil
}

// each calls fn with each element of the list r (each key of the map r) in turn while fn returns
// true; false when r cannot be iterated. A list is read by index: its iterator would be one more
// allocation per loop.
func each(adapter types.Adapter, r ref.Val, fn func(ref.Val) bool) bool {
	if !r.Type().HasTrait(traits.IterableType) {
		return false
	}
	if l, ok := r.(traits.Lister); ok && r.Type() == types.ListType {
		n, ok := l.Size().(types.Int)
		if !ok {
			return false
		}
		for i := types.IntZero; i < n; i++ {
			v := l.Get(i)
			if types.IsError(v) { // an index in range: a list that cannot be read so
				return false
			}
			if !fn(v) {
				break
			}
		}
		return true
	}
	iterable, ok := r.(traits.Iterable)
	if !ok {
		return false
	}
	for it := iterable.Iterator(); it.HasNext() == types.True; {
		if !fn(adapter.NativeToValue(it.Next())) {
			break
		}
	}
	return true
}

// collect is the map and filter macros (loopItem) whose loop condition is true: the items kept,
// gathered in one slice and made a list at the end, where the comprehension would make a list of
// each item to append it. Any item or predicate that is not a value (a predicate that is not a
// bool) leaves the evaluation to the interpreter. nil, and no error, for any other comprehension.
func (c *directCompiler) collect(e celast.Expr) (directEval, error) {
	kept, ok := loopItem(e)
	comp := e.AsComprehension()
	if !ok || comp.LoopCondition().Kind() != celast.LiteralKind || comp.LoopCondition().AsLiteral() != types.True {
		return nil, nil
	}
	iterRange, err := c.compile(comp.IterRange())
	if err != nil {
		return nil, err
	}
	scope := len(c.locals)
	c.local(comp.AccuVar()) // read by neither the item nor the predicate (loopItem)
	iter := c.local(comp.IterVar())
	var pred directEval
	if step := comp.LoopStep().AsCall(); step.FunctionName() == operators.Conditional {
		if pred, err = c.compile(step.Args()[0]); err != nil {
			return nil, err
		}
	}
	item, err := c.compile(kept.AsList().Elements()[0])
	if err != nil {
		return nil, err
	}
	c.locals = c.locals[:scope]
	adapter := c.adapter
	return func(f *directFrame) ref.Val {
		r := iterRange(f)
		if types.IsUnknownOrError(r) {
			return r
		}
		var vals []ref.Val
		failed := false
		iterated := each(adapter, r, func(v ref.Val) bool {
			f.slots[iter] = v
			if pred != nil {
				if keep, isBool := pred(f).(types.Bool); !isBool {
					failed = true
					return false
				} else if !keep {
					return true
				}
			}
			if v = item(f); types.IsUnknownOrError(v) {
				failed = true
				return false
			}
			vals = append(vals, v)
			return true
		})
		if !iterated || failed {
			return errDirect
		}
		return types.NewRefValList(adapter, vals)
	}, nil
}

// directLoop is a comprehension's loop.
type directLoop struct {
	adapter           types.Adapter
	accu, iter, iter2 int // slots; iter2 < 0 when there is no second variable
	cond, step        directEval
}

// next binds one element (or key and value) and runs one step: false when the condition, not
// true, says to stop.
func (l *directLoop) next(f *directFrame, v1, v2 ref.Val) bool {
	f.slots[l.iter] = v1
	if l.iter2 >= 0 {
		f.slots[l.iter2] = v2
	}
	if b, ok := l.cond(f).(types.Bool); ok && b != types.True {
		return false
	}
	f.slots[l.accu] = l.step(f)
	return true
}

// directFolder folds a two-variable comprehension's entries.
type directFolder struct {
	loop *directLoop
	f    *directFrame
}

func (d directFolder) FoldEntry(key, val any) bool {
	return d.loop.next(d.f, d.loop.adapter.NativeToValue(key), d.loop.adapter.NativeToValue(val))
}

// local puts a comprehension variable in scope, in a slot of its own.
func (c *directCompiler) local(name string) int {
	slot := c.slots
	c.slots++
	c.locals = append(c.locals, directLocal{name: name, slot: slot})
	return slot
}

// literalList is a list literal of literals, made once (as the interpreter's optimizer folds it);
// nil for any other.
func literalList(adapter types.Adapter, l celast.ListExpr) ref.Val {
	if len(l.OptionalIndices()) > 0 {
		return nil
	}
	vals := make([]ref.Val, len(l.Elements()))
	for i, e := range l.Elements() {
		if e.Kind() != celast.LiteralKind {
			return nil
		}
		vals[i] = e.AsLiteral()
	}
	return types.NewRefValList(adapter, vals)
}
