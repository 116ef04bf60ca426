package server

import (
	"context"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Mutator is the mutating webhook: it decodes the review once, runs the mutating rules and
// answers with their JSON patch. Rules in Warn report what they would change as warnings; rules
// in Audit record it in audit annotations.
type Mutator struct{ Config }

var _ admission.Handler = (*Mutator)(nil)

// Handle implements admission.Handler.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, decision := m.handle(ctx, req)
	m.observe("mutate", req, decision, start)
	return resp
}

// Refuse implements Refuser: an object that is not evaluated is not mutated; the validating
// webhook decides whether it is admitted.
func (m *Mutator) Refuse(req admission.Request, why string, _ int32) admission.Response {
	m.observe("mutate", req, Refused, time.Now())
	return admission.Allowed("").WithWarnings(why + ": not mutated")
}

func (m *Mutator) handle(ctx context.Context, req admission.Request) (admission.Response, Decision) {
	if m.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.Timeout)
		defer cancel()
	}
	engine, preq, errResp := m.prepare(ctx, req)
	if errResp != nil {
		return *errResp, Errored
	}
	defer preq.Release()
	if preq.Object == nil { // DELETE and CONNECT change nothing
		return admission.Allowed(""), Allowed
	}
	mutation, err := engine.Mutate(ctx, preq)
	if err != nil {
		// The mutating webhook fails open, as its configuration does: the validating webhook
		// still judges the object.
		return admission.Allowed("").WithWarnings("portcullis: not mutated: " + err.Error()), Errored
	}
	m.countResults(mutation.Results)
	resp, decision := respond(mutation.Results)
	resp.Patches = mutation.Patches
	return resp, decision
}
