package policies

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestRefValAdapterAgrees: the compiled environments' adapters are refValAdapters, and one gives
// what the adapter it wraps gives, for CEL values (the same value, a view the same view), the
// pointers to CEL's scalars that the wrapped adapter dereferences, and Go values it converts.
func TestRefValAdapterAgrees(t *testing.T) {
	tracked, err := newCELEnv()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := untrackedEnv()
	if err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string]interface{ CELTypeAdapter() types.Adapter }{"tracked": tracked, "untracked": fast} {
		if _, ok := env.CELTypeAdapter().(refValAdapter); !ok {
			t.Errorf("the %s environment's adapter is a %T", name, env.CELTypeAdapter())
		}
	}
	inner := fast.CELTypeAdapter().(refValAdapter).Adapter
	res, err := NewDecoder(false).Decode([]byte(`{"metadata":{"name":"p","labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}`), &schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	if err != nil {
		t.Fatal(err)
	}
	view := res.celValue()
	b, s, i, u, d, by := types.True, types.String("x"), types.Int(3), types.Uint(4), types.Double(0.5), types.Bytes("b")
	values := []any{
		view, types.True, types.String("s"), types.Int(-1), types.NullValue, types.OptionalNone,
		&b, &s, &i, &u, &d, &by, (*types.Bool)(nil),
		nil, true, 7, int32(7), uint64(7), 1.5, "go", []byte("go"), []string{"a"}, map[string]string{"k": "v"},
		map[string]any{"k": 1}, time.Second, corev1.Container{Name: "c"}, &corev1.Container{Name: "c"},
	}
	for _, v := range values {
		got, want := refValAdapter{inner}.NativeToValue(v), inner.NativeToValue(v)
		switch v.(type) {
		case *types.Bool, *types.Bytes, *types.Double, *types.Int, *types.String, *types.Uint:
			// dereferenced by both: compared below
		case ref.Val:
			if got != v || want != v {
				t.Errorf("%T: %v and %v, want the value itself", v, got, want)
			}
			continue
		}
		if reflect.TypeOf(got) != reflect.TypeOf(want) || !equalVals(got, want) {
			t.Errorf("%T %v: %T %v, want %T %v", v, v, got, got, want, want)
		}
	}
}

// equalVals compares two CEL values as CEL does, or as errors by their text.
func equalVals(a, b ref.Val) bool {
	if types.IsError(a) || types.IsError(b) {
		return types.IsError(a) && types.IsError(b) && a.(*types.Err).Error() == b.(*types.Err).Error()
	}
	return a.Equal(b) == types.True
}
