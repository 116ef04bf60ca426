package policies

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

func TestLabelsRule(t *testing.T) {
	rule, errs := compileLabels(&v1alpha1.LabelsRule{
		Required: []string{"app.kubernetes.io/name", "team"},
		Patterns: map[string]string{"team": "^[a-z]+$", "cost-center": `^cc-\d+$`},
	}, field.NewPath("r"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	tests := []struct {
		name, manifest string
		want           Outcome
		message        string
	}{
		{name: "present and valid", want: Pass,
			manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {app.kubernetes.io/name: c, team: web, cost-center: cc-12}}\n"},
		{name: "optional label absent", want: Pass,
			manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {app.kubernetes.io/name: c, team: web}}\n"},
		{name: "missing and malformed", want: Fail,
			manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {team: Web, cost-center: x}}\n",
			message:  `metadata.labels must include "app.kubernetes.io/name"; metadata.labels[cost-center]: value "x" must match "^cc-\\d+$"; metadata.labels[team]: value "Web" must match "^[a-z]+$"`},
		{name: "pod template checked too", want: Fail, manifest: `apiVersion: apps/v1
kind: Deployment
metadata: {name: d, labels: {app.kubernetes.io/name: d, team: web}}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b, team: web}}
    spec: {containers: [{name: c, image: x:1}]}
`, message: `spec.template.metadata.labels must include "app.kubernetes.io/name"`},
		{name: "CronJob template", want: Fail, manifest: `apiVersion: batch/v1
kind: CronJob
metadata: {name: c, labels: {app.kubernetes.io/name: c, team: web}}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {metadata: {labels: {team: web}}, spec: {restartPolicy: Never, containers: [{name: c, image: x:1}]}}}}
`, message: `spec.jobTemplate.spec.template.metadata.labels must include "app.kubernetes.io/name"`},
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

func TestLabelsRuleCompileErrors(t *testing.T) {
	_, errs := compileLabels(&v1alpha1.LabelsRule{Required: []string{"bad key!"}, Patterns: map[string]string{"ok": "(", "bad/key/x": "a"}}, field.NewPath("r"))
	want := map[string]bool{"r.required[0]": true, "r.patterns[ok]": true, "r.patterns[bad/key/x]": true}
	if len(errs) != len(want) {
		t.Fatalf("got %v", errs)
	}
	for _, e := range errs {
		if !want[e.Field] {
			t.Errorf("unexpected error %v", e)
		}
	}
}
