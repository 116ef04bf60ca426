package policies

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

// resourcesRule requires the listed requests and limits on every container and init container.
type resourcesRule struct {
	requests []corev1.ResourceName
	limits   []corev1.ResourceName
}

func compileResources(r *v1alpha1.ResourcesRule, path *field.Path) (*resourcesRule, field.ErrorList) {
	var errs field.ErrorList
	if len(r.Requests) == 0 && len(r.Limits) == 0 {
		errs = append(errs, field.Required(path, "list at least one of requests or limits"))
	}
	names := func(list []string, p *field.Path) []corev1.ResourceName {
		out := make([]corev1.ResourceName, 0, len(list))
		for i, n := range list {
			if msgs := validation.IsQualifiedName(n); len(msgs) > 0 {
				errs = append(errs, field.Invalid(p.Index(i), n, "must be a resource name such as cpu, memory or ephemeral-storage: "+strings.Join(msgs, "; ")))
				continue
			}
			out = append(out, corev1.ResourceName(n))
		}
		return out
	}
	rule := &resourcesRule{requests: names(r.Requests, path.Child("requests")), limits: names(r.Limits, path.Child("limits"))}
	return rule, errs
}

func (r *resourcesRule) evaluate(in *input) verdict {
	pod := in.res.Pod
	if pod == nil {
		return skip("resources applies to Pods and pod controllers only")
	}
	var problems []string
	mutate.VisitContainers(pod.Spec, false, func(list string, i int, c *corev1.Container) {
		var missing []string
		for _, n := range r.requests {
			if _, ok := c.Resources.Requests[n]; !ok {
				missing = append(missing, "requests."+string(n))
			}
		}
		for _, n := range r.limits {
			if _, ok := c.Resources.Limits[n]; !ok {
				missing = append(missing, "limits."+string(n))
			}
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s (%q) must set resources.{%s}", pod.SpecPath.Child(list).Index(i), c.Name, strings.Join(missing, ", ")))
		}
	})
	if len(problems) == 0 {
		return pass()
	}
	return fail(strings.Join(problems, "; "))
}
