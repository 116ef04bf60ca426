package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// PolicyAdmission judges ClusterPolicies, Policies and PolicyExceptions as they are written, so
// that what the API server stores is what Portcullis enforces. It refuses, with every field
// error:
//   - a policy or exception that does not compile (the same compiler as the engine's, reading no
//     Secret);
//   - an exception that would last past the maximum lifetime;
//   - a Policy that would take its namespace past the tenant budget.
//
// Its webhook fails closed: while Portcullis is down, policies cannot be created or changed
// (they can be deleted).
type PolicyAdmission struct {
	// Compiler is the engine's compiler; it is used as a Checker.
	Compiler *policies.Compiler
	// Budget says why a Policy would not fit its namespace's budget; nil: no budget.
	Budget func(p *v1alpha1.Policy, rules int, cost uint64) string
	// ExceptionBudget says why an exception would not fit its namespace's budget; nil: none.
	ExceptionBudget func(x *v1alpha1.PolicyException) string
	// Now tells the time for exception lifetimes; nil is time.Now.
	Now func() time.Time
}

var _ admission.Handler = (*PolicyAdmission)(nil)

// Handle implements admission.Handler.
func (a *PolicyAdmission) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	if req.Kind.Group != v1alpha1.GroupVersion.Group {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("portcullis: the policy webhook judges %s objects only, not %s", v1alpha1.GroupVersion.Group, req.Kind))
	}
	obj, ok := policies.NewObject(req.Kind.Kind)
	if !ok {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("portcullis: the policy webhook does not judge %s", req.Kind.Kind))
	}
	if err := json.Unmarshal(req.Object.Raw, obj); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("portcullis: decoding the %s: %w", req.Kind.Kind, err))
	}
	if x, ok := obj.(*v1alpha1.PolicyException); ok && a.ExceptionBudget != nil && req.Operation == admissionv1.Create {
		if why := a.ExceptionBudget(x); why != "" {
			return forbidden(req, "namespace over budget: "+why)
		}
	}
	cp, _, err := a.Compiler.Checker().Compile(obj)
	switch o := obj.(type) {
	case *v1alpha1.Policy:
		if err == nil && a.Budget != nil {
			if why := a.Budget(o, policies.BudgetRules(&o.Spec), cp.Cost()); why != "" {
				return forbidden(req, "namespace over budget: "+why)
			}
		}
	case *v1alpha1.PolicyException:
		err = a.withLifetime(o, err)
	}
	var ce *policies.CompileError
	switch {
	case errors.As(err, &ce):
		return invalid(req, ce.Errs)
	case err != nil:
		return admission.Errored(http.StatusBadRequest, err)
	}
	resp := admission.Allowed("")
	if cp != nil {
		resp.Warnings = cp.Warnings // kubectl shows them: a kind that may be a typo
	}
	return resp
}

// withLifetime adds to err, the exception's compile error, an expiry past the maximum lifetime.
func (a *PolicyAdmission) withLifetime(x *v1alpha1.PolicyException, err error) error {
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	fe := a.Compiler.ExceptionLifetime(x, now())
	if fe == nil {
		return err
	}
	var ce *policies.CompileError
	if !errors.As(err, &ce) {
		ce = &policies.CompileError{Object: fmt.Sprintf("PolicyException %q", x.Namespace+"/"+x.Name)}
	}
	ce.Errs = append(ce.Errs, fe)
	return ce
}

// invalid refuses the object as the API server refuses one that fails validation: 422 Invalid,
// with one cause per field error, so kubectl shows them as it shows its own.
func invalid(req admission.Request, errs field.ErrorList) admission.Response {
	kept := policies.BoundErrors(policies.FieldErrorStrings(errs))
	status := &metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
		Message: fmt.Sprintf("portcullis: %s %q is invalid, it would not be enforced: %s", req.Kind.Kind, objectName(req), strings.Join(kept, "; ")),
		Details: &metav1.StatusDetails{Name: req.Name, Group: req.Kind.Group, Kind: req.Kind.Kind},
	}
	for i, fe := range errs {
		if i == policies.MaxListedErrors {
			break
		}
		status.Details.Causes = append(status.Details.Causes, metav1.StatusCause{
			Type: metav1.CauseType(fe.Type), Message: policies.Truncate(fe.ErrorBody(), policies.MaxErrorBytes), Field: fe.Field})
	}
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: status}}
}

func forbidden(req admission.Request, why string) admission.Response {
	resp := admission.Denied(fmt.Sprintf("portcullis: %s %q: %s", req.Kind.Kind, objectName(req), why))
	resp.Result.Code, resp.Result.Reason = http.StatusForbidden, metav1.StatusReasonForbidden
	return resp
}

func objectName(req admission.Request) string {
	if req.Namespace != "" {
		return req.Namespace + "/" + req.Name
	}
	return req.Name
}
