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
// string of at most chars characters. Six idioms of pod policies lose the path, and with it every
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
//   - an item of a split string, s.split('/')[i]: a list a call made has no size for its items;
//   - a join of what the map or filter macro made, as in l.filter(c, …).map(c, c.name).join(', '),
//     the way a messageExpression names what failed: the Kubernetes estimate of join sizes the
//     list's items by their path, and a macro's result has none.
//
// estimationAST rewrites each into what the estimator follows, and what costs at least as much
// but for a few units of the loop's own bookkeeping, which the slack it returns covers. Loops
// are all, exists, map and filter:
//
//   - [e1, …, en].all(v, body) is cel.bind(v, e1, body) && … && cel.bind(v, en, body), and
//     exists is the same with ||: each bind gives v the path and size of its element;
//     [e1, …, en].map(v, f) is [cel.bind(v, e1, f), …, cel.bind(v, en, f)], and a filter, or a
//     map that filters, the same with p ? f : f (f = v for a filter);
//   - (l1 + … + ln).all(v, body) is l1.all(v, body) && … && ln.all(v, body), exists the same with
//     ||, and map and filter the same with +: each loop gives v the path of its list's items (a
//     sum of lists costs 1, the loops written out at least their own bookkeeping more);
//   - l.filter(w, p).all(v, body) (or exists) is l.filter(w, p).size() >= 0 && l.all(v, body):
//     what the filter costs, and the loop over every item it could keep; a map or filter over a
//     filter is l.filter(w, p).size() >= 0 ? l.map(v, …) : [];
//   - a loop over a choice, (c ? l1 : l2).all(v, body), is c ? l1.all(v, body) : l2.all(v, body),
//     and so for the other loops, a loop over an empty list literal being its first value (the
//     rewrite above leaves such choices);
//   - x.?f.orValue(d), and x.?f.?g….orValue(d), where d is a literal no larger than any bound
//     (an empty list or map, a number, a bool, a short string), is x.f (x.f.g…): the field's
//     value when set, else d;
//   - s.split(sep)[i] is s.split(sep).size() + i >= 0 ? s : s: what the split and the index cost,
//     and more, and a string no longer than s, as any of its items is;
//   - (not a rewrite) string(x) of an operand typed as a number or bool is sized by
//     boundedEstimator: at most 32 characters;
//   - l.join(sep), where l is a map's or filter's result (or a sum or choice of them, as the
//     rewrites above leave it), is @join(l', sep, k), where l' is l with each item the macro
//     keeps, f, written @elem(f, k): two functions only the estimator knows (boundedEstimator),
//     declared for the estimate alone and named so that no expression can call them. @elem
//     costs nothing and notes the largest size of f; @join is estimated as Kubernetes estimates a
//     join, with the items that size: the list's size times theirs, and the separators.
//
// The program that runs is planned from the expression as written; only its estimate is taken on
// the rewritten one (untracked). TestEstimationASTBounds holds the tracked program's actual cost
// within the rewritten estimate plus the slack, on the library's suites and on Pods of long
// lists and strings.

// Per rewrite, the units of cost the rewritten expression may leave out: a loop's list literal
// (CEL charges 10 to create one) and, for each element, its iteration's condition and step (a
// few identifiers and a call); an optional default's two calls and its literal.
const (
	unrollLoopSlack    = 32
	unrollElementSlack = 16
	unrollDefaultSlack = 32
	unrollChainSlack   = 8 // each further optional field of a default's chain: one call
	unrollSplitSlack   = 8
	unrollFilterSlack  = 16 // a map or filter over a filter: the conditional and its empty list
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
	u := &unroller{}
	rewrites, joins := false, false
	celast.MatchDescendants(celast.NavigateAST(a), func(e celast.NavigableExpr) bool {
		joins = joins || isMacroJoin(e)
		rewrites = rewrites || joins || isOptionalDefault(a, e) || isSplitItem(a, e) || loopOver(a, e) != overNone
		return false
	})
	if !rewrites {
		return ast, 0 // the optimizer would check the expression again, for nothing
	}
	if joins { // the rewritten expression calls @elem and @join: checked where they are declared
		var err error
		if env, err = estimationEnv(env); err != nil {
			return ast, 0
		}
	}
	opt, err := cel.NewStaticOptimizer(u)
	if err != nil {
		return ast, 0
	}
	out, iss := opt.Optimize(env, ast)
	if iss.Err() != nil || u.failed || (u.loops == 0 && u.defaults == 0 && u.splits == 0 && u.joins == 0) {
		return ast, 0
	}
	return out, u.slack()
}

// unroller is the optimizer that rewrites; it counts what it did.
type unroller struct {
	loops, elements, defaults, chained, splits, unfiltered, joins uint64
	failed                                                        bool
}

