package audit

import (
	"context"
	"fmt"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// judge judges one object and records its results, and says whether it did: an object of a
// namespace another replica owns is left to it, and one that cannot be decoded is logged and
// left out (it says nothing of the policies).
func (s *Scanner) judge(ctx context.Context, engine *policies.Engine, r intercept.Resource, gvk schema.GroupVersionKind, raw []byte, namespaces map[string]*corev1.Namespace) (bool, error) {
	if s.decoder == nil {
		s.decoder = policies.NewDecoder(false)
	}
	objCtx, cancel := context.WithTimeout(ctx, s.ObjectTimeout)
	defer cancel()
	res, results, err := Judge(objCtx, engine, s.decoder, r, raw, func(ns string) (*corev1.Namespace, bool) {
		if s.Owns != nil && !s.Owns(ns) {
			return nil, false
		}
		return s.namespace(objCtx, ns, namespaces), true
	})
	switch {
	case ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil:
		s.Log.Error(err, "audit: an object that cannot be judged is left out", "resource", r.GroupResource().String())
		return false, nil
	case res == nil:
		return false, nil // not this scanner's
	}
	ref := corev1.ObjectReference{APIVersion: unique.Make(gvk.GroupVersion().String()).Value(), Kind: gvk.Kind,
		Namespace: unique.Make(res.Meta.GetNamespace()).Value(), Name: res.Meta.GetName(), UID: res.Meta.GetUID()}
	s.Store.Put(r.GroupVersionResource, ref, fingerprint(res.Meta), s.scans, results)
	return true, nil
}

// Judge decodes one object of r as a LIST or GET returned it and runs it through the engine as
// the audit does: a CREATE of it, in the background (Engine.Admit with Request.Background).
// namespace gives the object's Namespace, whose labels selectors match, and says whether to
// judge it at all; a nil resource is returned for one it says not to.
func Judge(ctx context.Context, engine *policies.Engine, d *policies.Decoder, r intercept.Resource, raw []byte,
	namespace func(string) (*corev1.Namespace, bool)) (*policies.Resource, []policies.Result, error) {
	gvk := r.GroupVersionKind() // list items of built-in kinds say no apiVersion and kind
	res, err := d.Decode(raw, &gvk)
	if err != nil {
		return nil, nil, err
	}
	ns, judge := namespace(res.Meta.GetNamespace())
	if !judge {
		return nil, nil, nil
	}
	req := &policies.Request{Operation: v1alpha1.Create, Object: res, Namespace: ns, Background: true,
		Resource: metav1.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}}
	adm, err := engine.Admit(ctx, req, raw, d)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", res.Ref(), err)
	}
	return res, adm.Results, nil
}

// namespace returns Namespace ns, read once per scan; nil for cluster-scoped objects, or when it
// cannot be read (its labels are then taken to be its name label alone, as offline).
func (s *Scanner) namespace(ctx context.Context, ns string, cache map[string]*corev1.Namespace) *corev1.Namespace {
	if ns == "" || s.Namespaces == nil {
		return nil
	}
	if obj, ok := cache[ns]; ok {
		return obj
	}
	obj := &corev1.Namespace{}
	if err := s.Namespaces.Get(ctx, types.NamespacedName{Name: ns}, obj); err != nil {
		obj = nil
	}
	cache[ns] = obj
	return obj
}
