package policies

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/cel/common"
	"sigs.k8s.io/yaml"
)

// TestTypedValMatchesUnstructured holds typedToVal to what k8s.io/apiserver's
// SchemalessTypedToVal and the unstructured conversion make of the same objects: every key,
// element and scalar, read the way CEL reads them, on the library's test objects, the examples
// and the benchmark's, and on values of every special kind (IntOrString both ways, Quantity, Time,
// bytes, nil and empty omitempty fields, nil pointers).
func TestTypedValMatchesUnstructured(t *testing.T) {
	var objects []runtime.Object
	decoder := NewDecoder(true)
	for _, js := range corpusJSON(t) {
		res, err := decoder.Decode(js, nil)
		if err != nil {
			continue // the suites hold objects the decoder refuses on purpose
		}
		objects = append(objects, res.Object)
	}
	if len(objects) < 100 {
		t.Fatalf("only %d objects read: the globs no longer find the test objects", len(objects))
	}
	now := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	objects = append(objects,
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "s", CreationTimestamp: now, DeletionTimestamp: &now, Labels: map[string]string{}},
			Data:       map[string][]byte{"k": []byte("\x00\xffbinary"), "nil": nil},
			StringData: map[string]string{"a": "b"},
		},
		&corev1.ConfigMap{BinaryData: map[string][]byte{"b": {1, 2, 3}}, Immutable: new(bool)},
		&corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Port: 80, TargetPort: intstr.FromInt32(8080)},
			{Port: 443, TargetPort: intstr.FromString("https")},
			{Port: 1},
		}, ClusterIPs: []string{}}},
		&corev1.Pod{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.5"), corev1.ResourceMemory: resource.MustParse("1Gi")},
				Requests: corev1.ResourceList{},
			}}},
			SecurityContext:               &corev1.PodSecurityContext{},
			TerminationGracePeriodSeconds: new(int64),
			Overhead:                      corev1.ResourceList{"x": resource.MustParse("1e3")},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse("0.25Gi"))},
			}}},
		}},
		&appsv1.Deployment{Spec: appsv1.DeploymentSpec{Strategy: appsv1.DeploymentStrategy{
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: new(intstr.FromString("25%")), MaxUnavailable: new(intstr.FromInt32(1))},
		}}},
		&corev1.Namespace{},
	)
	for i, obj := range objects {
		want, got := common.SchemalessTypedToVal(obj), typedToVal(obj)
		if diff := valDiff("", want, got); diff != "" {
			t.Errorf("object %d (%T): %s", i, obj, diff)
		}
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		if eq := got.Equal(types.DefaultTypeAdapter.NativeToValue(u)); eq != types.True {
			t.Errorf("object %d (%T): not equal to its unstructured form: %v", i, obj, eq)
		}
	}
	if v := typedToVal((*corev1.Pod)(nil)); v != types.NullValue {
		t.Errorf("a nil object is %v, want null", v)
	}
}

