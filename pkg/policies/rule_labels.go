package policies

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// labelsRule requires label keys and constrains values, on the object and on its pod template.
type labelsRule struct {
	required []string
	patterns []labelPattern // sorted by key for stable messages
}

type labelPattern struct {
	key string
	re  *regexp.Regexp
}

func compileLabels(r *v1alpha1.LabelsRule, path *field.Path) (*labelsRule, field.ErrorList) {
	var errs field.ErrorList
	if len(r.Required) == 0 && len(r.Patterns) == 0 {
		errs = append(errs, field.Required(path, "list at least one of required or patterns"))
	}
	rule := &labelsRule{}
	for i, k := range r.Required {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Child("required").Index(i), k, "must be a label key: "+strings.Join(msgs, "; ")))
			continue
		}
		rule.required = append(rule.required, k)
	}
	keys := make([]string, 0, len(r.Patterns))
	for k := range r.Patterns {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := path.Child("patterns").Key(k)
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p, k, "must be a label key: "+strings.Join(msgs, "; ")))
			continue
		}
		re, err := regexp.Compile(r.Patterns[k])
		if err != nil {
			errs = append(errs, field.Invalid(p, r.Patterns[k], "must be a valid regular expression (RE2): "+err.Error()))
			continue
		}
		rule.patterns = append(rule.patterns, labelPattern{key: k, re: re})
	}
	return rule, errs
}

func (r *labelsRule) evaluate(in *input) verdict {
	var problems []string
	problems = r.check(in.res.Meta.GetLabels(), metadataPath.Child("labels"), problems)
	if pod := in.res.Pod; pod != nil && pod.Template {
		problems = r.check(pod.Meta.Labels, pod.MetaPath.Child("labels"), problems)
	}
	if len(problems) == 0 {
		return pass()
	}
	return fail(strings.Join(problems, "; "))
}

func (r *labelsRule) check(labels map[string]string, path *field.Path, problems []string) []string {
	var missing []string
	for _, k := range r.required {
		if _, ok := labels[k]; !ok {
			missing = append(missing, fmt.Sprintf("%q", k))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%s must include %s", path, strings.Join(missing, ", ")))
	}
	for _, p := range r.patterns {
		if v, ok := labels[p.key]; ok && !p.re.MatchString(v) {
			problems = append(problems, fmt.Sprintf("%s: value %q must match %q", path.Key(p.key), v, p.re.String()))
		}
	}
	return problems
}
