package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// NamespaceGetter returns a namespace from the informer cache.
type NamespaceGetter interface {
	GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error)
}

// Validator is the validating webhook: it decodes the review once, evaluates it with the engine
// in force and maps the results to the response.
type Validator struct {
	Engines    *EngineHolder
	Decoder    *policies.Decoder
	Namespaces NamespaceGetter
	Metrics    *metrics.Metrics
	// AuditOnly turns every Deny into Audit.
	AuditOnly bool
	// Timeout bounds one evaluation so that the webhook answers before the API server gives up.
	Timeout time.Duration
}

var _ admission.Handler = (*Validator)(nil)

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, decision := v.handle(ctx, req)
	if v.Metrics != nil {
		v.Metrics.Reviews.WithLabelValues("validate", string(req.Operation), req.Kind.Kind, string(decision)).Inc()
		v.Metrics.ReviewDuration.WithLabelValues("validate").Observe(time.Since(start).Seconds())
	}
	return resp
}

func (v *Validator) handle(ctx context.Context, req admission.Request) (admission.Response, Decision) {
	engine := v.Engines.Load()
	if engine == nil {
		return admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("portcullis: policies not synced yet")), Errored
	}
	preq, err := v.request(ctx, req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), Errored
	}
	if v.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.Timeout)
		defer cancel()
	}
	results := engine.Evaluate(ctx, preq)
	resp, decision := respond(results, v.AuditOnly)
	if v.Metrics != nil {
		for _, r := range results {
			v.Metrics.PolicyResults.WithLabelValues(r.Policy, r.Rule, string(r.Result), string(r.Action)).Inc()
		}
	}
	return resp, decision
}

// request decodes the review into the engine's request: each object is decoded exactly once.
func (v *Validator) request(ctx context.Context, req admission.Request) (*policies.Request, error) {
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	preq := &policies.Request{
		Operation:   v1alpha1.Operation(req.Operation),
		Resource:    req.Resource,
		SubResource: req.SubResource,
		UserInfo:    req.UserInfo,
		DryRun:      req.DryRun != nil && *req.DryRun,
	}
	var err error
	if len(req.Object.Raw) > 0 {
		if preq.Object, err = v.Decoder.Decode(req.Object.Raw, &gvk); err != nil {
			return nil, fmt.Errorf("decoding object: %w", err)
		}
	}
	if len(req.OldObject.Raw) > 0 {
		if preq.OldObject, err = v.Decoder.Decode(req.OldObject.Raw, &gvk); err != nil {
			return nil, fmt.Errorf("decoding oldObject: %w", err)
		}
	}
	if preq.Object == nil && preq.OldObject == nil {
		return nil, fmt.Errorf("the review carries no object")
	}
	if req.Namespace != "" && v.Namespaces != nil {
		ns, err := v.Namespaces.GetNamespace(ctx, req.Namespace)
		switch {
		case err == nil:
			preq.Namespace = ns
		case apierrors.IsNotFound(err):
			// A namespace being created with its first object: fall back to the name label.
		default:
			return nil, fmt.Errorf("reading namespace %s: %w", req.Namespace, err)
		}
	}
	return preq, nil
}
