package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/policies"
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
	preq.Results = takeResults()
	results := engine.Evaluate(ctx, preq)
	resp, decision := respond(results)
	v.countResults(results)
	putResults(results)
	return resp, decision
}

// resultsPool holds the results of reviews answered, for the next review's engine to write over
// (policies.Request.Results): a review's results are about a tenth of what it allocates. Nothing
// of them outlives handle: respond and countResults take their strings, not the Results.
var resultsPool sync.Pool

// maxPooledResults is the most results a slice the pool keeps may hold: a review of a namespace
// with many Policies of its own (each a result) leaves its larger slice to the collector.
const maxPooledResults = 256

// takeResults is a slice of results from the pool, or nil (the engine then makes one).
func takeResults() []policies.Result {
	if p, ok := resultsPool.Get().(*[]policies.Result); ok {
		return *p
	}
	return nil
}

// putResults gives results back to the pool, cleared: a pooled slice keeps no review's messages
// (nor the request body their strings may share) alive.
func putResults(results []policies.Result) {
	if cap(results) == 0 || cap(results) > maxPooledResults {
		return
	}
	clear(results[:cap(results)])
	resultsPool.Put(&results)
}