// valDiff describes the first difference between two CEL values, reading both through CEL's
// traits; "" when they agree.
func valDiff(path string, want, got ref.Val) string {
	if want.Type() != got.Type() {
		return path + ": type " + got.Type().TypeName() + ", want " + want.Type().TypeName()
	}
	switch w := want.(type) {
	case traits.Mapper:
		g := got.(traits.Mapper)
		if w.Size() != g.Size() {
			return path + ": size differs"
		}
		keys := func(m traits.Mapper) []string {
			var ks []string
			for it := m.Iterator(); it.HasNext() == types.True; {
				ks = append(ks, string(it.Next().(types.String)))
			}
			slices.Sort(ks)
			return ks
		}
		wk, gk := keys(w), keys(g)
		if !slices.Equal(wk, gk) {
			return path + ": keys " + string(showVal(gk)) + ", want " + string(showVal(wk))
		}
		for _, k := range wk {
			wv, _ := w.Find(types.String(k))
			gv, found := g.Find(types.String(k))
			if !found {
				return path + "." + k + ": not found"
			}
			if gv.Equal(wv) != types.True || g.Get(types.String(k)).Equal(wv) != types.True {
				return path + "." + k + ": values differ"
			}
			if d := valDiff(path+"."+k, wv, gv); d != "" {
				return d
			}
		}
		probe := []string{"no-such-field"}
		if s, ok := got.(*typedStruct); ok {
			for name := range s.plan.fields { // the omitted ones too
				probe = append(probe, name)
			}
		}
		for _, k := range probe {
			_, wf := w.Find(types.String(k))
			_, gf := g.Find(types.String(k))
			if wf != gf || g.Contains(types.String(k)) != w.Contains(types.String(k)) {
				return path + "." + k + ": present or not, unlike the reference"
			}
		}
	case traits.Lister:
		g := got.(traits.Lister)
		if w.Size() != g.Size() {
			return path + ": length differs"
		}
		n := int(w.Size().(types.Int))
		for i := range n {
			if d := valDiff(path+"["+string(showVal(i))+"]", w.Get(types.Int(i)), g.Get(types.Int(i))); d != "" {
				return d
			}
		}
		if !types.IsError(g.Get(types.Int(n))) {
			return path + ": an index past the end is not an error"
		}
	default:
		if want.Equal(got) != types.True {
			return path + ": " + string(showVal(got.Value())) + ", want " + string(showVal(want.Value()))
		}
	}
	return ""
}

func showVal(v any) []byte {
	b, _ := yaml.Marshal(v)
	return bytes.TrimSpace(b)
}

// corpusJSON is every object of the library's suites and the examples, and the benchmark's Pod
// and Deployment, as JSON.
func corpusJSON(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, doc := range yamlDocuments(t, "../../manifests/library/tests/*/*/*.yaml", "../../manifests/library/tests/*/*.yaml", "../../examples/workloads/*.yaml") {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil || len(bytes.TrimSpace(js)) == 0 || string(js) == "null" {
			continue
		}
		out = append(out, js)
	}
	for _, f := range []string{"testdata/bench/pod.json", "testdata/bench/deployment.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// TestTypedArenaKeepsViews: the views an arena hands out stay put as its blocks fill: a struct,
// list or field read first is the same value, holding what it held, after hundreds more; and an
// arena that grew so large is not reused.
func TestTypedArenaKeepsViews(t *testing.T) {
	pod := &corev1.Pod{}
	for i := range 600 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: fmt.Sprintf("img:%d", i),
			Ports: []corev1.ContainerPort{{ContainerPort: int32(i + 1)}}})
	}
	spec := new(typedArena).toVal(&pod.Spec).(traits.Mapper)
	containers := spec.Get(types.String("containers")).(traits.Lister)
	first := containers.Get(types.Int(0)).(traits.Mapper)
	name := first.Get(types.String("name"))
	for i := range 600 { // every container, its name, image and first port: many blocks of each kind
		c := containers.Get(types.Int(i)).(traits.Mapper)
		for it := c.Get(types.String("ports")).(traits.Lister).Iterator(); it.HasNext() == types.True; {
			if p := it.Next().(traits.Mapper).Get(types.String("containerPort")); p != types.Int(i+1) {
				t.Fatalf("container %d: port %v", i, p)
			}
		}
		if c.Get(types.String("image")) != types.String(fmt.Sprintf("img:%d", i)) || c.Get(types.String("name")) != types.String(fmt.Sprintf("c%d", i)) {
			t.Fatalf("container %d read wrong", i)
		}
	}
	if again := containers.Get(types.Int(0)); again != first {
		t.Error("the first container's view changed")
	}
	if first.Get(types.String("name")) != name || name != types.String("c0") {
		t.Errorf("the first container's name is %v", first.Get(types.String("name")))
	}
	a := spec.(*typedStruct).arena
	if n := longestBlock(a.structs); n > arenaMaxBlock {
		t.Errorf("a block of %d structs, over its bound", n)
	}
	if n := max(longestBlock(a.fields), longestBlock(a.iters)); n > arenaMaxFields {
		t.Errorf("a block of %d fields or iterators, over its bound", n)
	}
	// So many views are not kept for the next object's.
	if a.reusable() {
		t.Errorf("an arena of %d blocks of structs is reused, past %d", len(a.structs.all), arenaMaxBlocks)
	}
}

