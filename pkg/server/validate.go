package server

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Validator is the validating webhook: it decodes the review once, evaluates it with the engine
// in force and maps the results to the response.
type Validator struct{ Config }

var _ admission.Handler = (*Validator)(nil)

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, decision := v.handle(ctx, req)
	v.observe("validate", req, decision, start)
	return resp
}

// Refuse implements Refuser: an object too large to evaluate is denied; in audit-only mode it is
// admitted with a warning and recorded.
func (v *Validator) Refuse(req admission.Request, why string, code int32) admission.Response {
	v.observe("validate", req, Refused, time.Now())
	if v.AuditOnly {
		resp := admission.Allowed("").WithWarnings(why + " (audit-only: admitted)")
		resp.AuditAnnotations = map[string]string{"refused": why}
		return resp
	}
	resp := admission.Denied(why)
	resp.Result.Code = code
	return resp
}

// Gate implements Gater: a review of a namespace whose Policies are costly (GatedCost) waits for
// one of the namespace's slots (--namespace-max-concurrency) before it is decoded.
func (v *Validator) Gate(ctx context.Context, namespace string) (func(), string) {
	engine := v.Engines.Load()
	if v.Tenants == nil || engine == nil || engine.NamespaceCost(namespace) < GatedCost {
		return func() {}, ""
	}
	release, err := v.Tenants.acquire(ctx, namespace)
	if err != nil {
		return nil, fmt.Sprintf("not evaluated: the reviews of namespace %s held every slot of --namespace-max-concurrency (its Policies are costly to evaluate) until this review's deadline, or too many were waiting", namespace)
	}
	return release, ""
}

func (v *Validator) handle(ctx context.Context, req admission.Request) (admission.Response, Decision) {
	engine, preq, errResp := v.prepare(ctx, req)
	if errResp != nil {
		return *errResp, Errored
	}
	defer preq.Release()
	if v.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.Timeout)
		defer cancel()
	}
	results := engine.Evaluate(ctx, preq)
	resp, decision := respond(results)
	v.countResults(results)
	return resp, decision
}
