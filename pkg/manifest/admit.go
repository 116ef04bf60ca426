package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Input is one object read from a document, and the request it is judged in: a CREATE of it,
// or the request an AdmissionReview document recorded.
type Input struct {
	Doc Document
	// Request is what the engine judges. Its Object is nil for a DELETE, whose object is
	// OldObject.
	Request policies.Request
	// JSON is the document of Request.Object, which mutations patch.
	JSON []byte
}

// Subject is the object the input is about: the object, or the old one of a DELETE.
func (in *Input) Subject() *policies.Resource {
	if in.Request.Object != nil {
		return in.Request.Object
	}
	return in.Request.OldObject
}

// Inputs decodes documents as the API server would see them: each object a CREATE of it,
// placed in namespace when it is namespaced and sets none; an AdmissionReview the request it
// recorded, with its operation, old object, user and namespace. Every bad document is named.
func Inputs(docs []Document, namespace string) ([]Input, error) {
	type decoded struct {
		in  Input
		err error
	}
	results := parallel(len(docs), func() *policies.Decoder { return policies.NewDecoder(true) }, func(d *policies.Decoder, i int) decoded {
		in, err := decodeInput(d, docs[i], namespace)
		return decoded{in, err}
	})
	var inputs []Input
	var errs []error
	for i, r := range results {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", docs[i].Where(), r.err))
			continue
		}
		inputs = append(inputs, r.in)
	}
	return inputs, errors.Join(errs...)
}

func decodeInput(d *policies.Decoder, doc Document, namespace string) (Input, error) {
	gvk, err := doc.Kind()
	if err != nil {
		return Input{}, err
	}
	if gvk.Kind == "AdmissionReview" && gvk.Group == admissionv1.GroupName {
		return reviewInput(d, doc)
	}
	res, err := d.Decode(doc.JSON, &gvk) // read once: TypeMeta parses the whole document
	if err != nil {
		return Input{}, err
	}
	PlaceInNamespace(res, namespace)
	return Input{Doc: doc, Request: policies.Request{Operation: v1alpha1.Create, Object: res}, JSON: doc.JSON}, nil
}

// reviewInput is the request of an AdmissionReview, as the webhook would judge it.
func reviewInput(d *policies.Decoder, doc Document) (Input, error) {
	var review admissionv1.AdmissionReview
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(doc.JSON, &review); err != nil {
		return Input{}, fmt.Errorf("AdmissionReview: %w", err)
	}
	r := review.Request
	if r == nil {
		return Input{}, errors.New("AdmissionReview: request: Required value: the request to judge")
	}
	op := v1alpha1.Operation(r.Operation)
	switch op {
	case v1alpha1.Create, v1alpha1.Update, v1alpha1.Delete, v1alpha1.Connect:
	default:
		return Input{}, fmt.Errorf("AdmissionReview: request.operation: Unsupported value: %q: supported values: \"CREATE\", \"UPDATE\", \"DELETE\", \"CONNECT\"", r.Operation)
	}
	gvk := schema.GroupVersionKind{Group: r.Kind.Group, Version: r.Kind.Version, Kind: r.Kind.Kind}
	decode := func(field string, raw []byte) (*policies.Resource, error) {
		if len(raw) == 0 || string(raw) == "null" {
			return nil, nil
		}
		var kind *schema.GroupVersionKind
		if gvk.Kind != "" {
			kind = &gvk
		}
		res, err := d.Decode(raw, kind)
		if err != nil {
			return nil, fmt.Errorf("AdmissionReview: request.%s: %w", field, err)
		}
		if res.Meta.GetNamespace() == "" && r.Namespace != "" {
			res.Meta.SetNamespace(r.Namespace)
		}
		if res.Meta.GetName() == "" && r.Name != "" {
			res.Meta.SetName(r.Name) // a CREATE with generateName: the API server names it after admission
		}
		return res, nil
	}
	in := Input{Doc: doc, JSON: r.Object.Raw}
	in.Request = policies.Request{Operation: op, UserInfo: r.UserInfo, SubResource: r.SubResource,
		Resource: metav1.GroupVersionResource{Group: r.Resource.Group, Version: r.Resource.Version, Resource: r.Resource.Resource}}
	if r.DryRun != nil {
		in.Request.DryRun = *r.DryRun
	}
	var err error
	if in.Request.Object, err = decode("object", r.Object.Raw); err != nil {
		return Input{}, err
	}
	if in.Request.OldObject, err = decode("oldObject", r.OldObject.Raw); err != nil {
		return Input{}, err
	}
	switch {
	case op == v1alpha1.Delete && in.Request.OldObject == nil:
		return Input{}, errors.New("AdmissionReview: request.oldObject: Required value: a DELETE judges the object being deleted")
	case op == v1alpha1.Delete:
		in.Request.Object, in.JSON = nil, nil
	case in.Request.Object == nil:
		return Input{}, fmt.Errorf("AdmissionReview: request.object: Required value: a %s judges the object", op)
	case op == v1alpha1.Update && in.Request.OldObject == nil:
		return Input{}, errors.New("AdmissionReview: request.oldObject: Required value: an UPDATE has the object before it")
	}
	return in, nil
}

