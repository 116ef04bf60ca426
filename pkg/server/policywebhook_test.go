package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

func TestPolicyAdmission(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	compiler, err := policies.NewCompiler(policies.WithExceptions(policies.ExceptionOptions{MaxLifetime: 90 * 24 * time.Hour}),
		policies.WithVerification(policies.VerificationOptions{KeyNamespaces: []string{"portcullis-system"}}))
	if err != nil {
		t.Fatal(err)
	}
	a := &PolicyAdmission{Compiler: compiler, Now: func() time.Time { return now },
		Budget: func(_ *v1alpha1.Policy, rules int, _ uint64) string {
			if rules > 1 {
				return "too many rules"
			}
			return ""
		}}
	review := func(kind string, obj any, op admissionv1.Operation) admission.Response {
		raw, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return a.Handle(t.Context(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Operation: op, Name: "x", Namespace: "shop",
			Kind:   metav1.GroupVersionKind{Group: "portcullis.dev", Version: "v1alpha1", Kind: kind},
			Object: runtime.RawExtension{Raw: raw}}})
	}
	rule := func(expr string) v1alpha1.Rule {
		return v1alpha1.Rule{Name: "r", CEL: &v1alpha1.CELRule{Expression: expr}}
	}
	good := v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{rule("true")}}

	tests := []struct {
		name   string
		kind   string
		obj    any
		op     admissionv1.Operation
		code   int32
		reason metav1.StatusReason
		want   string
	}{
		{"valid ClusterPolicy", "ClusterPolicy", &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: good}, admissionv1.Create, http.StatusOK, "", ""},
		{"broken CEL", "ClusterPolicy", &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{rule("1")}}},
			admissionv1.Update, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "spec.rules[0] (r).cel.expression: Invalid value: \"1\": must evaluate to bool"},
		{"Policy within budget", "Policy", &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "shop"}, Spec: good}, admissionv1.Create, http.StatusOK, "", ""},
		{"Policy over budget", "Policy", &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "shop"},
			Spec: v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{rule("true"), {Name: "s", CEL: &v1alpha1.CELRule{Expression: "true"}}}}},
			admissionv1.Create, http.StatusForbidden, metav1.StatusReasonForbidden, `Policy "shop/x": namespace over budget: too many rules`},
		{"a Secret is not read at the door", "ClusterPolicy", &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{{Name: "v",
			VerifyImages: &v1alpha1.VerifyImagesRule{Images: []string{"ghcr.io/*"}, Keys: []v1alpha1.KeyRef{{SecretRef: &v1alpha1.SecretKeyRef{Name: "absent"}}}}}}}},
			admissionv1.Create, http.StatusOK, "", ""},
		{"exception past the maximum lifetime", "PolicyException", &v1alpha1.PolicyException{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "shop"},
			Spec: v1alpha1.PolicyExceptionSpec{Exceptions: []v1alpha1.ExceptionTarget{{PolicyName: "p"}}, Owner: "o", Reason: "r", Expires: metav1.NewTime(now.Add(91 * 24 * time.Hour))}},
			admissionv1.Create, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, "spec.expires: Invalid value: \"2026-08-31T00:00:00Z\": must be at most 90d after the exception's creation"},
		{"exception within it", "PolicyException", &v1alpha1.PolicyException{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "shop"},
			Spec: v1alpha1.PolicyExceptionSpec{Exceptions: []v1alpha1.ExceptionTarget{{PolicyName: "p"}}, Owner: "o", Reason: "r", Expires: metav1.NewTime(now.Add(89 * 24 * time.Hour))}},
			admissionv1.Create, http.StatusOK, "", ""},
		{"deletes always pass", "ClusterPolicy", &v1alpha1.ClusterPolicy{}, admissionv1.Delete, http.StatusOK, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := review(tt.kind, tt.obj, tt.op)
			if err := resp.Complete(admission.Request{}); err != nil {
				t.Fatal(err)
			}
			if resp.Result.Code != tt.code || resp.Result.Reason != tt.reason || !strings.Contains(resp.Result.Message, tt.want) || resp.Allowed != (tt.code == http.StatusOK) {
				t.Errorf("got %v %d %s %q", resp.Allowed, resp.Result.Code, resp.Result.Reason, resp.Result.Message)
			}
		})
	}
	// A kind that may be a typo, or a custom resource's, is admitted with a warning kubectl shows.
	typo := good
	typo.Match.Kinds = []string{"Pood"}
	resp := review("ClusterPolicy", &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: typo}, admissionv1.Create)
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "spec.match.kinds[0]: no built-in group has a kind Pood (did you mean Pod?)") {
		t.Errorf("a kind that may be a typo: allowed %v, warnings %q", resp.Allowed, resp.Warnings)
	}
}
