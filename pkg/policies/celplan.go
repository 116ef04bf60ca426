package policies

import (
	"maps"
	"reflect"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// valPlan is how typedToVal presents the values of one Go type to CEL, worked out once per type,
// so that reading a field asks nothing of reflect but the value: a struct's plan holds its
// fields' plans, a pointer's, list's or map's its elements'.
type valPlan struct {
	typ reflect.Type
	how valKind
	// elem is the plan of a pointer's target and of a list's or map's elements.
	elem *valPlan
	// entry converts a type that writes its own JSON (valOwnJSON, valIntOrString).
	entry *value.TypeReflectCacheEntry
	// fields are a struct's JSON fields by name, inlined ones flattened.
	fields map[string]fieldPlan
	// stringKeys: a map whose keys are strings (of any string type); stringMap: map[string]string
	// itself, and resourceList: a Pod's requests and limits, read without reflect.
	stringKeys, stringMap, resourceList bool
}

// fieldPlan is a struct field and the plan of its type.
type fieldPlan struct {
	*value.FieldCacheEntry
	plan *valPlan
}

// valKind is what typedToVal makes of a value.
type valKind uint8

const (
	valUnsupported valKind = iota
	valBool
	valString
	valInt
	valUint
	valFloat
	valIntOrString
	valBytes    // base64, as JSON writes bytes; a nil slice is null
	valQuantity // a resource.Quantity: its JSON's string, without going through the JSON
	valOwnJSON  // converted as a whole, through its own JSON (Time, RawExtension…)
	valPointer
	valInterface
	valList
	valMap
	valStruct
)

// plans holds every plan made so far; it is replaced, never changed, so reading needs no lock.
var (
	plans   atomic.Pointer[map[reflect.Type]*valPlan]
	plansMu sync.Mutex // serializes making plans
)

// planOf is the plan of t.
func planOf(t reflect.Type) *valPlan {
	if m := plans.Load(); m != nil {
		if p, ok := (*m)[t]; ok {
			return p
		}
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	next := map[reflect.Type]*valPlan{}
	if m := plans.Load(); m != nil {
		if p, ok := (*m)[t]; ok {
			return p
		}
		maps.Copy(next, *m)
	}
	p := makePlan(t, next)
	plans.Store(&next) // published whole: a plan is read only once every plan it refers to is made
	return p
}

// makePlan makes the plan of t and of the types it holds, into made (where a recursive type
// finds its own plan while it is being made).
func makePlan(t reflect.Type, made map[reflect.Type]*valPlan) *valPlan {
	if p, ok := made[t]; ok {
		return p
	}
	p := &valPlan{typ: t}
	made[t] = p
	p.how = planKind(t)
	switch p.how {
	case valOwnJSON, valIntOrString:
		p.entry = value.TypeReflectEntryOf(t)
	case valPointer, valList:
		p.elem = makePlan(t.Elem(), made)
	case valMap:
		p.elem = makePlan(t.Elem(), made)
		p.stringKeys = t.Key().Kind() == reflect.String
		p.stringMap = t == typeStringMap
		p.resourceList = t == typeResourceList
	case valStruct:
		entry := value.TypeReflectEntryOf(t)
		p.fields = make(map[string]fieldPlan, len(entry.Fields()))
		zero := reflect.Zero(t)
		for name, f := range entry.Fields() {
			p.fields[name] = fieldPlan{FieldCacheEntry: f, plan: makePlan(f.GetFrom(zero).Type(), made)}
		}
	}
	return p
}

var typeStringMap = reflect.TypeFor[map[string]string]()

// planKind is what typedToVal makes of a value of type t: Go's scalars and IntOrString as JSON
// writes them, a type with JSON of its own through it, other pointers, lists, maps and structs
// as views.
func planKind(t reflect.Type) valKind {
	switch t {
	case typeIntOrString:
		return valIntOrString
	case typeBytes:
		return valBytes
	case typeQuantity:
		return valQuantity
	}
	if t.Kind() == reflect.Interface {
		return valInterface
	}
	if t.Kind() == reflect.Pointer && (t.Elem() == typeQuantity || t.Elem() == typeIntOrString) {
		return valPointer // to the target's own kind, rather than through the pointer's JSON
	}
	if value.TypeReflectEntryOf(t).CanConvertToUnstructured() {
		return valOwnJSON
	}
	switch t.Kind() {
	case reflect.Pointer:
		return valPointer
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return valBytes
		}
		return valList
	case reflect.Map:
		return valMap
	case reflect.Struct:
		return valStruct
	case reflect.Bool:
		return valBool
	case reflect.String:
		return valString
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return valInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return valUint
	case reflect.Float32, reflect.Float64:
		return valFloat
	}
	return valUnsupported
}

// intOrString is the IntOrString v holds, read in place when v is addressable.
func intOrString(v reflect.Value) intstr.IntOrString {
	if v.CanAddr() {
		return *v.Addr().Interface().(*intstr.IntOrString)
	}
	return v.Interface().(intstr.IntOrString)
}
