package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

const probesPolicy = `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: probes}
spec:
  enforcement: %s
  rules:
    - name: defaults
      defaultProbes: {}
`

func podRequest() admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create, Namespace: "shop",
		Object: runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"shop"},"spec":{"containers":[` +
			`{"name":"web","image":"x:1","ports":[{"containerPort":8080}]},{"name":"worker","image":"y:1"}]}}`)},
	}}
}

func TestMutatorResponses(t *testing.T) {
	tests := []struct {
		enforcement string
		auditOnly   bool
		patches     int
		warnings    []string
		annotation  string
	}{
		{enforcement: "Deny", patches: 3, warnings: []string{`[probes/defaults] container "worker" declares no TCP port`},
			annotation: "Deny: applied: add readinessProbe (tcpSocket :8080) to container web; add livenessProbe (tcpSocket :8080) to container web; container \"worker\""},
		{enforcement: "Warn", warnings: []string{`[probes/defaults] container "worker" declares no TCP port`, "[probes/defaults] would add readinessProbe (tcpSocket :8080) to container web"},
			annotation: "Warn: would add readinessProbe"},
		{enforcement: "Audit", annotation: "Audit: would add readinessProbe"},
		{enforcement: "Deny", auditOnly: true, annotation: "Audit: would add readinessProbe"},
	}
	for _, tt := range tests {
		v := validatorFor(t, strings.Replace(probesPolicy, "%s", tt.enforcement, 1), time.Second)
		m := &Mutator{Config: v.Config}
		m.AuditOnly = tt.auditOnly
		resp := m.Handle(context.Background(), podRequest())
		if !resp.Allowed || len(resp.Patches) != tt.patches {
			t.Errorf("%s (audit-only %v): allowed=%v patches=%v", tt.enforcement, tt.auditOnly, resp.Allowed, resp.Patches)
		}
		for _, w := range tt.warnings {
			if !strings.Contains(strings.Join(resp.Warnings, "\n"), w) {
				t.Errorf("%s: warnings %q lack %q", tt.enforcement, resp.Warnings, w)
			}
		}
		if len(tt.warnings) == 0 && len(resp.Warnings) > 0 {
			t.Errorf("%s: unexpected warnings %q", tt.enforcement, resp.Warnings)
		}
		if got := resp.AuditAnnotations["probes.defaults"]; !strings.HasPrefix(got, tt.annotation) {
			t.Errorf("%s: annotation %q", tt.enforcement, got)
		}
		if tt.patches > 0 {
			if err := resp.Complete(podRequest()); err != nil {
				t.Fatal(err)
			}
			var ops []map[string]any
			if err := json.Unmarshal(resp.Patch, &ops); err != nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patch %s: %v", resp.Patch, err)
			}
			if ops[2]["path"] != "/metadata/annotations" || !strings.Contains(string(resp.Patch), policies.MutationsAnnotation) {
				t.Errorf("the record patch: %s", resp.Patch)
			}
		}
	}
}
