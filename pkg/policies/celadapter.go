package policies

import (
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
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