// slack is what the rewrites may leave out. A join's rewrite leaves out nothing: @join is
// estimated as the join is, at a size no smaller.
func (u *unroller) slack() uint64 {
	return u.loops*unrollLoopSlack + u.elements*unrollElementSlack + u.defaults*unrollDefaultSlack +
		u.chained*unrollChainSlack + u.splits*unrollSplitSlack + u.unfiltered*unrollFilterSlack
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
			return loopOver(a, e) != overNone
		})
		if len(loops) == 0 {
			u.sizeJoins(ctx, a)
			return a
		}
		if u.loops == maxUnrolledLoops {
			u.failed = true
			return a
		}
		e := slices.MaxFunc(loops, func(x, y celast.NavigableExpr) int { return x.Depth() - y.Depth() })
		switch loopOver(a, e) {
		case overLiteral:
			u.unroll(ctx, e)
		case overFilter:
			u.unfilter(ctx, e)
		case overChoice:
			u.unchoose(ctx, e)
		default:
			u.splitSum(ctx, e)
		}
	}
}

// unroll rewrites the loop e over a list literal (loopOver) into its binds: joined as all's and
// exists' steps are, or a list of them for map and filter.
func (u *unroller) unroll(ctx *cel.OptimizerContext, e celast.NavigableExpr) {
	comp := e.AsComprehension()
	var body celast.Expr
	if kept, ok := loopItem(e); ok {
		body, _ = ctx.CopyAST(ctx.NewAST(kept.AsList().Elements()[0]))
		if step := comp.LoopStep().AsCall(); step.FunctionName() == operators.Conditional {
			p, _ := ctx.CopyAST(ctx.NewAST(step.Args()[0]))
			other, _ := ctx.CopyAST(ctx.NewAST(body))
			body = ctx.NewCall(operators.Conditional, p, body, other)
		}
	} else {
		body = comp.LoopStep().AsCall().Args()[1]
	}
	var binds []celast.Expr
	for _, elem := range comp.IterRange().AsList().Elements() {
		init, _ := ctx.CopyAST(ctx.NewAST(elem))
		remaining, _ := ctx.CopyAST(ctx.NewAST(body))
		bind, _ := ctx.NewBindMacro(ctx.NewLiteral(types.True).ID(), comp.IterVar(), init, remaining)
		binds = append(binds, bind)
	}
	if isListLoop(e) {
		ctx.UpdateExpr(e, ctx.NewList(binds, nil))
		u.loops++
		u.elements += uint64(len(binds))
		return
	}
	joined := joinSteps(ctx, comp, binds)
	if joined == nil { // an empty list: all is true, exists false
		joined = ctx.NewLiteral(comp.AccuInit().AsLiteral())
	}
	ctx.UpdateExpr(e, joined)
	u.loops++
	u.elements += uint64(len(binds))
}

// splitSum rewrites the loop e over a sum (loopOver) into one loop over each list of the sum,
// joined as the loop's own steps are (joinSteps).
func (u *unroller) splitSum(ctx *cel.OptimizerContext, e celast.NavigableExpr) {
	var loops []celast.Expr
	for _, list := range summands(e.AsComprehension().IterRange()) {
		loop, _ := ctx.CopyAST(ctx.NewAST(e))
		items, _ := ctx.CopyAST(ctx.NewAST(list))
		ctx.UpdateExpr(loop.AsComprehension().IterRange(), items)
		loops = append(loops, loop)
	}
	// A map's or filter's becomes a sum of lists that keeps the loop's id, and with it its type:
	// a loop over it is split in turn.
	ctx.UpdateExpr(e, joinSteps(ctx, e.AsComprehension(), loops))
	u.loops++
	u.elements += uint64(len(loops))
}

