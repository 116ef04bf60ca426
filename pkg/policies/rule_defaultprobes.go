package policies

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

// compileDefaultProbes validates a defaultProbes rule; pkg/mutate makes its patches.
func compileDefaultProbes(r *v1alpha1.DefaultProbesRule, path *field.Path) (*mutate.DefaultProbes, field.ErrorList) {
	var errs field.ErrorList
	for _, probe := range []struct {
		name string
		spec *v1alpha1.ProbeDefaults
	}{{"readiness", r.Readiness}, {"liveness", r.Liveness}, {"startup", r.Startup}} {
		spec := probe.spec
		if spec == nil || spec.Disabled {
			continue
		}
		p := path.Child(probe.name)
		if spec.Path != "" && !strings.HasPrefix(spec.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("path"), spec.Path, "must start with /"))
		}
		for _, f := range []struct {
			name  string
			value *int32
			least int32
		}{{"initialDelaySeconds", spec.InitialDelaySeconds, 0}, {"periodSeconds", spec.PeriodSeconds, 1}, {"timeoutSeconds", spec.TimeoutSeconds, 1}, {"failureThreshold", spec.FailureThreshold, 1}} {
			if f.value != nil && *f.value < f.least {
				errs = append(errs, field.Invalid(p.Child(f.name), *f.value, fmt.Sprintf("must be at least %d", f.least)))
			}
		}
	}
	for i, h := range r.HTTPPorts {
		p := path.Child("httpPorts").Index(i)
		switch {
		case h.Type == intstr.Int && (h.IntVal < 1 || h.IntVal > 65535):
			errs = append(errs, field.Invalid(p, h.IntVal, "must be a port number, 1 to 65535"))
		case h.Type == intstr.String:
			if msgs := validation.IsValidPortName(h.StrVal); len(msgs) > 0 {
				errs = append(errs, field.Invalid(p, h.StrVal, strings.Join(msgs, "; ")))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return mutate.NewDefaultProbes(r), nil
}
