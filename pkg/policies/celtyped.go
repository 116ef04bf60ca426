package policies

import (
	"encoding/base64"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// typedToVal is a typed Go object as CEL sees it: the value its JSON would decode to (what
// runtime.DefaultUnstructuredConverter makes of it), built lazily as expressions read it. It
// means what k8s.io/apiserver's common.SchemalessTypedToVal means (TestTypedValMatchesUnstructured
// holds the two equal) and walks the object in place: a field or element is reached through its
// address, never copied out of its parent, which is most of what that function allocates on a
// Pod. obj must be a non-nil pointer; a value is read only by the goroutine evaluating it.
func typedToVal(obj any) ref.Val { return new(typedArena).toVal(obj) }

// typedArena allocates the views of one object's values (typedToVal's structs, lists and maps,
// the fields they have read, the iterations over lists) in blocks, not one by one: they are
// made while a request's rules read the object, and all dropped with it, or reused for the next
// object's once reset. It is not safe for concurrent use, as the views are not.
type typedArena struct {
	structs blocks[typedStruct]
	lists   blocks[typedList]
	maps    blocks[typedMap]
	fields  blocks[readField]
	iters   blocks[typedListIterator]
	vals    valSlab
}

// blocks are an arena's blocks of one kind of view, filled in order.
type blocks[T any] struct {
	all [][]T // all[cur] is being filled; those before it are full, those after it empty
	cur int
}

// reset empties a's blocks for the views of another object, keeping them: what they held (the
// last object's views) is cleared, so that it is not kept alive.
func (a *typedArena) reset() {
	a.structs.reset()
	a.lists.reset()
	a.maps.reset()
	a.fields.reset()
	a.iters.reset()
	a.vals.reset()
}

// arenaMaxBlocks bounds the blocks of any one kind of an arena that is reused: one that read a
// larger object (thousands of containers) is left to the collector, so that what the pool of
// arenas keeps past a request is at most a few hundred KiB each, whatever a request held.
const arenaMaxBlocks = 64

// reusable is whether a is small enough to be reused (arenaMaxBlocks).
func (a *typedArena) reusable() bool {
	return max(len(a.structs.all), len(a.lists.all), len(a.maps.all), len(a.fields.all), len(a.iters.all)) <= arenaMaxBlocks
}

func (b *blocks[T]) reset() {
	for i := range b.all[:min(b.cur+1, len(b.all))] {
		clear(b.all[i])
		b.all[i] = b.all[i][:0]
	}
	b.cur = 0
}

// The arena's blocks: 2 elements, then four times the last, up to arenaMaxBlock views (a block
// of structs is 1 KiB then), or arenaMaxFields fields or iterations. An object read a little (a request's, a
// namespace's) takes little; at most a block of each kind is left unused.
const (
	arenaFirstBlock = 2
	arenaMaxBlock   = 16
	arenaMaxFields  = 32
)

// valSlab holds the element caches of an arena's lists: slices cut from one block, which the
// arena keeps when it is reused. A list longer than a block has a cache of its own; when the
// rest of the block is too short, a new block is made and the last is left to its lists.
type valSlab struct{ block []ref.Val }

// arenaValBlock is a valSlab's block, in elements: 1 KiB.
const arenaValBlock = 64

// cut is a cache for n elements, all nil.
func (s *valSlab) cut(n int) []ref.Val {
	if n > arenaValBlock {
		return make([]ref.Val, n)
	}
	if len(s.block)+n > cap(s.block) {
		s.block = make([]ref.Val, 0, arenaValBlock)
	}
	start := len(s.block)
	s.block = s.block[:start+n]
	return s.block[start : start+n : start+n]
}

// reset empties the block for another object's lists, clearing what it held.
func (s *valSlab) reset() {
	clear(s.block)
	s.block = s.block[:0]
}

// toVal is typedToVal's value of obj, whose views a allocates.
func (a *typedArena) toVal(obj any) ref.Val {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return types.NullValue
	}
	return a.val(v.Elem())
}

// nextBlock is the capacity of the block after one of capacity last (0: none yet), at most most.
func nextBlock(last, most int) int {
	if last == 0 {
		return arenaFirstBlock
	}
	return min(4*last, most)
}

// take puts v in the block being filled, or in the next (made when there is none) when that
// is full, and returns its place: a block is never appended to past its capacity, so a place
// once taken stays put until the arena is reset.
func take[T any](b *blocks[T], v T, most int) *T {
	if len(b.all) == 0 {
		b.all = append(b.all, make([]T, 0, arenaFirstBlock))
	}
	if full := b.all[b.cur]; len(full) == cap(full) {
		if b.cur++; b.cur == len(b.all) {
			b.all = append(b.all, make([]T, 0, nextBlock(cap(full), most)))
		}
	}
	block := &b.all[b.cur]
	*block = append(*block, v)
	return &(*block)[len(*block)-1]
}

