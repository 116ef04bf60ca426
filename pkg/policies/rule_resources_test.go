package policies

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

func TestResourcesRule(t *testing.T) {
	rule, errs := compileResources(&v1alpha1.ResourcesRule{Requests: []string{"cpu", "memory"}, Limits: []string{"memory"}}, field.NewPath("r"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name     string
		manifest string
		want     Outcome
		message  string
	}{
		{name: "all set", want: Pass, manifest: `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers: [{name: init, image: x:1, resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {memory: 8Mi}}}]
  containers: [{name: web, image: x:1, resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {memory: 8Mi}}}]
`},
		{name: "a Pod's requests default to its limits, as the API server does", want: Pass, manifest: `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: web, image: x:1, resources: {limits: {cpu: 10m, memory: 8Mi}}}]
`},
		{name: "a template's requests do not default to limits", want: Fail, manifest: `apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers: [{name: web, image: x:1, resources: {limits: {cpu: 10m, memory: 8Mi}}}]
`, message: `spec.template.spec.containers[0] ("web") must set resources.{requests.cpu, requests.memory}`},
		{name: "names every container and what it lacks", want: Fail, manifest: `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  initContainers: [{name: init, image: x:1, resources: {requests: {cpu: 10m, memory: 8Mi}}}]
  containers:
  - {name: web, image: x:1}
  - {name: sidecar, image: x:1, resources: {requests: {memory: 8Mi}, limits: {memory: 8Mi}}}
`, message: `spec.initContainers[0] ("init") must set resources.{limits.memory}; spec.containers[0] ("web") must set resources.{requests.cpu, requests.memory, limits.memory}; spec.containers[1] ("sidecar") must set resources.{requests.cpu}`},
		{name: "CronJob path", want: Fail, manifest: `apiVersion: batch/v1
kind: CronJob
metadata: {name: c}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: job, image: x:1}]}}}}
`, message: `spec.jobTemplate.spec.template.spec.containers[0] ("job") must set resources.{requests.cpu, requests.memory, limits.memory}`},
		{name: "not pod-bearing", want: Skip, manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rule.evaluate(&input{ctx: t.Context(), res: mustResource(t, tt.manifest)})
			if got.outcome != tt.want || (tt.message != "" && got.message != tt.message) {
				t.Errorf("got %s %q, want %s %q", got.outcome, got.message, tt.want, tt.message)
			}
		})
	}
}

func TestResourcesRuleCompileErrors(t *testing.T) {
	if _, errs := compileResources(&v1alpha1.ResourcesRule{}, field.NewPath("r")); len(errs) == 0 {
		t.Error("an empty rule compiled")
	}
	_, errs := compileResources(&v1alpha1.ResourcesRule{Limits: []string{"memory", "two words"}}, field.NewPath("r"))
	if len(errs) != 1 || errs[0].Field != "r.limits[1]" {
		t.Errorf("got %v, want one error at r.limits[1]", errs)
	}
}