func longestBlock[T any](b blocks[T]) int {
	n := 0
	for _, block := range b.all {
		n = max(n, cap(block))
	}
	return n
}

// TestTypedArenaReset: an arena reset reads another object through the same blocks, and keeps
// nothing of the object it read before.
func TestTypedArenaReset(t *testing.T) {
	pods := make([]*corev1.Pod, 2)
	for p := range pods {
		pods[p] = &corev1.Pod{}
		for i := range 40 {
			pods[p].Spec.Containers = append(pods[p].Spec.Containers, corev1.Container{Name: fmt.Sprintf("p%d-c%d", p, i)})
		}
	}
	a := new(typedArena)
	names := func(pod *corev1.Pod) []string {
		var out []string
		containers := a.toVal(&pod.Spec).(traits.Mapper).Get(types.String("containers")).(traits.Lister)
		for it := containers.Iterator(); it.HasNext() == types.True; {
			out = append(out, string(it.Next().(traits.Mapper).Get(types.String("name")).(types.String)))
		}
		return out
	}
	first := names(pods[0])
	if !a.reusable() {
		t.Fatalf("an arena of %d blocks of structs is not reused", len(a.structs.all))
	}
	blocksBefore, firstBlock := len(a.structs.all), &a.structs.all[0][0]
	a.reset()
	for _, b := range a.structs.all {
		if len(b) != 0 || slices.ContainsFunc(b[:cap(b)], func(s typedStruct) bool { return s.arena != nil }) {
			t.Fatal("a reset arena still holds the last object's views")
		}
	}
	second := names(pods[1])
	if first[39] != "p0-c39" || second[0] != "p1-c0" || second[39] != "p1-c39" {
		t.Errorf("read %v, then %v", first, second)
	}
	if len(a.structs.all) != blocksBefore || &a.structs.all[0][0] != firstBlock {
		t.Errorf("the second object took %d blocks of structs, the first %d: the blocks were not reused", len(a.structs.all), blocksBefore)
	}
}

// planNode is a recursive type, for TestPlansOfRecursiveTypes.
type planNode struct {
	Name  string               `json:"name"`
	Next  *planNode            `json:"next,omitempty"`
	Kids  []planNode           `json:"kids,omitempty"`
	ByKey map[string]*planNode `json:"byKey,omitempty"`
	Port  intstr.IntOrString   `json:"port"`
}

// TestPlansOfRecursiveTypes: a type that holds itself gets one plan, made once, and its values
// read as their unstructured form; plans made by goroutines at once agree (run it with -race).
func TestPlansOfRecursiveTypes(t *testing.T) {
	leaf := &planNode{Name: "leaf", Port: intstr.FromString("http")}
	obj := &planNode{Name: "root", Next: leaf, Kids: []planNode{{Name: "kid", Next: leaf}}, ByKey: map[string]*planNode{"l": leaf, "nil": nil}, Port: intstr.FromInt32(8)}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	want := types.DefaultTypeAdapter.NativeToValue(u)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if d := valDiff("", want, typedToVal(obj)); d != "" {
				t.Error(d)
			}
		})
	}
	wg.Wait()
	p := planOf(reflect.TypeFor[planNode]())
	if p.fields["next"].plan.elem != p || p.fields["kids"].plan.elem != p || p.fields["byKey"].plan.elem.elem != p {
		t.Errorf("the plan of planNode does not refer to itself: %+v", p.fields)
	}
}

// yamlDocuments are the YAML documents of the files the globs find, in order.
func yamlDocuments(t testing.TB, globs ...string) [][]byte {
	t.Helper()
	var files []string
	for _, glob := range globs {
		more, _ := filepath.Glob(glob)
		files = append(files, more...)
	}
	var out [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out = append(out, doc)
		}
	}
	return out
}
