package policies

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

func TestDefaultProbesCompileErrors(t *testing.T) {
	_, errs := compileDefaultProbes(&v1alpha1.DefaultProbesRule{
		Readiness: &v1alpha1.ProbeDefaults{Path: "healthz", PeriodSeconds: ptr.To[int32](0)},
		Startup:   &v1alpha1.ProbeDefaults{InitialDelaySeconds: ptr.To[int32](-1)},
		Liveness:  &v1alpha1.ProbeDefaults{Disabled: true, Path: "ignored"},
		HTTPPorts: []intstr.IntOrString{intstr.FromInt32(8080), intstr.FromString("admin"), intstr.FromInt32(70000), intstr.FromString("Not_A_Port_Name")},
	}, field.NewPath("r"))
	want := map[string]bool{"r.readiness.path": true, "r.readiness.periodSeconds": true, "r.startup.initialDelaySeconds": true,
		"r.httpPorts[2]": true, "r.httpPorts[3]": true}
	if len(errs) != len(want) {
		t.Fatalf("got %v", errs)
	}
	for _, e := range errs {
		if !want[e.Field] {
			t.Errorf("unexpected %v", e)
		}
	}
}
