package policies

import (
	"slices"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	apiservercel "k8s.io/apiserver/pkg/cel"
)

// refValAdapter hands a CEL value back as it is, and anything else to the adapter it wraps.
//
// CEL's interpreter passes every value an attribute resolves to (object.metadata.name, c.image)
// through its environment's adapter. A request's values are CEL values already (its views,
// celtyped.go), which the Kubernetes adapter returns unchanged too, but only after testing them
// against the dozens of Go types it converts, from int to proto messages: about a twentieth of
// what evaluating the benchmark's rules took. The pointers to CEL's own scalars, which the
// adapter dereferences, are left to it, so that both give the same value for any input
// (TestRefValAdapterAgrees).
type refValAdapter struct{ types.Adapter }

func (a refValAdapter) NativeToValue(value any) ref.Val {
	switch v := value.(type) {
	case *types.Bool, *types.Bytes, *types.Double, *types.Int, *types.String, *types.Uint:
	case ref.Val:
		return v
	}
	return a.Adapter.NativeToValue(value)
}

// adaptingRefVals is env with its adapter wrapped by refValAdapter.
func adaptingRefVals(env *cel.Env, err error) (*cel.Env, error) {
	if err != nil {
		return nil, err
	}
	if _, ok := env.CELTypeAdapter().(refValAdapter); ok {
		return env, nil
	}
	return env.Extend(cel.CustomTypeAdapter(refValAdapter{env.CELTypeAdapter()}))
}

// extendDeclaring is base with opts and the object types declTypes, its type adapter wrapped by
// refValAdapter in the same extension: wrapped by a second one, the environment in between would
// build a type checker of its own, which the last keeps (with the second extension's copies,
// about 19 KiB an environment).
func extendDeclaring(base *cel.Env, declTypes []*apiservercel.DeclType, opts []cel.EnvOption) (*cel.Env, error) {
	provider := apiservercel.NewDeclTypeProvider(declTypes...)
	provider.SetRecognizeKeywordAsFieldName(true)
	typed, err := provider.WithTypeProvider(base.CELTypeProvider()) // as its EnvOptions does
	if err != nil {
		return nil, err
	}
	return base.Extend(append(slices.Clip(opts), cel.CustomTypeProvider(typed), cel.CustomTypeAdapter(refValAdapter{typed}))...)
}
