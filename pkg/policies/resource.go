package policies

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"

	gojson "github.com/goccy/go-json"

	"github.com/portcullis-dev/portcullis/internal/jsonscan"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// Resource is an object decoded once, defaulted as the API server defaults it on CREATE, with its
// pod template located when it has one.
type Resource struct {
	GVK schema.GroupVersionKind
	// Object is a typed object for the built-in kinds Portcullis knows (core/v1, apps/v1,
	// batch/v1) and *unstructured.Unstructured for every other kind.
	Object runtime.Object
	Meta   metav1.Object
	// Pod is the pod spec and metadata for Pods and pod controllers, nil for other kinds.
	Pod *PodTemplate

	celObject ref.Val
	celPod    [2]ref.Val
	views     *typedArena // celObject's, celPod's and its requests' (nil until CEL reads it)
	// bounds are the JSON's it was decoded from (jsonbounds.go); zero when unknown.
	bounds jsonBounds
}

// PodTemplate is the pod a pod-bearing object creates, with the real field paths of its parts.
type PodTemplate struct {
	Meta     *metav1.ObjectMeta
	Spec     *corev1.PodSpec
	MetaPath *field.Path
	SpecPath *field.Path
	// SpecPointer is SpecPath as a JSON pointer (/spec/template/spec), for patches.
	SpecPointer string
	// Template is set when the pod is a pod controller's template, not a Pod.
	Template bool
}

// Ref identifies a resource in results.
type Ref struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

// Ref returns the reference of the resource.
func (r *Resource) Ref() Ref {
	return Ref{APIVersion: r.GVK.GroupVersion().String(), Kind: r.GVK.Kind, Namespace: r.Meta.GetNamespace(), Name: r.Meta.GetName()}
}

// String is "apiVersion Kind namespace/name".
func (r Ref) String() string {
	name := r.Name
	if r.Namespace != "" {
		name = r.Namespace + "/" + r.Name
	}
	return r.APIVersion + " " + r.Kind + " " + name
}

// celValue is the object as CEL sees it, built lazily once per resource. The value is not safe
// for concurrent use: a resource is evaluated by one goroutine.
func (r *Resource) celValue() ref.Val {
	if r == nil {
		return types.NullValue
	}
	if r.celObject == nil {
		r.celObject = r.toCELValue()
	}
	return r.celObject
}

func (r *Resource) celPodValues() (spec, meta ref.Val) {
	if r == nil || r.Pod == nil {
		return types.NullValue, types.NullValue
	}
	if r.celPod[0] == nil {
		r.celPod = [2]ref.Val{r.arena().toVal(r.Pod.Spec), r.arena().toVal(r.Pod.Meta)}
	}
	return r.celPod[0], r.celPod[1]
}

func (r *Resource) toCELValue() ref.Val {
	if u, ok := r.Object.(*unstructured.Unstructured); ok {
		return types.DefaultTypeAdapter.NativeToValue(u.Object)
	}
	return r.arena().toVal(r.Object)
}

// arenas are the arenas of the Resources released, for the views of the next ones: a review's
// views are a fifth of what it allocates.
var arenas = sync.Pool{New: func() any { return new(typedArena) }}

// arena is where r's views are made.
func (r *Resource) arena() *typedArena {
	if r.views == nil {
		r.views = arenas.Get().(*typedArena) //nolint:forcetypeassert // the pool holds nothing else
	}
	return r.views
}

// Release recycles the views through which CEL read r, for another Resource's. Call it once the
// engine's calls for the request that r is part of have returned: no CEL value of r's is in use
// then (results hold none). r stays valid, and CEL would read it again through new views. A
// Resource not released is collected with its views.
func (r *Resource) Release() {
	if r == nil || r.views == nil {
		return
	}
	if r.views.reusable() {
		r.views.reset()
		arenas.Put(r.views)
	}
	r.views, r.celObject, r.celPod = nil, nil, [2]ref.Val{}
}

// Decoder turns JSON into Resources. It is safe for concurrent use.
type Decoder struct {
	scheme *runtime.Scheme
	strict bool
	shared bool // the decoded strings refer to the input (SharingInput)
}

// NewDecoder returns a decoder for the built-in kinds that carry pods and for the Portcullis API.
// A strict decoder rejects unknown and duplicate fields, as the API server does with
// fieldValidation=Strict (kubectl's default), and defaults the object as the API server would;
// the webhook decodes objects the API server has already validated and defaulted, and uses a
// lenient one, which does neither.
func NewDecoder(strict bool) *Decoder {
	return &Decoder{scheme: decoderScheme(), strict: strict}
}

// decoderScheme is the decoders' scheme, built once (in about 0.2 ms) and only read after.
var decoderScheme = sync.OnceValue(func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(fmt.Sprintf("building the scheme: %v", err)) // static registration; cannot fail
		}
	}
	return s
})

