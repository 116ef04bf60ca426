package policies

import (
	"strings"
	"testing"
	"time"
)

// TestKindsChecked: a kind its built-in group lacks is an error, with the kind it is closest
// to; a kind of any group that no built-in group has is a warning (it may be a custom
// resource's); a custom resource's group, and every built-in kind, are fine.
func TestKindsChecked(t *testing.T) {
	for _, tt := range []struct{ kind, err, warning string }{
		{"Pod", "", ""},
		{"core/Pod", "", ""},
		{"apps/Deployment", "", ""},
		{"networking.k8s.io/Ingress", "", ""},
		{"policy/PodDisruptionBudget", "", ""},
		{"example.com/Widget", "", ""},
		{"*", "", ""},
		{"Widget", "", "no built-in group has a kind Widget; if it is a custom resource's kind"},
		{"Pood", "", "no built-in group has a kind Pood (did you mean Pod?)"},
		{"apps/Deploymnt", "the built-in group apps has no kind Deploymnt (did you mean Deployment?)", ""},
		{"core/Deployment", "the built-in group core has no kind Deployment", ""},
	} {
		sel, err := ParseKindSelector(tt.kind)
		if err != nil {
			t.Fatalf("%s: %v", tt.kind, err)
		}
		bad, warning := checkKind(sel)
		if (tt.err == "") != (bad == "") || !strings.Contains(bad, tt.err) || (tt.warning == "") != (warning == "") || !strings.Contains(warning, tt.warning) {
			t.Errorf("%s: error %q, warning %q; want %q, %q", tt.kind, bad, warning, tt.err, tt.warning)
		}
	}
	// The warning reaches the compiled policy, with its field.
	e := mustEngine(t, time.Now(), clusterPolicy("p", "match: {kinds: [Pod, Pood]}\nrules:\n- {name: r, cel: {expression: 'true'}}\n"))
	for p := range e.Policies() {
		if len(p.Warnings) != 1 || !strings.HasPrefix(p.Warnings[0], "spec.match.kinds[1]: no built-in group has a kind Pood") {
			t.Errorf("warnings %q", p.Warnings)
		}
	}
}
