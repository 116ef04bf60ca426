package intercept

import (
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func hook(name, path string, rules ...admissionregistrationv1.RuleWithOperations) admissionregistrationv1.ValidatingWebhook {
	return admissionregistrationv1.ValidatingWebhook{Name: name, Rules: rules,
		ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "svc", Namespace: "ns", Path: ptr.To(path)}}}
}

// The syncer sets the rules of the webhook that calls /validate, leaves the policy webhook alone,
// asks discovery once for a burst of syncs, and again once told a CRD changed.
func TestSyncer(t *testing.T) {
	policyRule := admissionregistrationv1.RuleWithOperations{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{"portcullis.dev"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"clusterpolicies"}}}
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "portcullis-validating"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{hook("validate", "/validate"), hook("policies", "/validate-policies", policyRule)}}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(cfg).Build()
	discoveries := 0
	s := &Syncer{Client: cl, Reader: cl, Validating: "portcullis-validating", Mutating: "absent", ValidatePath: "/validate", MutatePath: "/mutate",
		Discover: func() (Served, error) { discoveries++; return served, nil }}
	rules := func() []admissionregistrationv1.ValidatingWebhook {
		var got admissionregistrationv1.ValidatingWebhookConfiguration
		if err := cl.Get(t.Context(), client.ObjectKeyFromObject(cfg), &got); err != nil {
			t.Fatal(err)
		}
		return got.Webhooks
	}

	problems, err := s.Sync(t.Context(), []Need{need("svc", false, createUpdate, "core/Service", "Lease")})
	if err != nil {
		t.Fatal(err)
	}
	hooks := rules()
	if got := compact(hooks[0].Rules); !slices.Equal(got, []string{"/v1 CREATE,UPDATE: services"}) {
		t.Errorf("workload webhook rules %q", got)
	}
	if len(hooks[1].Rules) != 1 || hooks[1].Rules[0].Resources[0] != "clusterpolicies" {
		t.Errorf("the policy webhook's rules were changed: %+v", hooks[1].Rules)
	}
	if len(problems["svc"]) != 1 {
		t.Errorf("problems %q, want the Lease", problems)
	}

	if _, err := s.Sync(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if got := rules()[0].Rules; len(got) != 0 {
		t.Errorf("no policies left rules %+v", got)
	}
	if discoveries != 1 {
		t.Errorf("%d discoveries for two syncs in a row, want 1", discoveries)
	}
	s.Forget()
	if _, err := s.Sync(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if discoveries != 2 {
		t.Errorf("%d discoveries after Forget, want 2", discoveries)
	}
}
