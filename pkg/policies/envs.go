package policies

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"weak"

	"github.com/google/cel-go/cel"
	apiservercel "k8s.io/apiserver/pkg/cel"
)

// Shared environments of policies' scopes.
//
// A policy with params or variables compiles in the compiler's CEL environment extended with
// their declarations, and CEL gives every environment that plans programs its own bindings of
// every function of the Kubernetes libraries: about 40 KiB each, and a policy's untracked twins
// get another. Policies stamped from one template declare the same (params of the same shapes,
// the same variables), so the environments are interned: one per base and declarations, shared
// by every policy that declares exactly those, and dropped with the last of them. Only what is
// declared is shared: each policy keeps its own params values, programs and cost model.

// envKey names an interned environment: its base, and its declarations written out (declKey).
type envKey struct {
	base  *cel.Env
	decls string
}

// envInterner holds the interned environments weakly: a compiled policy's programs hold theirs.
type envInterner struct {
	mu   sync.Mutex
	envs map[envKey]weak.Pointer[cel.Env]
}

func newEnvInterner() *envInterner {
	return &envInterner{envs: map[envKey]weak.Pointer[cel.Env]{}}
}

// get is the environment interned for base and decls, or build's, interned.
func (in *envInterner) get(base *cel.Env, decls string, build func() (*cel.Env, error)) (*cel.Env, error) {
	key := envKey{base, decls}
	if env := in.lookup(key); env != nil {
		return env, nil
	}
	env, err := build() // unlocked: compiles of other policies go on meanwhile
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if held := in.envs[key].Value(); held != nil {
		return held, nil // built meanwhile by another compile
	}
	wp := weak.Make(env)
	in.envs[key] = wp
	runtime.AddCleanup(env, func(key envKey) {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.envs[key] == wp {
			delete(in.envs, key)
		}
	}, key)
	return env, nil
}

func (in *envInterner) lookup(key envKey) *cel.Env {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.envs[key].Value()
}

// len is how many environments are interned (tests).
func (in *envInterner) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.envs)
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