// SharingInput returns a lenient decoder whose Resources' strings refer to the JSON they were
// decoded from instead of being copies of it: on a 7 KB Pod, 190 allocations fewer. That JSON must
// not change while the Resource, its results or anything taken from them is in use, and what
// outlives the request must be cloned, as the CEL regex cache, image verification and the
// audit's store do. The webhook decodes with it (each request's object is a buffer of its own,
// dropped with the request), and so does the audit scan (an object is a part of its LIST page).
// The CLI copies: it keeps every result's names until it prints them.
func (d *Decoder) SharingInput() *Decoder {
	c := *d
	c.shared = !c.strict
	return &c
}

// ErrNotObject is returned for JSON that is not a Kubernetes object.
var ErrNotObject = errors.New("not a Kubernetes object")

// TypeMeta reads apiVersion and kind from a JSON object.
func TypeMeta(data []byte) (schema.GroupVersionKind, error) {
	var tm metav1.TypeMeta
	plain := jsonscan.Members(data, func(key, value []byte) {
		switch string(key) {
		case "apiVersion":
			tm.APIVersion, _ = jsonscan.String(value)
		case "kind":
			tm.Kind, _ = jsonscan.String(value)
		}
	})
	if !plain || tm.APIVersion == "" || tm.Kind == "" {
		// Not an object, an escape, a value not a string: the decoder says what it is.
		tm = metav1.TypeMeta{}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &tm); err != nil {
			return schema.GroupVersionKind{}, fmt.Errorf("%w: %w", ErrNotObject, err)
		}
	}
	return GroupVersionKind(tm.APIVersion, tm.Kind)
}

// GroupVersionKind is the kind an object's apiVersion and kind name.
func GroupVersionKind(apiVersion, kind string) (schema.GroupVersionKind, error) {
	if apiVersion == "" || kind == "" {
		return schema.GroupVersionKind{}, fmt.Errorf("%w: apiVersion and kind must be set", ErrNotObject)
	}
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionKind{}, fmt.Errorf("%w: apiVersion: %w", ErrNotObject, err)
	}
	return gv.WithKind(kind), nil
}

// Decode decodes one JSON object of the given kind (read from the data when gvk is nil); a
// strict decoder also applies the API defaulting and preparation of a CREATE.
func (d *Decoder) Decode(data []byte, gvk *schema.GroupVersionKind) (*Resource, error) {
	var kind schema.GroupVersionKind
	if gvk != nil {
		kind = *gvk
	} else {
		var err error
		if kind, err = TypeMeta(data); err != nil {
			return nil, err
		}
	}
	var obj runtime.Object
	if d.scheme.Recognizes(kind) {
		typed, err := d.scheme.New(kind)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		obj = typed
	} else {
		obj = &unstructured.Unstructured{}
	}
	// The bounds are read before decoding: for the lenient decoder, with the lengths its pod
	// spec's slices are made to (presize.go).
	var sizer *podSizer
	t := podTemplateOf(obj)
	if keys, ok := specKeys[t.specPointer()]; ok && !d.strict {
		sizer = sizers.Get().(*podSizer)
		defer sizers.Put(sizer)
		sizer.reset(keys)
	}
	bounds := scanBounds(data, sizer)
	if sizer != nil && bounds != unknownBounds {
		sizer.lengths.presize(t.Spec)
	}
	if err := d.unmarshal(data, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", kind.GroupVersion(), describeObject(kind, data), err)
	}
	obj.GetObjectKind().SetGroupVersionKind(kind)
	if d.strict {
		// A strict decoder reads what the API server has not seen (the CLI): default and prepare
		// it as the API server does a CREATE before validating webhooks run. The webhook's
		// lenient one reads what the API server has defaulted and prepared already.
		applyDefaults(obj)
		if pod, ok := obj.(*corev1.Pod); ok {
			prepareForCreate(pod)
		}
	}
	if t == nil { // a ReplicationController's template is a pointer, nil until decoded
		t = podTemplateOf(obj)
	}
	res, err := newResource(kind, obj, t)
	if err == nil {
		if res.bounds = bounds; res.bounds != unknownBounds { // and the kind given
			res.bounds.chars = max(res.bounds.chars, len(kind.Group)+1+len(kind.Version), len(kind.Kind))
		}
	}
	return res, err
}

// describeObject names an object that failed to decode: `Kind "namespace/name"`.
func describeObject(kind schema.GroupVersionKind, data []byte) string {
	var m metav1.PartialObjectMetadata
	_ = sigsjson.UnmarshalCaseSensitivePreserveInts(data, &m) // best effort, for the message only
	name := m.Name
	if m.Namespace != "" {
		name = m.Namespace + "/" + name
	}
	return fmt.Sprintf("%s %q", kind.Kind, name)
}

