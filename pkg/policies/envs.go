package policies

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types/ref"
	apiservercel "k8s.io/apiserver/pkg/cel"
)

// Shared environments and programs of policies.
//
// A policy with params or variables compiles in the compiler's CEL environment extended with
// their declarations, and CEL gives every environment that plans programs its own bindings of
// every function of the Kubernetes libraries: about 40 KiB each, and a policy's untracked twins
// get another. Policies stamped from one template declare the same (params of the same shapes,
// the same variables), so the environments are interned: one per base and declarations, shared
// by every policy that declares exactly those.
//
// A program is then a function of its environment and its expression alone: params and
// variables are bound when it runs, and CEL's programs are safe for concurrent use. Each holds a
// dispatcher of every function of its environment (about 13 KiB), so programs are interned too:
// the same expression planned in the same environment, the same way, is one program, whichever
// policies (a template's instances, a Policy copied into every namespace) hold it.
//
// Both are held weakly, and dropped with the last policy that holds them. Only these are shared:
// each policy keeps its own params values and cost model. What a shared program caches (the
// patterns its matches calls compiled, celregex.go) is bounded per program, as it was per policy.

// interner holds values by key weakly: whoever asked for one holds it.
type interner[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]weak.Pointer[V]
}

func newInterner[K comparable, V any]() *interner[K, V] {
	return &interner[K, V]{m: map[K]weak.Pointer[V]{}}
}

// get is the value interned for key, or build's, interned.
func (in *interner[K, V]) get(key K, build func() (*V, error)) (*V, error) {
	if v := in.lookup(key); v != nil {
		return v, nil
	}
	v, err := build() // unlocked: other compiles go on meanwhile
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if held := in.m[key].Value(); held != nil {
		return held, nil // built meanwhile by another compile
	}
	wp := weak.Make(v)
	in.m[key] = wp
	runtime.AddCleanup(v, func(key K) {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.m[key] == wp {
			delete(in.m, key)
		}
	}, key)
	return v, nil
}

func (in *interner[K, V]) lookup(key K) *V {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.m[key].Value()
}

// len is how many values are interned (tests).
func (in *interner[K, V]) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.m)
}

// envKey names an interned environment: its base, and its declarations written out (declKey).
type envKey struct {
	base  *cel.Env
	decls string
}

// programKey names an interned program: where, what and how it is planned.
type programKey struct {
	env       *cel.Env
	expr      string
	untracked bool
}

// sharedProgram is an interned program.
type sharedProgram struct{ cel.Program }

// programs are the interned programs, of every compiler (the key names the environment).
var programs = newInterner[programKey, sharedProgram]()

// planShared is the program of the checked ast in env, planned by plan unless the same
// expression was planned there the same way and is still held.
func planShared(env *cel.Env, ast *cel.Ast, untracked bool, plan func() (cel.Program, error)) (cel.Program, error) {
	if ast.Source() == nil {
		return plan()
	}
	sp, err := programs.get(programKey{env, ast.Source().Content(), untracked}, func() (*sharedProgram, error) {
		prog, err := plan()
		if err != nil {
			return nil, err
		}
		return &sharedProgram{prog}, nil
	})
	if err != nil {
		return nil, err
	}
	return sp, nil
}

// declKey is what the scope's environment declares, written out: equal for two scopes exactly
// when their environments declare the same variables, of the same types.
func (s *celScope) declKey() string {
	var b strings.Builder
	b.WriteString("variables=")
	writeDeclType(&b, s.varsType)
	if s.paramsType != nil {
		b.WriteString(";params=")
		writeDeclType(&b, s.paramsType)
	}
	return b.String()
}

// writeDeclType writes t out whole: an object type with its fields, sorted; a list or map with
// its bound and its items' types.
func writeDeclType(b *strings.Builder, t *apiservercel.DeclType) {
	switch {
	case t.IsObject():
		b.WriteString(t.TypeName())
		b.WriteByte('{')
		for _, name := range slices.Sorted(maps.Keys(t.Fields)) {
			f := t.Fields[name]
			b.WriteString(strconv.Quote(name))
			if f.Required {
				b.WriteByte('!')
			}
			b.WriteByte(':')
			writeDeclType(b, f.Type)
			b.WriteByte(',')
		}
		b.WriteByte('}')
	case t.IsList():
		fmt.Fprintf(b, "list[%d](", t.MaxElements)
		writeDeclType(b, t.ElemType)
		b.WriteByte(')')
	case t.IsMap():
		fmt.Fprintf(b, "map[%d](", t.MaxElements)
		writeDeclType(b, t.KeyType)
		b.WriteByte(',')
		writeDeclType(b, t.ElemType)
		b.WriteByte(')')
	default:
		b.WriteString(t.CelType().String())
	}
}

// lazyProgram is a tracked program planned when it first runs. A rule or variable with an
// untracked twin runs its tracked program only for a request past the twin's bounds, and a
// message expression only when its rule fails: most never run in a process's life, and a planned
// program holds its dispatcher and cost tracker (about 20 KiB). The checked expression is held
// until then. Planning what planned before in an environment with the same functions does not
// fail; should it, each evaluation answers the error, as one that could not run.
type lazyProgram struct {
	once    sync.Once
	plan    func() (cel.Program, error) // nil once planned
	prog    cel.Program
	err     error
	planned atomic.Bool // tests
}

func (p *lazyProgram) program() (cel.Program, error) {
	p.once.Do(func() {
		p.prog, p.err = p.plan()
		p.plan = nil
		p.planned.Store(true)
	})
	return p.prog, p.err
}

func (p *lazyProgram) Eval(vars any) (ref.Val, *cel.EvalDetails, error) {
	prog, err := p.program()
	if err != nil {
		return nil, nil, err
	}
	return prog.Eval(vars)
}

func (p *lazyProgram) ContextEval(ctx context.Context, vars any) (ref.Val, *cel.EvalDetails, error) {
	prog, err := p.program()
	if err != nil {
		return nil, nil, err
	}
	return prog.ContextEval(ctx, vars)
}
