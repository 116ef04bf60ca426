package policies

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

// ruleType is one kind of rule: the field of v1alpha1.Rule that sets it, how it compiles, and
// what it judges. ruleTypes is the one list of them: the compile dispatch, the "exactly one of"
// message (the CRD's is pinned to it by a test) and the pod-only marker derive from it, so a
// new rule type is its API field, its rule_<name>.go, and one entry here.
type ruleType struct {
	field string
	// podOnly: the rule judges the pod only (its spec and Pod Security annotations), so an
	// update that leaves the pod as it was is not judged again, as Pod Security Admission does.
	podOnly bool
	set     func(r *v1alpha1.Rule) bool
	// compile returns the rule's evaluator (it validates) and mutator (it mutates); either may
	// be nil, not both.
	compile func(c *Compiler, r *v1alpha1.Rule, path *field.Path, namespace string) (evaluator, mutate.Mutator, field.ErrorList)
}

var ruleTypes = []ruleType{
	{field: "podSecurity", podOnly: true, set: func(r *v1alpha1.Rule) bool { return r.PodSecurity != nil },
		compile: func(c *Compiler, r *v1alpha1.Rule, p *field.Path, _ string) (evaluator, mutate.Mutator, field.ErrorList) {
			e, errs := compilePodSecurity(r.PodSecurity, c.pss, p)
			return e, nil, errs
		}},
	{field: "resources", podOnly: true, set: func(r *v1alpha1.Rule) bool { return r.Resources != nil },
		compile: func(_ *Compiler, r *v1alpha1.Rule, p *field.Path, _ string) (evaluator, mutate.Mutator, field.ErrorList) {
			e, errs := compileResources(r.Resources, p)
			return e, nil, errs
		}},
	{field: "labels", set: func(r *v1alpha1.Rule) bool { return r.Labels != nil },
		compile: func(_ *Compiler, r *v1alpha1.Rule, p *field.Path, _ string) (evaluator, mutate.Mutator, field.ErrorList) {
			e, errs := compileLabels(r.Labels, p)
			return e, nil, errs
		}},
	{field: "cel", set: func(r *v1alpha1.Rule) bool { return r.CEL != nil },
		compile: func(c *Compiler, r *v1alpha1.Rule, p *field.Path, namespace string) (evaluator, mutate.Mutator, field.ErrorList) {
			e, errs := compileCEL(r.CEL, c.env, c.scope, c.plansUntracked(namespace), p)
			return e, nil, errs
		}},
	{field: "defaultProbes", set: func(r *v1alpha1.Rule) bool { return r.DefaultProbes != nil },
		compile: func(_ *Compiler, r *v1alpha1.Rule, p *field.Path, _ string) (evaluator, mutate.Mutator, field.ErrorList) {
			m, errs := compileDefaultProbes(r.DefaultProbes, p)
			return nil, m, errs
		}},
	// verifyImages both judges (the signatures) and mutates (pins digests).
	{field: "verifyImages", podOnly: true, set: func(r *v1alpha1.Rule) bool { return r.VerifyImages != nil },
		compile: func(c *Compiler, r *v1alpha1.Rule, p *field.Path, namespace string) (evaluator, mutate.Mutator, field.ErrorList) {
			e, m, errs := c.compileVerifyImages(r.VerifyImages, p, namespace)
			return e, m, errs
		}},
}

// exactlyOneRuleType is the compiler's message for a rule with no rule type or several, and the
// CRD's.
var exactlyOneRuleType = func() string {
	fields := make([]string, len(ruleTypes))
	for i, t := range ruleTypes {
		fields[i] = t.field
	}
	return "exactly one of " + strings.Join(fields[:len(fields)-1], ", ") + " or " + fields[len(fields)-1] + " must be set"
}()
