package policies

import (
	"slices"
	"testing"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

func TestDecide(t *testing.T) {
	r := func(rule string, o Outcome, a v1alpha1.Enforcement, msg string) Result {
		return Result{Policy: "p", Rule: rule, Result: o, Action: a, Message: msg}
	}
	applied := r("probes", Pass, v1alpha1.Deny, "applied: add readinessProbe")
	applied.Changes = []string{"add readinessProbe"}
	noPort := r("probes", Pass, v1alpha1.Audit, "container \"job\" declares no TCP port")
	noPort.Warnings = []string{"container \"job\" declares no TCP port"}
	warnNoPort := noPort
	warnNoPort.Action = v1alpha1.Warn
	for _, tc := range []struct {
		name     string
		results  []Result
		verdict  Verdict
		denials  []string
		warnings []string
		audit    int
	}{
		{"nothing", nil, Admitted, nil, nil, 0},
		{"passes say nothing", []Result{r("a", Pass, v1alpha1.Deny, "")}, Admitted, nil, nil, 0},
		{"a deny", []Result{r("a", Fail, v1alpha1.Deny, "no"), r("b", Fail, v1alpha1.Warn, "hm")}, Denied, []string{"[p/a] no"}, []string{"[p/b] hm"}, 2},
		{"an audit fail is recorded only", []Result{r("a", Fail, v1alpha1.Audit, "no")}, Admitted, nil, nil, 1},
		{"an ignored error warns", []Result{r("a", Error, v1alpha1.Deny, "boom")}, Warned, nil, []string{"[p/a] evaluation error ignored (failurePolicy Ignore): boom"}, 0},
		{"a mutation applied", []Result{applied}, Mutated, nil, nil, 1},
		{"an Audit rule's warning stays in the audit log", []Result{noPort}, Admitted, nil, nil, 1},
		{"a Warn rule's warning reaches kubectl", []Result{warnNoPort}, Warned, nil, []string{"[p/probes] container \"job\" declares no TCP port"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.results)
			if d.Verdict != tc.verdict || !slices.Equal(d.Denials, tc.denials) || !slices.Equal(d.Warnings, tc.warnings) || len(d.Audit) != tc.audit {
				t.Errorf("got %+v\nwant verdict %s, denials %q, warnings %q, %d audit entries", d, tc.verdict, tc.denials, tc.warnings, tc.audit)
			}
		})
	}
}
