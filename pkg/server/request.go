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

// What both workload webhooks share: their configuration and the preparation of a request,
// decoded once, for the engine.

// NamespaceGetter returns a namespace from the informer cache.
type NamespaceGetter interface {
	GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error)
}

// Engines hands out the engine in force (source.EngineHolder): nil until the policies have been
// compiled once.
type Engines interface {
	Load() *policies.Engine
}

// Config is what the webhooks share.
type Config struct {
	Engines    Engines
	Decoder    *policies.Decoder
	Namespaces NamespaceGetter
	Metrics    *metrics.Metrics
	// AuditOnly turns every Deny into Audit: nothing is denied or mutated.
	AuditOnly bool
	// Timeout bounds one evaluation so that the webhook answers before the API server gives up.
	Timeout time.Duration
	// PullSecrets gives image verification the pod's registry credentials; nil is anonymous.
	PullSecrets *PullSecrets
	// Tenants bounds the reviews of one namespace that evaluate its costly Policies at once;
	// nil: no bound.
	Tenants *TenantGate
}

func (c *Config) countResults(results []policies.Result) {
	if c.Metrics == nil {
		return
	}
	for _, r := range results {
		policy, rule := r.Policy, r.Rule
		if r.Namespaced { // tenants choose these names: one series for all of them
			policy, rule = metrics.Namespaced, metrics.Namespaced
		}
		c.Metrics.PolicyResult(policy, rule, string(r.Result), string(r.Action))
	}
}

func (c *Config) observe(webhook string, req admission.Request, decision Decision, start time.Time) {
	if c.Metrics == nil {
		return
	}
	c.Metrics.Reviewed(webhook, string(req.Operation), req.Kind.Kind, string(decision))
	c.Metrics.ReviewDuration.WithLabelValues(webhook).Observe(time.Since(start).Seconds())
}

// prepare loads the engine in force and decodes the review, or returns the error response.
func (c *Config) prepare(ctx context.Context, req admission.Request) (*policies.Engine, *policies.Request, *admission.Response) {
	engine := c.Engines.Load()
	if engine == nil {
		r := admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("portcullis: policies not synced yet"))
		return nil, nil, &r
	}
	preq, err := c.request(ctx, req)
	if err != nil {
		r := admission.Errored(http.StatusBadRequest, err)
		return nil, nil, &r
	}
	return engine, preq, nil
}

// request decodes the review into the engine's request: each object is decoded exactly once.
func (c *Config) request(ctx context.Context, req admission.Request) (*policies.Request, error) {
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	preq := &policies.Request{
		Operation:   v1alpha1.Operation(req.Operation),
		Resource:    req.Resource,
		SubResource: req.SubResource,
		UserInfo:    req.UserInfo,
		DryRun:      req.DryRun != nil && *req.DryRun,
		AuditOnly:   c.AuditOnly,
	}
	var err error
	if len(req.Object.Raw) > 0 {
		if preq.Object, err = c.Decoder.Decode(req.Object.Raw, &gvk); err != nil {
			return nil, fmt.Errorf("decoding object: %w", err)
		}
	}
	if len(req.OldObject.Raw) > 0 {
		if preq.OldObject, err = c.Decoder.Decode(req.OldObject.Raw, &gvk); err != nil {
			return nil, fmt.Errorf("decoding oldObject: %w", err)
		}
	}
	if preq.Object == nil && preq.OldObject == nil {
		return nil, fmt.Errorf("the review carries no object")
	}
	if res := preq.Object; res != nil && res.Pod != nil {
		preq.Keychain = c.PullSecrets.keychainFor(ctx, req.Namespace, res.Pod.Spec)
	}
	if req.Namespace != "" && c.Namespaces != nil {
		ns, err := c.Namespaces.GetNamespace(ctx, req.Namespace)
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