func (a *typedArena) newStruct(v reflect.Value, p *valPlan) *typedStruct {
	return take(&a.structs, typedStruct{value: v, plan: p, arena: a}, arenaMaxBlock)
}

func (a *typedArena) newList(v reflect.Value, elem *valPlan) *typedList {
	return take(&a.lists, typedList{value: v, elem: elem, arena: a}, arenaMaxBlock)
}

func (a *typedArena) newMap(v reflect.Value, p *valPlan) *typedMap {
	return take(&a.maps, typedMap{value: v, plan: p, arena: a}, arenaMaxBlock)
}

// addField puts the field read, name and what CEL saw there, in front of the list found.
func (a *typedArena) addField(found *readField, name string, val ref.Val) *readField {
	return take(&a.fields, readField{name: name, val: val, next: found}, arenaMaxFields)
}

var (
	typeIntOrString  = reflect.TypeFor[intstr.IntOrString]()
	typeBytes        = reflect.TypeFor[[]byte]()
	typeQuantity     = reflect.TypeFor[resource.Quantity]()
	typeResourceList = reflect.TypeFor[corev1.ResourceList]()
)

// val is v (addressable, or a value of a kind that needs no address) as CEL sees it.
func (a *typedArena) val(v reflect.Value) ref.Val { return a.valOf(planOf(v.Type()), v) }

// valOf is v, of p's type, as CEL sees it.
func (a *typedArena) valOf(p *valPlan, v reflect.Value) ref.Val {
	switch p.how {
	case valBool:
		return types.Bool(v.Bool())
	case valString:
		return types.String(v.String())
	case valInt:
		return types.Int(v.Int())
	case valUint:
		u := v.Uint()
		if u > 1<<63-1 {
			return types.NewErr("unsigned value %d does not fit into int64 (overflow)", u)
		}
		return types.Int(u)
	case valFloat:
		return types.Double(v.Float())
	case valIntOrString:
		switch ios := intOrString(v); ios.Type {
		case intstr.Int:
			return types.Int(ios.IntVal)
		case intstr.String:
			return types.String(ios.StrVal)
		}
		return viaOwnJSON(p, v)
	case valBytes:
		if v.IsNil() {
			return types.NullValue
		}
		return types.String(base64.StdEncoding.EncodeToString(v.Bytes()))
	case valQuantity:
		if v.CanAddr() { // through its address: v.Interface() would copy it to the heap
			return quantityVal(*v.Addr().Interface().(*resource.Quantity))
		}
		return quantityVal(v.Interface().(resource.Quantity))
	case valOwnJSON:
		switch v.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice:
			if v.IsNil() {
				return types.NullValue
			}
		}
		return viaOwnJSON(p, v)
	case valPointer:
		if v.IsNil() {
			return types.NullValue
		}
		return a.valOf(p.elem, v.Elem())
	case valInterface:
		if v.IsNil() {
			return types.NullValue
		}
		return a.val(addressable(v.Elem()))
	case valList:
		if v.IsNil() {
			return types.NullValue
		}
		return a.newList(v, p.elem)
	case valMap:
		if v.IsNil() {
			return types.NullValue
		}
		return a.newMap(v, p)
	case valStruct:
		return a.newStruct(addressable(v), p)
	}
	return types.NewErr("unsupported Go type for CEL: %v", p.typ)
}

// viaOwnJSON is v, of a type that writes its own JSON, converted through it.
func viaOwnJSON(p *valPlan, v reflect.Value) ref.Val {
	u, err := p.entry.ToUnstructured(addressable(v))
	if err != nil {
		return types.NewErr("failed to convert to unstructured: %v", err)
	}
	if u == nil {
		return types.NullValue
	}
	return types.DefaultTypeAdapter.NativeToValue(u)
}

// quantityVal is q as CEL sees it: the string its JSON is. q is a copy, as String caches its
// text in the Quantity it is called on, and the decoded object is read by others.
func quantityVal(q resource.Quantity) ref.Val { return types.String(q.String()) }

// addressable is v, copied to the heap when it has no address (a map's value, an interface's).
func addressable(v reflect.Value) reflect.Value {
	if v.CanAddr() {
		return v
	}
	p := reflect.New(v.Type())
	p.Elem().Set(v)
	return p.Elem()
}

// typedList is a slice as a CEL list; its elements are converted once, when read.
type typedList struct {
	value reflect.Value
	elem  *valPlan // the elements'
	elems []ref.Val
	arena *typedArena
}

var _ traits.Lister = (*typedList)(nil)

func (l *typedList) ConvertToNative(t reflect.Type) (any, error) {
	if t.Kind() == reflect.Slice {
		return l.value.Interface(), nil
	}
	return nil, fmt.Errorf("type conversion error from '%s' to '%s'", l.Type(), t)
}