// Admitted is an input as the API server would admit it.
type Admitted struct {
	Input
	// Object is the object the validating rules judged, mutated when a rule changed it; nil
	// for a DELETE.
	Object *policies.Resource
	// JSON is Object's document.
	JSON    []byte
	Mutated bool
	// Patches are the mutations applied to the input's document.
	Patches []jsonpatch.JsonPatchOperation
	// Results are the mutating rules' results, then the validating rules'.
	Results []policies.Result
}

// Admit runs every input through the engine as the API server runs the webhooks
// (policies.Engine.Admit): the mutating rules, then the validating rules on the mutated
// object. The labels of a namespace come from the Namespace objects among the inputs, else from
// namespaces; a namespace neither has is taken to carry its name label alone.
func Admit(ctx context.Context, engine *policies.Engine, inputs []Input, namespaces []*corev1.Namespace) ([]Admitted, error) {
	byName := map[string]*corev1.Namespace{}
	for _, ns := range namespaces {
		byName[ns.Name] = ns
	}
	for _, in := range inputs {
		if ns, ok := in.Subject().Object.(*corev1.Namespace); ok {
			byName[ns.Name] = ns
		}
	}
	// On every CPU, one decoder each; the results keep the inputs' order.
	type admitted struct {
		a   Admitted
		err error
	}
	results := parallel(len(inputs), func() *policies.Decoder { return policies.NewDecoder(true) }, func(d *policies.Decoder, i int) admitted {
		in := inputs[i]
		req := in.Request
		req.Namespace = byName[in.Subject().Meta.GetNamespace()]
		adm, err := engine.Admit(ctx, &req, in.JSON, d)
		req.Release()
		if err != nil {
			return admitted{err: fmt.Errorf("%s: %w", in.Doc.Where(), err)}
		}
		if adm.Mutated {
			adm.Object.Release()
		}
		return admitted{a: Admitted{Input: in, Object: adm.Object, JSON: adm.JSON, Mutated: adm.Mutated, Patches: adm.Patches, Results: adm.Results}}
	})
	out := make([]Admitted, 0, len(inputs))
	for _, r := range results {
		if r.err != nil {
			return nil, r.err // the first in input order, as before
		}
		out = append(out, r.a)
	}
	return out, nil
}

// ChunkSize is the most documents AdmitChunks holds decoded at once, and ChunkBytes the most
// text: a chunk ends at whichever comes first. A chunk's objects are dropped once judged, so the
// collector reuses their memory for the next chunk's; a larger chunk grows the heap instead,
// and a new process pays a page fault for every page it grows by (1,024 ~7 KB Pods in one
// chunk took a quarter more CPU than in chunks of 256 KiB). Small documents still go 1,024 at a
// time, as each chunk waits for its slowest document.
const (
	ChunkSize  = 1024
	ChunkBytes = 256 << 10
)

