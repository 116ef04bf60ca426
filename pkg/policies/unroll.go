package policies

import (
	"math"
	"slices"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// What CEL's estimator cannot follow, rewritten for the estimate only.
//
// The estimator sizes a value by its path from a variable: podSpec.containers.@items.image is a
// string of at most chars characters. Five idioms of pod policies lose the path, and with it every
// size below them, so that the estimate is unbounded and the rule is always tracked:
//
//   - a loop over a list literal, as in [podSpec.containers, podSpec.?initContainers.orValue([])]
//     .all(cs, cs.all(c, …)): the loop variable's path starts at the literal, which has none;
//   - a loop over lists added together, as in (podSpec.containers +
//     podSpec.?initContainers.orValue([])).all(c, …), the way a policy's variable often gathers
//     every container: the sum is a call, whose result has no path either;
//   - a loop over a filter's result, as in podSpec.?volumes.orValue([]).filter(v,
//     has(v.hostPath)).all(v, …): the filter's result has no path;
//   - an optional field with a default, x.?f.orValue([]) or x.?f.?g.orValue([]): a call's result
//     has no path;
//   - an item of a split string, s.split('/')[i]: a list a call made has no size for its items.
//
// estimationAST rewrites each into what the estimator follows, and what costs at least as much
// but for a few units of the loop's own bookkeeping, which the slack it returns covers:
//
//   - [e1, …, en].all(v, body) is cel.bind(v, e1, body) && … && cel.bind(v, en, body), and
//     exists is the same with ||: each bind gives v the path and size of its element;
//   - (l1 + … + ln).all(v, body) is l1.all(v, body) && … && ln.all(v, body), and exists the same
//     with ||: each loop gives v the path of its list's items (a sum of lists costs 1, the loops
//     written out at least their own bookkeeping more);
//   - l.filter(w, p).all(v, body) (or exists) is l.filter(w, p).size() >= 0 && l.all(v, body):
//     what the filter costs, and the loop over every item it could keep;
//   - x.?f.orValue(d), and x.?f.?g….orValue(d), where d is a literal no larger than any bound
//     (an empty list or map, a number, a bool, a short string), is x.f (x.f.g…): the field's
//     value when set, else d;
//   - s.split(sep)[i] is s.split(sep).size() + i >= 0 ? s : s: what the split and the index cost,
//     and more, and a string no longer than s, as any of its items is.
//
// The program that runs is planned from the expression as written; only its estimate is taken on
// the rewritten one (untracked). TestEstimationASTBounds holds the tracked program's actual cost
// within the rewritten estimate plus the slack, on the library's suites.

// Per rewrite, the units of cost the rewritten expression may leave out: a loop's list literal
// (CEL charges 10 to create one) and, for each element, its iteration's condition and step (a
// few identifiers and a call); an optional default's two calls and its literal.
const (
	unrollLoopSlack    = 32
	unrollElementSlack = 16
	unrollDefaultSlack = 32
	unrollChainSlack   = 8 // each further optional field of a default's chain: one call
	unrollSplitSlack   = 8
	// At most this many loops are rewritten (copies of nested ones included): past it, the
	// expression is estimated as written.
	maxUnrolledLoops = 64
	// maxDefaultChars is the longest string default rewritten: well under the least chars bound.
	maxDefaultChars = 64
)

// estimationAST is ast rewritten as above, with the cost the rewrite may leave out; ast itself
// and no slack when there is nothing to rewrite, or the rewrite fails.
func estimationAST(env *cel.Env, ast *cel.Ast) (*cel.Ast, uint64) {
	a := ast.NativeRep()
	if len(celast.MatchDescendants(celast.NavigateAST(a), func(e celast.NavigableExpr) bool {
		return isLiteralLoop(e) || isConcatLoop(a, e) || isFilterLoop(e) || isOptionalDefault(a, e) || isSplitItem(a, e)
	})) == 0 {
		return ast, 0 // the optimizer would check the expression again, for nothing
	}
	u := &unroller{}
	opt, err := cel.NewStaticOptimizer(u)
	if err != nil {
		return ast, 0
	}
	out, iss := opt.Optimize(env, ast)
	if iss.Err() != nil || u.failed || (u.loops == 0 && u.defaults == 0 && u.splits == 0) {
		return ast, 0
	}
	return out, u.slack()
}

// unroller is the optimizer that rewrites; it counts what it did.
type unroller struct {
	loops, elements, defaults, chained, splits uint64
	failed                                     bool
}

func (u *unroller) slack() uint64 {
	return u.loops*unrollLoopSlack + u.elements*unrollElementSlack + u.defaults*unrollDefaultSlack +
		u.chained*unrollChainSlack + u.splits*unrollSplitSlack
}

func (u *unroller) Optimize(ctx *cel.OptimizerContext, a *celast.AST) *celast.AST {
	// The rewritten expression is only estimated, never printed: no macro metadata to keep.
	for id := range ctx.MacroCalls() {
		ctx.ClearMacroCall(id)
	}
	for _, e := range celast.MatchDescendants(celast.NavigateAST(a), func(e celast.NavigableExpr) bool { return isOptionalDefault(a, e) }) {
		x, fields := optionalChain(e.AsCall().Target()) // x.?f.?g…
		for _, f := range fields {
			x = ctx.NewSelect(x, f)
		}
		ctx.UpdateExpr(e, x)
		u.defaults++
		u.chained += uint64(len(fields) - 1) //nolint:gosec // isOptionalDefault matched: at least one field
	}
	for _, e := range celast.MatchDescendants(celast.NavigateAST(a), func(e celast.NavigableExpr) bool { return isSplitItem(a, e) }) {
		index := e.AsCall()
		split, i := index.Args()[0], index.Args()[1]
		str := split.AsCall().Target()
		whole := func() celast.Expr {
			c, _ := ctx.CopyAST(ctx.NewAST(str))
			return c
		}
		cond := ctx.NewCall(operators.GreaterEquals, ctx.NewCall(operators.Add, ctx.NewMemberCall("size", split), i), ctx.NewLiteral(types.IntZero))
		ctx.UpdateExpr(e, ctx.NewCall(operators.Conditional, cond, whole(), whole()))
		u.splits++
	}
	// Innermost loop first, one at a time, the tree read afresh after each: an outer loop's
	// copies of its body then hold the inner one rewritten.
	for {
		loops := celast.MatchDescendants(celast.NavigateAST(a), func(e celast.NavigableExpr) bool {
			return isLiteralLoop(e) || isConcatLoop(a, e) || isFilterLoop(e)
		})
		if len(loops) == 0 {
			return a
		}
		if u.loops == maxUnrolledLoops {
			u.failed = true
			return a
		}
		e := slices.MaxFunc(loops, func(x, y celast.NavigableExpr) int { return x.Depth() - y.Depth() })
		switch {
		case isLiteralLoop(e):
			u.unroll(ctx, e)
		case isFilterLoop(e):
			u.unfilter(ctx, e)
		default:
			u.splitSum(ctx, e)
		}
	}
}

// unroll rewrites the loop e (isLiteralLoop) into its binds.
func (u *unroller) unroll(ctx *cel.OptimizerContext, e celast.NavigableExpr) {
	comp := e.AsComprehension()
	body := comp.LoopStep().AsCall().Args()[1]
	var binds []celast.Expr
	for _, elem := range comp.IterRange().AsList().Elements() {
		init, _ := ctx.CopyAST(ctx.NewAST(elem))
		remaining, _ := ctx.CopyAST(ctx.NewAST(body))
		bind, _ := ctx.NewBindMacro(ctx.NewLiteral(types.True).ID(), comp.IterVar(), init, remaining)
		binds = append(binds, bind)
	}
	joined := joinSteps(ctx, comp, binds)
	if joined == nil { // an empty list: all is true, exists false
		joined = ctx.NewLiteral(comp.AccuInit().AsLiteral())
	}
	ctx.UpdateExpr(e, joined)
	u.loops++
	u.elements += uint64(len(binds))
}

// splitSum rewrites the loop e (isConcatLoop) into one loop over each list of the sum, joined as
// all's and exists' steps are.
func (u *unroller) splitSum(ctx *cel.OptimizerContext, e celast.NavigableExpr) {
	var loops []celast.Expr
	for _, list := range summands(e.AsComprehension().IterRange()) {
		loop, _ := ctx.CopyAST(ctx.NewAST(e))
		items, _ := ctx.CopyAST(ctx.NewAST(list))
		ctx.UpdateExpr(loop.AsComprehension().IterRange(), items)
		loops = append(loops, loop)
	}
	ctx.UpdateExpr(e, joinSteps(ctx, e.AsComprehension(), loops))
	u.loops++
	u.elements += uint64(len(loops))
}

// joinSteps joins parts with the operator of the step of comp (isBoolLoop): && for all, || for
// exists; nil when there are none.
func joinSteps(ctx *cel.OptimizerContext, comp celast.ComprehensionExpr, parts []celast.Expr) celast.Expr {
	op := comp.LoopStep().AsCall().FunctionName()
	var joined celast.Expr
	for _, p := range parts {
		if joined == nil {
			joined = p
		} else {
			joined = ctx.NewCall(op, joined, p)
		}
	}
	return joined
}

// unfilter rewrites the loop e (isFilterLoop) into the filter's cost and the loop over the
// filter's own range.
func (u *unroller) unfilter(ctx *cel.OptimizerContext, e celast.NavigableExpr) {
	filter := e.AsComprehension().IterRange()
	loop, _ := ctx.CopyAST(ctx.NewAST(e))
	items, _ := ctx.CopyAST(ctx.NewAST(filter.AsComprehension().IterRange()))
	ctx.UpdateExpr(loop.AsComprehension().IterRange(), items)
	kept, _ := ctx.CopyAST(ctx.NewAST(filter))
	cost := ctx.NewCall(operators.GreaterEquals, ctx.NewMemberCall("size", kept), ctx.NewLiteral(types.IntZero))
	ctx.UpdateExpr(e, ctx.NewCall(operators.LogicalAnd, cost, loop))
	u.loops++
}

// summands are the operands of a sum, l1 + … + ln, however it is grouped.
func summands(e celast.Expr) []celast.Expr {
	if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != operators.Add || len(e.AsCall().Args()) != 2 {
		return []celast.Expr{e}
	}
	args := e.AsCall().Args()
	return append(summands(args[0]), summands(args[1])...)
}

// isLiteralLoop matches the all and exists macros over a list literal with no optional elements
// (isBoolLoop).
func isLiteralLoop(e celast.NavigableExpr) bool {
	if !isBoolLoop(e) {
		return false
	}
	r := e.AsComprehension().IterRange()
	return r.Kind() == celast.ListKind && len(r.AsList().OptionalIndices()) == 0
}

// isConcatLoop matches the all and exists macros (isBoolLoop) over a sum that the checker typed
// as a list, or as dyn (podSpec's fields are): lists added together. A dyn sum of anything else
// cannot be looped over, and costs no more than the loops over its operands are estimated at.
func isConcatLoop(a *celast.AST, e celast.NavigableExpr) bool {
	if !isBoolLoop(e) {
		return false
	}
	r := e.AsComprehension().IterRange()
	if r.Kind() != celast.CallKind || r.AsCall().FunctionName() != operators.Add {
		return false
	}
	t := a.GetType(r.ID())
	return t != nil && (t.Kind() == types.ListKind || t.Kind() == types.DynKind)
}

// isFilterLoop matches the all and exists macros (isBoolLoop) over the filter macro's result.
func isFilterLoop(e celast.NavigableExpr) bool {
	return isBoolLoop(e) && isFilter(e.AsComprehension().IterRange())
}

// isFilter matches the filter macro: a comprehension of one variable whose accumulator starts as
// an empty list, steps by p ? accumulator + [variable] : accumulator, and is the result.
func isFilter(e celast.Expr) bool {
	if e.Kind() != celast.ComprehensionKind {
		return false
	}
	comp := e.AsComprehension()
	accu, v := comp.AccuVar(), comp.IterVar()
	if comp.HasIterVar2() || comp.AccuInit().Kind() != celast.ListKind || comp.AccuInit().AsList().Size() != 0 ||
		!isIdent(comp.Result(), accu) || comp.LoopStep().Kind() != celast.CallKind {
		return false
	}
	step := comp.LoopStep().AsCall()
	if step.FunctionName() != operators.Conditional || len(step.Args()) != 3 || !isIdent(step.Args()[2], accu) || step.Args()[1].Kind() != celast.CallKind {
		return false
	}
	add := step.Args()[1].AsCall()
	if add.FunctionName() != operators.Add || len(add.Args()) != 2 || !isIdent(add.Args()[0], accu) || add.Args()[1].Kind() != celast.ListKind {
		return false
	}
	kept := add.Args()[1].AsList()
	return kept.Size() == 1 && len(kept.OptionalIndices()) == 0 && isIdent(kept.Elements()[0], v)
}

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

// isBoolLoop matches the all and exists macros: a comprehension of one variable whose
// accumulator starts true (all) or false (exists), steps by accumulator && body (all) or
// accumulator || body (exists), and is the result.
func isBoolLoop(e celast.NavigableExpr) bool {
	if e.Kind() != celast.ComprehensionKind {
		return false
	}
	comp := e.AsComprehension()
	if comp.HasIterVar2() {
		return false
	}
	accu := comp.AccuVar()
	if comp.AccuInit().Kind() != celast.LiteralKind || !isIdent(comp.Result(), accu) {
		return false
	}
	init, isBool := comp.AccuInit().AsLiteral().(types.Bool)
	if !isBool || comp.LoopStep().Kind() != celast.CallKind {
		return false
	}
	step := comp.LoopStep().AsCall()
	want := operators.LogicalOr
	if init {
		want = operators.LogicalAnd
	}
	return step.FunctionName() == want && len(step.Args()) == 2 && isIdent(step.Args()[0], accu) &&
		!readsIdent(step.Args()[1], accu)
}

// readsIdent reports whether e reads the identifier name, other than as a loop of its own that
// declares the name again (a nested macro's accumulator) does.
func readsIdent(e celast.Expr, name string) bool {
	return len(celast.MatchDescendants(celast.NavigateExpr(nil, e), func(n celast.NavigableExpr) bool {
		return n.Kind() == celast.IdentKind && n.AsIdent() == name && !shadowed(n, name)
	})) > 0
}

// isOptionalDefault matches x.?f.orValue(d), or a chain x.?f.?g….orValue(d), where x is not
// optional itself (x.f would not check) and d is a literal no larger than any bound.
func isOptionalDefault(a *celast.AST, e celast.NavigableExpr) bool {
	if e.Kind() != celast.CallKind {
		return false
	}
	call := e.AsCall()
	if call.FunctionName() != "orValue" || !call.IsMemberFunction() || len(call.Args()) != 1 {
		return false
	}
	x, fields := optionalChain(call.Target())
	if len(fields) == 0 {
		return false
	}
	if t := a.GetType(x.ID()); t == nil || t.Kind() == types.OpaqueKind {
		return false
	}
	return smallLiteral(call.Args()[0])
}

// optionalChain reads e as x.?f.?g…: x, and the fields in order; no fields when e is not an
// optional field's selection by a string literal.
func optionalChain(e celast.Expr) (celast.Expr, []string) {
	var fields []string
	for e.Kind() == celast.CallKind {
		call := e.AsCall()
		if call.FunctionName() != operators.OptSelect || len(call.Args()) != 2 || call.Args()[1].Kind() != celast.LiteralKind {
			break
		}
		f, isString := call.Args()[1].AsLiteral().(types.String)
		if !isString {
			break
		}
		fields = append(fields, string(f))
		e = call.Args()[0]
	}
	slices.Reverse(fields)
	return e, fields
}

// isSplitItem matches s.split(sep)[i] (and s.split(sep, n)[i]) on a string (or dyn) s, indexed by an int.
func isSplitItem(a *celast.AST, e celast.NavigableExpr) bool {
	if e.Kind() != celast.CallKind {
		return false
	}
	index := e.AsCall()
	if index.FunctionName() != operators.Index || len(index.Args()) != 2 || index.Args()[0].Kind() != celast.CallKind {
		return false
	}
	split := index.Args()[0].AsCall()
	if split.FunctionName() != "split" || !split.IsMemberFunction() {
		return false
	}
	str, i := a.GetType(split.Target().ID()), a.GetType(index.Args()[1].ID())
	// A dyn target is a string when split has an item to give: split has no other overload.
	return str != nil && (str.Kind() == types.StringKind || str.Kind() == types.DynKind) && i != nil && i.Kind() == types.IntKind
}

// smallLiteral reports whether d is an empty list or map, or a scalar literal of at most
// maxDefaultChars.
func smallLiteral(d celast.Expr) bool {
	switch d.Kind() {
	case celast.ListKind:
		return d.AsList().Size() == 0
	case celast.MapKind:
		return d.AsMap().Size() == 0
	case celast.LiteralKind:
		switch v := d.AsLiteral().(type) {
		case types.String:
			return len(v) <= maxDefaultChars
		case types.Bytes:
			return len(v) <= maxDefaultChars
		case types.Bool, types.Int, types.Uint, types.Double, types.Null:
			return true
		}
	}
	return false
}

// addSlack is est + slack, saturating.
func addSlack(est, slack uint64) uint64 {
	if est > math.MaxUint64-slack {
		return math.MaxUint64
	}
	return est + slack
}