func (l *typedList) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.ListType:
		return l
	case types.TypeType:
		return types.ListType
	}
	return types.NewErr("type conversion error from '%s' to '%s'", l.Type(), t.TypeName())
}

func (l *typedList) Equal(other ref.Val) ref.Val {
	o, ok := other.(traits.Lister)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	n := l.value.Len()
	if types.Int(n) != o.Size() {
		return types.False
	}
	for i := range n {
		if l.at(i).Equal(o.Get(types.Int(i))) != types.True {
			return types.False
		}
	}
	return types.True
}

func (l *typedList) Type() ref.Type { return types.ListType }
func (l *typedList) Value() any     { return l.value.Interface() }
func (l *typedList) Size() ref.Val  { return types.Int(l.value.Len()) }

func (l *typedList) Contains(val ref.Val) ref.Val {
	for i := range l.value.Len() {
		if l.at(i).Equal(val) == types.True {
			return types.True
		}
	}
	return types.False
}

func (l *typedList) Add(other ref.Val) ref.Val {
	o, ok := other.(traits.Lister)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	n := l.value.Len()
	on, _ := o.Size().(types.Int)
	elems := make([]ref.Val, 0, n+int(on))
	for i := range n {
		elems = append(elems, l.at(i))
	}
	for it := o.Iterator(); it.HasNext() == types.True; {
		elems = append(elems, it.Next())
	}
	return types.NewRefValList(types.DefaultTypeAdapter, elems)
}

func (l *typedList) Get(index ref.Val) ref.Val {
	i, ok := index.(types.Int)
	if !ok {
		return types.ValOrErr(index, "unsupported index type: %T", index)
	}
	if i < 0 || int(i) >= l.value.Len() {
		return types.NewErr("index out of bounds: %d", i)
	}
	return l.at(int(i))
}

// at is element i, in range.
func (l *typedList) at(i int) ref.Val {
	if l.elems == nil {
		l.elems = l.arena.vals.cut(l.value.Len())
	}
	if v := l.elems[i]; v != nil {
		return v
	}
	v := l.arena.valOf(l.elem, l.value.Index(i))
	l.elems[i] = v
	return v
}

func (l *typedList) Iterator() traits.Iterator {
	return take(&l.arena.iters, typedListIterator{list: l}, arenaMaxFields)
}

type typedListIterator struct {
	types.Null // its Type and Value are never read; CEL only iterates
	list       *typedList
	i          int
}

func (it *typedListIterator) HasNext() ref.Val { return types.Bool(it.i < it.list.value.Len()) }

func (it *typedListIterator) Next() ref.Val {
	if it.i >= it.list.value.Len() {
		return types.NewErr("no more elements")
	}
	v := it.list.at(it.i)
	it.i++
	return v
}

// typedMap is a map with string keys as a CEL map; its values are converted once, when read.
type typedMap struct {
	value reflect.Value
	plan  *valPlan // the map's
	found *readField
	arena *typedArena
}

// readField is a key read and what CEL saw there (nil when it is absent), in a list of the
// fields of a struct or map read so far, the last read first.
type readField struct {
	name string
	val  ref.Val
	next *readField
}

// cached looks name up among the fields already read.
func cached(fields *readField, name string) (ref.Val, bool) {
	for f := fields; f != nil; f = f.next {
		if f.name == name {
			return f.val, true
		}
	}
	return nil, false
}

var _ traits.Mapper = (*typedMap)(nil)

func (m *typedMap) ConvertToNative(t reflect.Type) (any, error) {
	if m.value.Type().AssignableTo(t) {
		return m.value.Interface(), nil
	}
	return nil, fmt.Errorf("type conversion error from '%s' to '%s'", m.Type(), t)
}

func (m *typedMap) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return m
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from '%s' to '%s'", m.Type(), t.TypeName())
}

func (m *typedMap) Equal(other ref.Val) ref.Val { return mapEqual(m, other) }

// mapEqual compares two maps as CEL does, key by key.
func mapEqual(m traits.Mapper, other ref.Val) ref.Val {
	o, ok := other.(traits.Mapper)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	if m.Size() != o.Size() {
		return types.False
	}
	for it := m.Iterator(); it.HasNext() == types.True; {
		k := it.Next()
		v1, _ := m.Find(k)
		v2, found := o.Find(k)
		if !found {
			return types.False
		}
		if eq := v1.Equal(v2); eq != types.True {
			return eq
		}
	}
	return types.True
}

func (m *typedMap) Type() ref.Type { return types.MapType }
func (m *typedMap) Value() any     { return m.value.Interface() }
func (m *typedMap) Size() ref.Val  { return types.Int(m.value.Len()) }

func (m *typedMap) Contains(key ref.Val) ref.Val { return contains(m.Find(key)) }

