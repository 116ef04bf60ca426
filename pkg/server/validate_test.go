package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
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

// TestEachReviewHasItsOwnResults: the results' slices are pooled between reviews, and no review's
// answer holds another's: 8 goroutines send ConfigMaps whose names a rule denies or admits, and
// each answer names its own ConfigMap, or nothing.
func TestEachReviewHasItsOwnResults(t *testing.T) {
	v := validatorFor(t, `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: names}
spec:
  enforcement: Deny
  rules:
    - name: ok-prefix
      cel: {expression: "object.metadata.name.startsWith('ok-')", messageExpression: "'bad name ' + object.metadata.name"}
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: lengths}
spec:
  enforcement: Warn
  rules:
    - name: short
      cel: {expression: "object.metadata.name.size() < 8", messageExpression: "'long name ' + object.metadata.name"}
`, 5*time.Second)
	review := func(name string) admission.Response {
		req := configMapRequest()
		req.Object.Raw = []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"` + name + `","namespace":"shop"}}`)
		return v.Handle(context.Background(), req)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				name := fmt.Sprintf("ok-%d-%d", g, i)
				if (g+i)%2 == 1 {
					name = fmt.Sprintf("no-%d-%d", g, i)
				}
				resp := review(name)
				msg := strings.Join(resp.Warnings, "\n")
				if resp.Result != nil {
					msg += "\n" + resp.Result.Message
				}
				denied := strings.HasPrefix(name, "no-")
				wantWarn := len(name) >= 8
				if resp.Allowed == denied || strings.Contains(msg, "bad name "+name) != denied ||
					strings.Contains(msg, "long name "+name) != wantWarn ||
					strings.Count(msg, "name ") != btoi(denied)+btoi(wantWarn) {
					errs <- fmt.Sprintf("%s: allowed=%v %q", name, resp.Allowed, msg)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
