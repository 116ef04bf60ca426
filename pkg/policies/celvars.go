package policies

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	apiservercel "k8s.io/apiserver/pkg/cel"
)

// celVars is the variables of one policy for one request, as CEL reads them: each is evaluated
// when first read, and once. It reads as k8s.io/apiserver's lazy.MapValue does for
// ValidatingAdmissionPolicy's variables, without what that costs per request: two maps, a
// closure per variable and a type value, and a regular expression run on every read (a key is
// unescaped only when it holds "__", the only keys that unescaping changes).
type celVars struct {
	scope *celScope
	in    *input
	vals  []ref.Val  // by the scope's variables' order; nil: not yet read
	act   activation // the scope's rules' and variables' (input.activation)
}

var (
	_ ref.Val       = (*celVars)(nil)
	_ traits.Mapper = (*celVars)(nil)
)

// newCELVars returns the variables of s for in, none evaluated.
func newCELVars(s *celScope, in *input) *celVars {
	return &celVars{scope: s, in: in, vals: make([]ref.Val, len(s.variables)), act: activation{in: in, scope: s}}
}

// index is the place of the variable named key, or -1.
func (m *celVars) index(key string) int {
	if strings.Contains(key, "__") {
		var ok bool
		if key, ok = apiservercel.Unescape(key); !ok {
			return -1
		}
	}
	for i, v := range m.scope.variables {
		if v.name == key {
			return i
		}
	}
	return -1
}

// at is variable i's value, evaluated on its first read.
func (m *celVars) at(i int) ref.Val {
	if v := m.vals[i]; v != nil {
		return v
	}
	v := m.scope.variables[i].evaluate(m.in, &m.act)
	m.vals[i] = v
	return v
}

func (m *celVars) Find(key ref.Val) (ref.Val, bool) {
	n, ok := key.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(key), true
	}
	i := m.index(string(n))
	if i < 0 {
		return nil, false
	}
	return m.at(i), true
}

func (m *celVars) Get(key ref.Val) ref.Val {
	if v, found := m.Find(key); found {
		return v
	}
	return types.ValOrErr(key, "no such key: %v", key)
}

func (m *celVars) Contains(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if v != nil && types.IsUnknownOrError(v) {
		return v
	}
	return types.Bool(found)
}

func (m *celVars) Size() ref.Val { return types.Int(len(m.vals)) }

// Iterator yields the variables' names.
func (m *celVars) Iterator() traits.Iterator { return &celVarsIterator{vars: m} }

func (m *celVars) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("disallowed conversion from %q to %q", m.scope.varsTypeVal.TypeName(), t.Name())
}

func (m *celVars) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case m.scope.varsTypeVal:
		return m
	case types.TypeType:
		return m.scope.varsTypeVal
	}
	return types.NewErr("disallowed conversion from %q to %q", m.scope.varsTypeVal.TypeName(), t.TypeName())
}

func (m *celVars) Equal(other ref.Val) ref.Val {
	o, ok := other.(*celVars)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	return types.Bool(m == o)
}

func (m *celVars) Type() ref.Type { return m.scope.varsTypeVal }
func (m *celVars) Value() any     { return types.NoSuchOverloadErr() }

type celVarsIterator struct {
	types.Null // its Type and Value are never read; CEL only iterates
	vars       *celVars
	i          int
}

func (it *celVarsIterator) HasNext() ref.Val { return types.Bool(it.i < len(it.vars.vals)) }

func (it *celVarsIterator) Next() ref.Val {
	if it.i >= len(it.vars.vals) {
		return types.NewErr("no more elements")
	}
	name := it.vars.scope.variables[it.i].name
	it.i++
	return types.String(name)
}
