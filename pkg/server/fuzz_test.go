package server

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// fuzzPolicies are a little of every rule type that needs no network.
const fuzzPolicies = `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: fuzz}
spec:
  enforcement: Deny
  rules:
    - {name: pss, podSecurity: {level: restricted}}
    - {name: res, resources: {limits: [memory]}}
    - {name: labels, labels: {required: [team], patterns: {team: "^[a-z]+$"}}}
    - {name: cel, cel: {expression: "podSpec == null || podSpec.containers.all(c, c.image.contains(':'))", messageExpression: "'bad ' + object.metadata.name"}}
    - {name: probes, defaultProbes: {}}
`

// FuzzReviewHandler feeds arbitrary bodies to the validating, mutating and policy webhooks through
// the ReviewHandler, with the production memory budget and deadline. Nothing may panic; every
// answer is a status the API server understands, and a 200 is a bounded AdmissionReview with a
// response for the request's UID.
func FuzzReviewHandler(f *testing.F) {
	f.Add(byte(0), loadReview(f))
	f.Add(byte(1), loadReview(f))
	for _, spec := range hostileSpecs(50) {
		f.Add(byte(0), podReview(spec))
	}
	f.Add(byte(2), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"portcullis.dev","version":"v1alpha1","kind":"Policy"},"operation":"CREATE","namespace":"shop","name":"p","object":{"apiVersion":"portcullis.dev/v1alpha1","kind":"Policy","metadata":{"name":"p","namespace":"shop"},"spec":{"rules":[{"name":"r","cel":{"expression":"object.x"}}]}}}}`))
	f.Add(byte(0), []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"object":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}}`))
	f.Add(byte(1), []byte(`{}`))

	v := validatorFor(f, fuzzPolicies, 2*time.Second)
	compiler, err := policies.NewCompiler()
	if err != nil {
		f.Fatal(err)
	}
	budget := NewBudget(64 << 20)
	handlers := []*ReviewHandler{
		{Handler: v, Budget: budget, Timeout: 2 * time.Second},
		{Handler: &Mutator{Config: v.Config}, Budget: budget, Timeout: 2 * time.Second},
		{Handler: &PolicyAdmission{Compiler: compiler}, Budget: budget, Timeout: 2 * time.Second},
	}
	f.Fuzz(func(t *testing.T, which byte, body []byte) {
		w := serve(handlers[int(which)%len(handlers)], body)
		switch w.Code {
		case http.StatusOK:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
			return
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if w.Body.Len() > 1<<20 {
			t.Fatalf("a %d-byte answer", w.Body.Len())
		}
		var in, out admissionv1.AdmissionReview
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("the answer is not a review with a response: %v\n%s", err, w.Body)
		}
		if err := json.Unmarshal(body, &in); err == nil && in.Request != nil && in.Request.UID != out.Response.UID {
			t.Fatalf("answered UID %q for %q", out.Response.UID, in.Request.UID)
		}
	})
}