func (d *Decoder) unmarshal(data []byte, obj runtime.Object) error {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		var m map[string]any
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &m); err != nil {
			return err
		}
		if m == nil {
			return ErrNotObject
		}
		u.Object = m
		return nil
	}
	if !d.strict {
		// The webhook's path: the object was validated and serialized by the API server, so a
		// faster decoder gives the same result (TestLenientDecoderAgrees, FuzzDecodeEvaluate).
		if d.shared {
			return gojson.UnmarshalWithOption(data, obj, gojson.DecodeNoCopyString())
		}
		return gojson.Unmarshal(data, obj)
	}
	return unmarshalStrict(data, obj)
}

// Into decodes data strictly into a typed object, e.g. a policy.
func (d *Decoder) Into(data []byte, obj runtime.Object) error {
	return d.unmarshal(data, obj)
}

func newResource(gvk schema.GroupVersionKind, obj runtime.Object, pod *PodTemplate) (*Resource, error) {
	meta, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%s has no object metadata", gvk)
	}
	return &Resource{GVK: gvk, Object: obj, Meta: meta, Pod: pod}, nil
}

// NewResource wraps an object decoded elsewhere (e.g. listed from the API).
func NewResource(obj runtime.Object) (*Resource, error) {
	return newResource(obj.GetObjectKind().GroupVersionKind(), obj, podTemplateOf(obj))
}

var (
	specPath     = field.NewPath("spec")
	metadataPath = field.NewPath("metadata")
	templatePath = specPath.Child("template")
	jobTmplPath  = specPath.Child("jobTemplate", "spec", "template")
)

// sizers hold podSizers between decodings: one is 3 KB, which its frames need no clearing of
// (a frame is written as it opens).
var sizers = sync.Pool{New: func() any { return new(podSizer) }}

// specKeys are the keys that lead from a pod-bearing object to its pod spec, by the spec's JSON
// pointer (PodTemplate.SpecPointer), split once.
var specKeys = func() map[string][]string {
	keys := map[string][]string{}
	for _, pointer := range []string{"/spec", templatePointer + "/spec", jobTmplPointer + "/spec"} {
		keys[pointer] = strings.Split(pointer[1:], "/")
	}
	return keys
}()

// The JSON pointers of templatePath and jobTmplPath.
const (
	templatePointer = "/spec/template"
	jobTmplPointer  = "/spec/jobTemplate/spec/template"
)

func template(t *corev1.PodTemplateSpec, at *field.Path, pointer string) *PodTemplate {
	return &PodTemplate{Meta: &t.ObjectMeta, Spec: &t.Spec, MetaPath: at.Child("metadata"), SpecPath: at.Child("spec"),
		SpecPointer: pointer + "/spec", Template: true}
}

// specPointer is t's SpecPointer; "" for none.
func (t *PodTemplate) specPointer() string {
	if t == nil {
		return ""
	}
	return t.SpecPointer
}

// podTemplateOf locates the pod of the pod-bearing kinds: Pod and the pod controllers.
func podTemplateOf(obj runtime.Object) *PodTemplate {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &PodTemplate{Meta: &o.ObjectMeta, Spec: &o.Spec, MetaPath: metadataPath, SpecPath: specPath, SpecPointer: "/spec"}
	case *appsv1.Deployment:
		return template(&o.Spec.Template, templatePath, templatePointer)
	case *appsv1.StatefulSet:
		return template(&o.Spec.Template, templatePath, templatePointer)
	case *appsv1.DaemonSet:
		return template(&o.Spec.Template, templatePath, templatePointer)
	case *appsv1.ReplicaSet:
		return template(&o.Spec.Template, templatePath, templatePointer)
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return nil
		}
		return template(o.Spec.Template, templatePath, templatePointer)
	case *batchv1.Job:
		return template(&o.Spec.Template, templatePath, templatePointer)
	case *batchv1.CronJob:
		return template(&o.Spec.JobTemplate.Spec.Template, jobTmplPath, jobTmplPointer)
	}
	return nil
}

// podControllerKinds are the kinds whose pod template inherits rules written for Pods.
var podControllerKinds = map[schema.GroupKind]bool{
	{Group: "apps", Kind: "Deployment"}:        true,
	{Group: "apps", Kind: "StatefulSet"}:       true,
	{Group: "apps", Kind: "DaemonSet"}:         true,
	{Group: "apps", Kind: "ReplicaSet"}:        true,
	{Group: "", Kind: "ReplicationController"}: true,
	{Group: "batch", Kind: "Job"}:              true,
	{Group: "batch", Kind: "CronJob"}:          true,
}