// joinSteps joins parts, loops like comp, as comp's steps join its items: && for all, || for
// exists (the operator of the step of a bool loop), + for map and filter (a list loop); nil when
// there are none.
func joinSteps(ctx *cel.OptimizerContext, comp celast.ComprehensionExpr, parts []celast.Expr) celast.Expr {
	op := operators.Add
	if comp.AccuInit().Kind() == celast.LiteralKind {
		op = comp.LoopStep().AsCall().FunctionName()
	}
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

// unfilter rewrites the loop e over a filter (loopOver) into the filter's cost and the loop over
// the filter's own range: && a bool loop, ? : [] a list loop.
func (u *unroller) unfilter(ctx *cel.OptimizerContext, e celast.NavigableExpr) {
	filter := e.AsComprehension().IterRange()
	loop, _ := ctx.CopyAST(ctx.NewAST(e))
	items, _ := ctx.CopyAST(ctx.NewAST(filter.AsComprehension().IterRange()))
	ctx.UpdateExpr(loop.AsComprehension().IterRange(), items)
	kept, _ := ctx.CopyAST(ctx.NewAST(filter))
	cost := ctx.NewCall(operators.GreaterEquals, ctx.NewMemberCall("size", kept), ctx.NewLiteral(types.IntZero))
	if isBoolLoop(e) {
		ctx.UpdateExpr(e, ctx.NewCall(operators.LogicalAnd, cost, loop))
	} else {
		ctx.UpdateExpr(e, ctx.NewCall(operators.Conditional, cost, loop, ctx.NewList(nil, nil)))
		u.unfiltered++
	}
	u.loops++
}

// unchoose rewrites the loop e over a choice (loopOver) into the choice of the loops over each list.
func (u *unroller) unchoose(ctx *cel.OptimizerContext, e celast.NavigableExpr) {
	choice := e.AsComprehension().IterRange().AsCall()
	over := func(list celast.Expr) celast.Expr {
		if list.Kind() == celast.ListKind && list.AsList().Size() == 0 {
			init, _ := ctx.CopyAST(ctx.NewAST(e.AsComprehension().AccuInit()))
			return init
		}
		loop, _ := ctx.CopyAST(ctx.NewAST(e))
		items, _ := ctx.CopyAST(ctx.NewAST(list))
		ctx.UpdateExpr(loop.AsComprehension().IterRange(), items)
		return loop
	}
	c, _ := ctx.CopyAST(ctx.NewAST(choice.Args()[0]))
	ctx.UpdateExpr(e, ctx.NewCall(operators.Conditional, c, over(choice.Args()[1]), over(choice.Args()[2])))
	u.loops++
}

// sizeJoins rewrites every join of a map's or filter's result (isMacroJoin) into @join, the
// innermost first: an outer one's items then hold the inner one's @join. A join whose list
// (once the loops are rewritten) is not one the rewrite follows is left as it is.
func (u *unroller) sizeJoins(ctx *cel.OptimizerContext, a *celast.AST) {
	joins := celast.MatchDescendants(celast.NavigateAST(a), isMacroJoin)
	slices.SortStableFunc(joins, func(x, y celast.NavigableExpr) int { return y.Depth() - x.Depth() })
	for i, e := range joins {
		call := e.AsCall()
		k := ctx.NewLiteral(types.Int(i)) // its own, whether or not its items can all be marked
		if !u.markItems(ctx, call.Target(), k) {
			continue
		}
		list, _ := ctx.CopyAST(ctx.NewAST(call.Target()))
		sep := ctx.NewLiteral(types.String(""))
		if len(call.Args()) == 1 {
			sep, _ = ctx.CopyAST(ctx.NewAST(call.Args()[0]))
		}
		ctx.UpdateExpr(e, ctx.NewCall(joinEstimate, list, sep, k))
		u.joins++
	}
}

// markItems writes each item list keeps as @elem(item, k): the item of a map's or filter's step,
// of each list of a sum, of each branch of a choice, of a list literal. false when list is none
// of these (it may have been marked in part: @elem changes no estimate but the join's).
func (u *unroller) markItems(ctx *cel.OptimizerContext, list celast.Expr, k celast.Expr) bool {
	mark := func(item celast.Expr) {
		kept, _ := ctx.CopyAST(ctx.NewAST(item))
		key, _ := ctx.CopyAST(ctx.NewAST(k))
		ctx.UpdateExpr(item, ctx.NewCall(elemEstimate, kept, key))
	}
	if kept, ok := loopItem(list); ok {
		mark(kept.AsList().Elements()[0])
		return true
	}
	switch list.Kind() {
	case celast.ListKind:
		if len(list.AsList().OptionalIndices()) > 0 {
			return false
		}
		for _, item := range list.AsList().Elements() {
			mark(item)
		}
		return true
	case celast.CallKind:
		call := list.AsCall()
		switch {
		case call.FunctionName() == operators.Add && len(call.Args()) == 2:
			return u.markItems(ctx, call.Args()[0], k) && u.markItems(ctx, call.Args()[1], k)
		case call.FunctionName() == operators.Conditional && len(call.Args()) == 3:
			return u.markItems(ctx, call.Args()[1], k) && u.markItems(ctx, call.Args()[2], k)
		}
	}
	return false
}

// summands are the operands of a sum, l1 + … + ln, however it is grouped.
func summands(e celast.Expr) []celast.Expr {
	if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != operators.Add || len(e.AsCall().Args()) != 2 {
		return []celast.Expr{e}
	}
	args := e.AsCall().Args()
	return append(summands(args[0]), summands(args[1])...)
}

// What a loop the unroller rewrites loops over.
type overShape int

const (
	overNone    overShape = iota
	overLiteral           // a list literal with no optional elements
	overSum               // lists added together
	overFilter            // the filter macro's result
	overChoice            // c ? l1 : l2
)

// loopOver is what e loops over when it is the all, exists, map or filter macro (isBoolLoop,
// isListLoop) over a shape the unroller rewrites; overNone otherwise. The range is read first:
// reading the loop's own shape walks its body. A sum is one the checker typed as a list, or as
// dyn (podSpec's fields are): a dyn sum of anything else cannot be looped over, and costs no more
// than the loops over its operands are estimated at.
func loopOver(a *celast.AST, e celast.Expr) overShape {
	if e.Kind() != celast.ComprehensionKind {
		return overNone
	}
	r := e.AsComprehension().IterRange()
	shape := overNone
	switch r.Kind() {
	case celast.ListKind:
		if len(r.AsList().OptionalIndices()) == 0 {
			shape = overLiteral
		}
	case celast.CallKind:
		switch call := r.AsCall(); {
		case call.FunctionName() == operators.Add:
			if t := a.GetType(r.ID()); t != nil && (t.Kind() == types.ListKind || t.Kind() == types.DynKind) {
				shape = overSum
			}
		case call.FunctionName() == operators.Conditional && len(call.Args()) == 3:
			shape = overChoice
		}
	case celast.ComprehensionKind:
		if isFilter(r) {
			shape = overFilter
		}
	}
	if shape == overNone || (!isBoolLoop(e) && !isListLoop(e)) {
		return overNone
	}
	return shape
}

// isListLoop matches the map and filter macros (loopItem).
func isListLoop(e celast.Expr) bool {
	_, ok := loopItem(e)
	return ok
}

// isFilter matches the filter macro: the loop (loopItem) whose step is p ? accumulator +
// [variable] : accumulator.
func isFilter(e celast.Expr) bool {
	kept, ok := loopItem(e)
	return ok && e.AsComprehension().LoopStep().AsCall().FunctionName() == operators.Conditional &&
		isIdent(kept.AsList().Elements()[0], e.AsComprehension().IterVar())
}

// loopItem reads e as the map or filter macro, a comprehension of one variable whose accumulator
// starts as an empty list, steps by accumulator + [f] or by p ? accumulator + [f] : accumulator,
// and is the result: it returns the list literal [f]; false when e is not one.
func loopItem(e celast.Expr) (celast.Expr, bool) {
	if e.Kind() != celast.ComprehensionKind {
		return nil, false
	}
	comp := e.AsComprehension()
	accu := comp.AccuVar()
	if comp.HasIterVar2() || comp.AccuInit().Kind() != celast.ListKind || comp.AccuInit().AsList().Size() != 0 ||
		!isIdent(comp.Result(), accu) || comp.LoopStep().Kind() != celast.CallKind {
		return nil, false
	}
	step := comp.LoopStep()
	if c := step.AsCall(); c.FunctionName() == operators.Conditional && len(c.Args()) == 3 && isIdent(c.Args()[2], accu) && !readsIdent(c.Args()[0], accu) {
		step = c.Args()[1]
	}
	if step.Kind() != celast.CallKind {
		return nil, false
	}
	add := step.AsCall()
	if add.FunctionName() != operators.Add || len(add.Args()) != 2 || !isIdent(add.Args()[0], accu) || add.Args()[1].Kind() != celast.ListKind {
		return nil, false
	}
	kept := add.Args()[1]
	if kept.AsList().Size() != 1 || len(kept.AsList().OptionalIndices()) != 0 || readsIdent(kept, accu) {
		return nil, false
	}
	return kept, true
}

// isMacroJoin matches l.join() and l.join(sep) where l is the result of the map or filter macro,
// a list literal, lists added together or a choice of lists: what has no path for the estimate
// of join to size its items by.
func isMacroJoin(e celast.NavigableExpr) bool {
	if e.Kind() != celast.CallKind {
		return false
	}
	call := e.AsCall()
	if call.FunctionName() != "join" || !call.IsMemberFunction() || len(call.Args()) > 1 {
		return false
	}
	switch l := call.Target(); l.Kind() {
	case celast.ComprehensionKind:
		return isListLoop(l)
	case celast.ListKind:
		return true
	case celast.CallKind:
		return l.AsCall().FunctionName() == operators.Add || l.AsCall().FunctionName() == operators.Conditional
	}
	return false
}

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

// isBoolLoop matches the all and exists macros: a comprehension of one variable whose
// accumulator starts true (all) or false (exists), steps by accumulator && body (all) or
// accumulator || body (exists), and is the result.
func isBoolLoop(e celast.Expr) bool {
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