// contains is whether a key was found, from what Find returned: an error found is the answer.
func contains(v ref.Val, found bool) ref.Val {
	if v != nil && types.IsError(v) {
		return v
	}
	return types.Bool(found)
}

func (m *typedMap) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.ValOrErr(key, "unsupported map key type: %T", key), false
	}
	name := string(k)
	if v, ok := cached(m.found, name); ok {
		return v, v != nil
	}
	var result ref.Val
	switch {
	case m.plan.stringMap:
		if e, ok := m.value.Interface().(map[string]string)[name]; ok {
			result = types.String(e)
		}
	case m.plan.resourceList:
		if q, ok := m.value.Interface().(corev1.ResourceList)[corev1.ResourceName(name)]; ok {
			result = quantityVal(q)
		}
	case m.plan.stringKeys:
		if e := m.value.MapIndex(reflect.ValueOf(name).Convert(m.value.Type().Key())); e.IsValid() {
			result = m.arena.valOf(m.plan.elem, e)
		}
	}
	m.found = m.arena.addField(m.found, name, result)
	return result, result != nil
}

func (m *typedMap) Get(key ref.Val) ref.Val {
	v, found := m.Find(key)
	if !found {
		if v != nil && types.IsError(v) {
			return v
		}
		return types.ValOrErr(key, "no such key: %v", key)
	}
	return v
}

func (m *typedMap) Iterator() traits.Iterator {
	if m.plan.stringMap {
		return &keyIterator{keys: slices.AppendSeq(make([]string, 0, m.value.Len()), maps.Keys(m.value.Interface().(map[string]string)))}
	}
	keys := m.value.MapKeys()
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.String()
	}
	return &keyIterator{keys: names}
}

// keyIterator walks a map's keys.
type keyIterator struct {
	types.Null // its Type and Value are never read; CEL only iterates
	keys       []string
	i          int
}

func (it *keyIterator) HasNext() ref.Val { return types.Bool(it.i < len(it.keys)) }

func (it *keyIterator) Next() ref.Val {
	if it.i >= len(it.keys) {
		return types.NewErr("no more elements")
	}
	k := types.String(it.keys[it.i])
	it.i++
	return k
}

// typedStruct is a struct as a CEL map of its JSON fields (omitempty ones absent when empty,
// inlined ones flattened); a field is converted once, when read.
type typedStruct struct {
	value reflect.Value // addressable
	plan  *valPlan      // the struct's
	found *readField
	arena *typedArena
}

var _ traits.Mapper = (*typedStruct)(nil)

func (s *typedStruct) ConvertToNative(t reflect.Type) (any, error) {
	if s.value.Type().AssignableTo(t) {
		return s.value.Interface(), nil
	}
	return nil, fmt.Errorf("type conversion error from struct type %v to %v", s.value.Type(), t)
}

func (s *typedStruct) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return s
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from struct to %s", t.TypeName())
}

func (s *typedStruct) Equal(other ref.Val) ref.Val {
	if o, ok := other.(*typedStruct); ok {
		return types.Bool(apiequality.Semantic.DeepEqual(s.value.Interface(), o.value.Interface()))
	}
	return mapEqual(s, other)
}

func (s *typedStruct) Type() ref.Type { return types.MapType } // JSON objects are maps to CEL
func (s *typedStruct) Value() any     { return s.value.Interface() }

func (s *typedStruct) IsSet(f ref.Val) ref.Val {
	v, found := s.Find(f)
	if v != nil && types.IsUnknownOrError(v) {
		return v
	}
	return types.Bool(found)
}

func (s *typedStruct) Contains(key ref.Val) ref.Val { return contains(s.Find(key)) }

func (s *typedStruct) Get(key ref.Val) ref.Val {
	v, found := s.Find(key)
	if !found {
		return types.ValOrErr(key, "no such key: %v", key)
	}
	return v
}

func (s *typedStruct) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.ValOrErr(key, "unsupported map key type: %T", key), true
	}
	name := string(k)
	if v, ok := cached(s.found, name); ok {
		return v, v != nil
	}
	var result ref.Val
	if f, ok := s.plan.fields[name]; ok {
		if e := f.GetFrom(s.value); !f.CanOmit(e) {
			result = s.arena.valOf(f.plan, e)
		}
	}
	s.found = s.arena.addField(s.found, name, result)
	return result, result != nil
}

func (s *typedStruct) Size() ref.Val {
	n := 0
	for _, fc := range s.plan.fields {
		if !fc.CanOmit(fc.GetFrom(s.value)) {
			n++
		}
	}
	return types.Int(n)
}

func (s *typedStruct) Iterator() traits.Iterator {
	var names []string
	for name, fc := range s.plan.fields {
		if !fc.CanOmit(fc.GetFrom(s.value)) {
			names = append(names, name)
		}
	}
	return &keyIterator{keys: names}
}
