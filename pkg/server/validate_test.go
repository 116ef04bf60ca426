package server

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/source"
)

// slowPolicy's expression iterates long enough to outlive a tiny evaluation deadline.
const slowPolicy = `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: slow}
spec:
  enforcement: Deny
  failurePolicy: %s
  rules:
    - name: loop
      cel: {expression: "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, a+b+c > 0)))"}
`

func validatorFor(t testing.TB, policy string, timeout time.Duration) *Validator {
	t.Helper()
	docs, err := manifest.Split("policy.yaml", []byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	c, err := policies.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	e, err := manifest.CompilePolicies(c, docs, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	h := &source.EngineHolder{}
	h.Store(e)
	return &Validator{Config{Engines: h, Decoder: policies.NewDecoder(false).SharingInput(), Timeout: timeout}}
}

func configMapRequest() admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Operation: admissionv1.Create, Namespace: "shop",
		Object: runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"shop"}}`)},
	}}
}

// TestEvaluationDeadline: past its deadline an evaluation stops, and the policy's failurePolicy
// decides, so the webhook answers before the API server gives up on it.
func TestEvaluationDeadline(t *testing.T) {
	for _, tc := range []struct {
		failurePolicy string
		allowed       bool
		want          string
	}{
		{"Fail", false, "[slow/loop] evaluation error (failurePolicy Fail)"},
		{"Ignore", true, "[slow/loop] evaluation error ignored (failurePolicy Ignore)"},
	} {
		v := validatorFor(t, strings.Replace(slowPolicy, "%s", tc.failurePolicy, 1), time.Nanosecond)
		start := time.Now()
		resp := v.Handle(context.Background(), configMapRequest())
		if time.Since(start) > time.Second {
			t.Errorf("%s: took %s", tc.failurePolicy, time.Since(start))
		}
		got := strings.Join(resp.Warnings, "\n")
		if resp.Result != nil {
			got += resp.Result.Message
		}
		if resp.Allowed != tc.allowed || !strings.Contains(got, tc.want) ||
			(!strings.Contains(got, "interrupted") && !strings.Contains(got, "deadline exceeded")) {
			t.Errorf("%s: allowed=%v %q", tc.failurePolicy, resp.Allowed, got)
		}
	}
	// With time enough, the same rule passes.
	v := validatorFor(t, strings.Replace(slowPolicy, "%s", "Fail", 1), 5*time.Second)
	if resp := v.Handle(context.Background(), configMapRequest()); !resp.Allowed || len(resp.Warnings) > 0 {
		t.Errorf("with time enough: %+v", resp)
	}
}

func TestNotSyncedYet(t *testing.T) {
	v := &Validator{Config{Engines: &source.EngineHolder{}, Decoder: policies.NewDecoder(false).SharingInput()}}
	resp := v.Handle(context.Background(), configMapRequest())
	if resp.Allowed || resp.Result.Code != 503 {
		t.Errorf("before the first sync: %+v", resp.Result)
	}
}
