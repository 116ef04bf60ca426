package audit

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// judge judges one object and records its results, and says whether it did: an object of a
// namespace another replica owns is left to it, and one that cannot be decoded is logged and
// left out (it says nothing of the policies).
func (s *Scanner) judge(ctx context.Context, engine *policies.Engine, r intercept.Resource, raw []byte, namespaces *NamespaceCache) (bool, error) {
	objCtx, cancel := context.WithTimeout(ctx, s.ObjectTimeout)
	defer cancel()
	res, results, err := Judge(objCtx, engine, s.decode(), r, raw, func(ns string) (*corev1.Namespace, bool) {
		if s.Owns != nil && !s.Owns(ns) {
			return nil, false
		}
		return namespaces.Get(objCtx, ns), true
	}, s.results)
	switch {
	case ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil:
		s.Log.Error(err, "audit: an object that cannot be judged is left out", "resource", r.GroupResource().String())
		return false, nil
	case res == nil:
		return false, nil // not this scanner's
	}
	// The store keeps the names: copies, not parts of the page the object was decoded from
	// (the decoder shares its input), which they would keep alive.
	ref := corev1.ObjectReference{APIVersion: res.GVK.GroupVersion().String(), Kind: res.GVK.Kind,
		Namespace: strings.Clone(res.Meta.GetNamespace()), Name: strings.Clone(res.Meta.GetName()),
		UID: types.UID(strings.Clone(string(res.Meta.GetUID())))}
	s.Store.Put(r.GroupVersionResource, ref, fingerprint(res.Meta), s.scans, results)
	if results != nil { // the store keeps copies: the next object's results are written over these
		s.results = results
	}
	if s.Observer != nil {
		s.Observer.AuditJudged()
	}
	return true, nil
}

// Judge decodes one object of r as a LIST or GET returned it and runs it through the engine as
// the audit does: a CREATE of it, in the background (Engine.Admit with Request.Background).
// namespace gives the object's Namespace, whose labels selectors match, and says whether to
// judge it at all; a nil resource is returned for one it says not to. results, when not nil, are
// results the caller is done with, which this object's are written over (Request.Results).
func Judge(ctx context.Context, engine *policies.Engine, d *policies.Decoder, r intercept.Resource, raw []byte,
	namespace func(string) (*corev1.Namespace, bool), results []policies.Result) (*policies.Resource, []policies.Result, error) {
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
		Resource: metav1.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}, Results: results}
	adm, err := engine.Admit(ctx, req, raw, d)
	req.Release()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", res.Ref(), err)
	}
	if adm.Mutated {
		adm.Object.Release()
	}
	return res, adm.Results, nil
}

// decode is the scanner's decoder: lenient, for objects the API server has defaulted, and
// sharing its input: an object's strings are parts of its LIST page or GET body, and what the
// scan keeps longer (the store's names, the namespaces read) it copies, so as not to keep the
// page alive; the store's messages are copies already (unique.Make clones strings).
func (s *Scanner) decode() *policies.Decoder {
	if s.decoder == nil {
		s.decoder = policies.NewDecoder(false).SharingInput()
	}
	return s.decoder
}

// NamespaceCache reads each Namespace once, for the labels namespaceSelectors match. A
// Namespace that cannot be read is nil: its labels are then taken to be its name label alone,
// as offline.
type NamespaceCache struct {
	Reader client.Reader // nil: no Namespace is read
	seen   map[string]*corev1.Namespace
}

// Get returns Namespace ns; nil for cluster-scoped objects ("").
func (c *NamespaceCache) Get(ctx context.Context, ns string) *corev1.Namespace {
	if ns == "" || c.Reader == nil {
		return nil
	}
	if obj, ok := c.seen[ns]; ok {
		return obj
	}
	obj := &corev1.Namespace{}
	if err := c.Reader.Get(ctx, types.NamespacedName{Name: ns}, obj); err != nil {
		obj = nil
	}
	if c.seen == nil {
		c.seen = map[string]*corev1.Namespace{}
	}
	c.seen[strings.Clone(ns)] = obj // ns may be a part of a LIST page
	return obj
}
