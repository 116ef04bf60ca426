package policies

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// TestBoundsCheckedBeforeCompiling: an oversized policy is refused with the field and the bound,
// and nothing of it is compiled (its broken expressions report nothing).
func TestBoundsCheckedBeforeCompiling(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", s, i)
		}
		return out
	}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{}}
	for i := range MaxSelectorTerms + 1 {
		selector.MatchLabels[fmt.Sprintf("k%d", i)] = "v"
	}
	rules := func(n int) []v1alpha1.Rule {
		var rs []v1alpha1.Rule
		for i := range n {
			rs = append(rs, v1alpha1.Rule{Name: fmt.Sprintf("r%d", i), CEL: &v1alpha1.CELRule{Expression: "this is not CEL"}})
		}
		return rs
	}
	tests := []struct {
		name string
		spec v1alpha1.PolicySpec
		want string
	}{
		{"too many rules", v1alpha1.PolicySpec{Rules: rules(MaxRules + 1)}, "spec.rules: Too many: 101: must have at most 100 items"},
		{"long glob", v1alpha1.PolicySpec{Match: v1alpha1.MatchResources{Namespaces: []string{long(MaxGlobLength + 1)}}, Rules: rules(1)},
			"spec.match.namespaces[0]: Too long: may not be more than 512 bytes"},
		{"many namespaces", v1alpha1.PolicySpec{Match: v1alpha1.MatchResources{Namespaces: many(MaxListItems+1, "ns")}, Rules: rules(1)},
			"spec.match.namespaces: Too many: 65: must have at most 64 items"},
		{"large selector", v1alpha1.PolicySpec{Exclude: &v1alpha1.MatchResources{ObjectSelector: selector}, Rules: rules(1)},
			"spec.exclude.objectSelector: Too many: 33: must have at most 32 items"},
		{"long expression", v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{{Name: "r", CEL: &v1alpha1.CELRule{Expression: long(MaxExpressionLength + 1)}}}},
			"spec.rules[0] (r).cel.expression: Too long"},
		{"many images", v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{{Name: "r", VerifyImages: &v1alpha1.VerifyImagesRule{Images: many(MaxListItems+1, "img"), Keys: []v1alpha1.KeyRef{{PublicKey: "x"}}}}}},
			"spec.rules[0] (r).verifyImages.images: Too many: 65"},
		{"long label pattern", v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{{Name: "r", Labels: &v1alpha1.LabelsRule{Patterns: map[string]string{"team": long(MaxTextLength + 1)}}}}},
			"spec.rules[0] (r).labels.patterns[team]: Too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testCompiler.CompileClusterPolicy(&v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: tt.spec})
			var ce *CompileError
			if !errors.As(err, &ce) || len(ce.Errs) != 1 || !strings.Contains(ce.Errs[0].Error(), tt.want) {
				t.Fatalf("got %v, want exactly one error containing %q", err, tt.want)
			}
		})
	}
	x := &v1alpha1.PolicyException{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "shop"}, Spec: v1alpha1.PolicyExceptionSpec{
		Owner: "team", Reason: long(MaxTextLength + 1), Expires: metav1.Now(), Exceptions: []v1alpha1.ExceptionTarget{{PolicyName: "p"}}}}
	if _, err := testCompiler.CompileException(x); err == nil || !strings.Contains(err.Error(), "spec.reason: Too long") {
		t.Errorf("exception: got %v", err)
	}
	if _, err := compileGlob(long(MaxGlobLength + 1)); err == nil {
		t.Error("compileGlob accepted a pattern past MaxGlobLength")
	}
}
