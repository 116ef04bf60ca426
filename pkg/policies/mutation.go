package policies

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

// MutationsAnnotation records on an object which policy/rule mutated it.
const MutationsAnnotation = "portcullis.dev/mutations"

// appliedPrefix starts the message of a mutating rule that changed the object; what changed is
// also in Result.Changes, which is what code reads.
const appliedPrefix = "applied: "

// Mutation is what the mutating rules do to one request.
type Mutation struct {
	// Patches are the JSON patches of the enforced (Deny) rules, with the record annotation.
	Patches []jsonpatch.JsonPatchOperation
	// Results has one result per matching mutating rule: pass when nothing was to be done or
	// it was done (Changes lists the changes, and the message too), fail when a Warn or Audit
	// rule would change the object (the message says what it would do). Warnings are what the
	// rule could not do.
	Results []Result
}

// Mutate runs the mutating rules of every matching policy: the enforced ones in policy order,
// each seeing the changes of the rules before it, then the Warn and Audit ones on the object as
// the enforced ones left it. The request's objects are not modified.
func (e *Engine) Mutate(ctx context.Context, req *Request) (*Mutation, error) {
	m := &Mutation{}
	res := req.Object
	if res == nil || res.Pod == nil {
		return m, nil
	}
	ns := res.Meta.GetNamespace()
	nsLabels := namespaceLabels(req.Namespace, ns)
	// The enforced rules run first, in policy order, each seeing the changes of those before it;
	// then the Warn and Audit rules, on the object as the enforced ones left it, so that they
	// report what would still change, not what another policy already did. Results keep the
	// policy order.
	type job struct {
		p      *CompiledPolicy
		r      compiledRule
		action v1alpha1.Enforcement
		x      *CompiledException // exempting the rule, or nil
	}
	var jobs []job
	for p := range e.policiesFor(ns) {
		if !p.mutating || !p.applies(req, res, nsLabels) {
			continue
		}
		action := p.enforcementFor(req, res, nsLabels)
		exemptions := e.exemptionsFor(p, req, res, nsLabels)
		for _, r := range p.rules {
			if r.mutator != nil {
				jobs = append(jobs, job{p: p, r: r, action: action, x: exempting(exemptions, r.name)})
			}
		}
	}
	m.Results = make([]Result, len(jobs))
	if len(jobs) == 0 {
		return m, nil // nothing to change: no copy to change
	}
	work, err := NewResource(res.Object.DeepCopyObject())
	if err != nil {
		return nil, err
	}
	pod := mutate.Pod{Spec: work.Pod.Spec, SpecPointer: work.Pod.SpecPointer, Keychain: req.Keychain}
	var applied []string
	for _, enforced := range []bool{true, false} {
		for i, j := range jobs {
			if (j.action == v1alpha1.Deny) != enforced {
				continue
			}
			result := Result{Policy: j.p.Name, Rule: j.r.name, Resource: res.Ref(), Action: j.action, Result: Pass, Namespaced: j.p.Namespace != ""}
			if j.x != nil {
				result.Result, result.Message = Skip, exemptionMessage(j.x)
				m.Results[i] = result
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("mutation not finished: %w", context.Cause(ctx))
			}
			out := j.r.mutator.Mutate(ctx, pod)
			result.Warnings = out.Warnings
			descriptions := make([]string, len(out.Changes))
			for k, c := range out.Changes {
				descriptions[k] = c.Description
			}
			var parts []string
			switch {
			case len(out.Changes) == 0:
			case enforced:
				for _, c := range out.Changes {
					c.Apply()
					m.Patches = append(m.Patches, c.Patch)
				}
				parts = append(parts, appliedPrefix+strings.Join(descriptions, "; "))
				result.Changes = descriptions
				applied = append(applied, j.p.Name+"/"+j.r.name)
			default:
				result.Result = Fail
				parts = append(parts, "would "+strings.Join(descriptions, "; would "))
			}
			result.Message = Truncate(strings.Join(append(parts, out.Warnings...), "; "), MaxMessageBytes)
			m.Results[i] = result
		}
	}
	if len(applied) > 0 {
		m.Patches = append(m.Patches, recordPatch(res, applied))
	}
	return m, nil
}

// recordPatch adds the policy/rule entries to the object's mutations annotation.
func recordPatch(res *Resource, applied []string) jsonpatch.JsonPatchOperation {
	annotations := res.Meta.GetAnnotations()
	entries := applied
	if prev := annotations[MutationsAnnotation]; prev != "" {
		entries = append(strings.Split(prev, ","), applied...)
	}
	slices.Sort(entries)
	value := strings.Join(slices.Compact(entries), ",")
	if annotations == nil {
		return jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/annotations", Value: map[string]string{MutationsAnnotation: value}}
	}
	return jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/annotations/" + mutate.Escape(MutationsAnnotation), Value: value}
}
