package source

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// maxConditionMessage bounds a condition's message, which quotes compile errors; the API allows
// 32768.
const maxConditionMessage = 16 << 10

// writeStatus writes a policy's status once build b's engine is in place, when b was built as
// the leader.
func (c *PolicyController) writeStatus(b *build, obj client.Object, status *v1alpha1.PolicyStatus, co *compiledObject) error {
	if !b.leading {
		return nil
	}
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Compiled", Message: "the policy is compiled and enforced", ObservedGeneration: co.generation}
	errs := co.errs
	var degraded *metav1.Condition
	switch {
	case len(co.errs) > 0 && co.lastGood != 0 && co.overBudget == "":
		cond.Reason = "LastGoodGeneration"
		cond.Message = fmt.Sprintf("generation %d is enforced: generation %d does not compile (see the Degraded condition)", co.lastGood, co.generation)
		degraded = &metav1.Condition{Type: ConditionDegraded, Status: metav1.ConditionTrue, Reason: "CompileError", ObservedGeneration: co.generation,
			Message: policies.Truncate(fmt.Sprintf("%d compile error(s) in generation %d; generation %d stays in force until it compiles: %s",
				len(co.errs), co.generation, co.lastGood, strings.Join(co.errs, "; ")), maxConditionMessage)}
	case len(co.errs) > 0:
		cond = metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "CompileError",
			Message: fmt.Sprintf("%d compile error(s), the policy is not enforced: %s", len(co.errs), strings.Join(co.errs, "; ")), ObservedGeneration: co.generation}
	case co.overBudget != "":
		cond = metav1.Condition{Type: ConditionReady, Status: metav1.ConditionFalse, Reason: "OverBudget",
			Message: "the policy is not enforced, its namespace is over budget: " + co.overBudget + "; the namespace's older Policies stay enforced", ObservedGeneration: co.generation}
		errs = []string{"over budget: " + co.overBudget}
	}
	cond.Message = policies.Truncate(cond.Message, maxConditionMessage)
	intercepted := c.interceptedCondition(co, b.notIntercepted)
	return c.patchStatus(b.ctx, obj, func() bool {
		changed := apimeta.SetStatusCondition(&status.Conditions, cond)
		changed = setOrRemove(&status.Conditions, ConditionIntercepted, intercepted) || changed
		changed = setOrRemove(&status.Conditions, ConditionDegraded, degraded) || changed
		if status.ObservedGeneration != co.generation {
			status.ObservedGeneration, changed = co.generation, true
		}
		if !slices.Equal(status.Errors, errs) {
			status.Errors, changed = errs, true
		}
		return changed
	})
}

// setOrRemove sets the condition of type typ to cond, or removes it when cond is nil, and
// reports whether anything changed.
func setOrRemove(conds *[]metav1.Condition, typ string, cond *metav1.Condition) bool {
	if cond == nil {
		return apimeta.RemoveStatusCondition(conds, typ)
	}
	return apimeta.SetStatusCondition(conds, *cond)
}

// interceptedCondition says whether the webhooks send an enforced policy all it matches; nil when
// the policy is not enforced or no Interceptor keeps the rules.
func (c *PolicyController) interceptedCondition(co *compiledObject, notIntercepted map[string][]string) *metav1.Condition {
	if c.Interceptor == nil || co.policy == nil || co.overBudget != "" {
		return nil
	}
	cond := &metav1.Condition{Type: ConditionIntercepted, Status: metav1.ConditionTrue, Reason: "Intercepted", ObservedGeneration: co.generation,
		Message: "the webhooks send this policy every kind and operation it matches"}
	if problems := notIntercepted[co.policy.Name]; len(problems) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, "NotIntercepted"
		cond.Message = policies.Truncate("the cluster does not enforce all this policy matches, the rest is enforced: "+strings.Join(problems, "; "), maxConditionMessage)
	}
	return cond
}

func (c *PolicyController) writeExceptionStatus(ctx context.Context, x *v1alpha1.PolicyException, co *compiledObject, now time.Time) error {
	cond := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, Reason: "Active", ObservedGeneration: co.generation}
	switch {
	case co.overBudget != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "OverBudget", "the exception does not apply, its namespace is over budget: "+co.overBudget
	case len(co.errs) > 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "CompileError", strings.Join(co.errs, "; ")
	case !now.Before(co.exception.Expires()):
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Expired", "the exception expired at "+co.exception.Expires().UTC().Format(time.RFC3339)
	default:
		cond.Message = "the exception applies until " + co.exception.Expires().UTC().Format(time.RFC3339)
	}
	if co.exception != nil && co.exception.Capped {
		cond.Message += " (the end of its maximum lifetime, --max-exception-lifetime, before " + x.Spec.Expires.UTC().Format(time.RFC3339) + ")"
	}
	if co.exception != nil && !co.exception.ClusterPolicies {
		cond.Message += "; it exempts only from the Policies of its namespace: exceptions to ClusterPolicies are honoured only in the exception namespaces (--exception-namespaces)"
	}
	cond.Message = policies.Truncate(cond.Message, maxConditionMessage)
	return c.patchStatus(ctx, x, func() bool {
		changed := apimeta.SetStatusCondition(&x.Status.Conditions, cond)
		if x.Status.ObservedGeneration != co.generation {
			x.Status.ObservedGeneration, changed = co.generation, true
		}
		return changed
	})
}

// patchStatus applies mutate to obj's status and patches it when something changed; only the
// leader writes.
func (c *PolicyController) patchStatus(ctx context.Context, obj client.Object, mutate func() bool) error {
	if !c.isLeader() {
		return nil
	}
	base := obj.DeepCopyObject().(client.Object)
	if !mutate() {
		return nil
	}
	if err := c.Client.Status().Patch(ctx, obj, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("updating the status of %s: %w", client.ObjectKeyFromObject(obj), err)
	}
	return nil
}