// chunkEnd is the end of the chunk of docs that starts at start.
func chunkEnd(docs []Document, start int) int {
	end, size := start, 0
	for end < len(docs) && end-start < ChunkSize && (end == start || size+len(docs[end].JSON) <= ChunkBytes) {
		size += len(docs[end].JSON)
		end++
	}
	return end
}

// AdmitChunks is Inputs then Admit, a chunk of documents at a time (ChunkSize, ChunkBytes), so
// that only one chunk's decoded and admitted objects are in memory at once, however many
// documents there are: each chunk's results go to emit, in input order, and are dropped. The
// Namespace objects among all the documents are known to every chunk, as to Admit. Every bad
// document is named, as by Inputs, in an InvalidDocuments; once one is found, the chunks after
// it are decoded (to name theirs) but not admitted. The text (JSON, Raw) of each admitted
// document is released.
func AdmitChunks(ctx context.Context, engine *policies.Engine, docs []Document, namespace string, namespaces []*corev1.Namespace, emit func([]Admitted)) error {
	namespaces = append(slices.Clip(namespaces), namespaceObjects(docs)...)
	var errs []error
	for start, end := 0, 0; start < len(docs); start = end {
		end = chunkEnd(docs, start)
		chunk := docs[start:end]
		inputs, err := Inputs(chunk, namespace)
		if err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			continue
		}
		admitted, err := Admit(ctx, engine, inputs, namespaces)
		if err != nil {
			return err
		}
		emit(admitted)
		// The chunk's documents are judged: their text goes too (the caller keeps the rest).
		for i := range chunk {
			chunk[i].JSON, chunk[i].Raw = nil, nil
		}
	}
	if len(errs) > 0 {
		return &InvalidDocuments{Err: errors.Join(errs...)}
	}
	return nil
}

// InvalidDocuments are documents that are not objects the engine can judge, each named.
type InvalidDocuments struct{ Err error }

func (e *InvalidDocuments) Error() string { return e.Err.Error() }
func (e *InvalidDocuments) Unwrap() error { return e.Err }

// namespaceObjects decodes the Namespace objects among docs; other documents are only peeked
// at, and bad ones are left for Inputs to name.
func namespaceObjects(docs []Document) []*corev1.Namespace {
	var out []*corev1.Namespace
	d := policies.NewDecoder(true)
	for _, doc := range docs {
		if !bytes.Contains(doc.JSON, []byte(`"Namespace"`)) {
			continue // not one, without parsing it
		}
		gvk, err := doc.Kind()
		if err != nil || gvk.Kind != "Namespace" || gvk.Group != "" {
			continue
		}
		if res, err := d.Decode(doc.JSON, &gvk); err == nil {
			if ns, ok := res.Object.(*corev1.Namespace); ok {
				out = append(out, ns)
			}
		}
	}
	return out
}

// clusterScopedKinds are the common cluster-scoped kinds; every other kind is taken to be
// namespaced and placed in the default namespace when it sets none, as kubectl does.
var clusterScopedKinds = map[string]bool{
	"Namespace": true, "Node": true, "PersistentVolume": true, "ClusterRole": true,
	"ClusterRoleBinding": true, "StorageClass": true, "CustomResourceDefinition": true,
	"ValidatingWebhookConfiguration": true, "MutatingWebhookConfiguration": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
	"MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true,
	"PriorityClass": true, "IngressClass": true, "RuntimeClass": true, "APIService": true,
	"CSIDriver": true, "CSINode": true, "VolumeAttachment": true, "ClusterPolicy": true,
	"CertificateSigningRequest": true, "FlowSchema": true, "PriorityLevelConfiguration": true,
}

// PlaceInNamespace puts a namespaced object without a namespace in namespace, as kubectl does.
func PlaceInNamespace(res *policies.Resource, namespace string) {
	if res.Meta.GetNamespace() == "" && !clusterScopedKinds[res.GVK.Kind] {
		res.Meta.SetNamespace(namespace)
	}
}
