package policies

import (
	"context"
	"fmt"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

// Admission is a request as the API server would admit it.
type Admission struct {
	// Object is the object the validating rules judged: the mutated one when a rule changed it.
	Object *Resource
	// JSON is Object's document: the request's own when nothing was mutated.
	JSON    []byte
	Mutated bool
	// Patches are the mutations applied to the request's document, as JSON patches.
	Patches []jsonpatch.JsonPatchOperation
	// Results are the mutating rules' results, then the validating rules'.
	Results []Result
}

// Admit runs a request through the engine as the API server runs the webhooks: the mutating
// rules, their patches applied to raw (the request object's document), the mutated object
// decoded again with d, then the validating rules on it. The CLI, and any other judge of
// objects outside the API server, call this one pipeline.
func (e *Engine) Admit(ctx context.Context, req *Request, raw []byte, d *Decoder) (*Admission, error) {
	m, err := e.Mutate(ctx, req)
	if err != nil {
		return nil, err
	}
	a := &Admission{Object: req.Object, JSON: raw}
	validate := *req
	if len(m.Patches) > 0 {
		a.Patches = m.Patches
		if a.JSON, err = mutate.Apply(raw, m.Patches); err != nil {
			return nil, fmt.Errorf("applying mutations: %w", err)
		}
		gvk := req.Object.GVK // the document may not say it: a LIST's items do not
		res, err := d.Decode(a.JSON, &gvk)
		if err != nil {
			return nil, fmt.Errorf("the mutated object: %w", err)
		}
		if res.Meta.GetNamespace() == "" {
			res.Meta.SetNamespace(req.Object.Meta.GetNamespace()) // as the request placed it
		}
		validate.Object, a.Object, a.Mutated = res, res, true
	}
	a.Results = e.Evaluate(ctx, &validate)
	if len(m.Results) > 0 { // appended to the mutations' only when there are some: a copy of every result otherwise
		a.Results = append(m.Results, a.Results...)
	}
	return a, nil
}
