package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

func TestRespond(t *testing.T) {
	r := func(policy string, out policies.Outcome, action v1alpha1.Enforcement, msg string) policies.Result {
		return policies.Result{Policy: policy, Rule: "r", Result: out, Action: action, Message: msg}
	}
	tests := []struct {
		name        string
		results     []policies.Result
		allowed     bool
		decision    Decision
		message     string
		warnings    []string
		annotations map[string]string
	}{
		{name: "nothing matched", allowed: true, decision: Allowed},
		{name: "all pass", results: []policies.Result{r("a", policies.Pass, v1alpha1.Deny, "")}, allowed: true, decision: Allowed},
		{name: "deny lists every denying rule", results: []policies.Result{r("a", policies.Fail, v1alpha1.Deny, "one"), r("b", policies.Fail, v1alpha1.Deny, "two"), r("c", policies.Fail, v1alpha1.Warn, "three")},
			decision: Denied, message: "[a/r] one\n[b/r] two", warnings: []string{"[c/r] three"},
			annotations: map[string]string{"a.r": "Deny: one", "b.r": "Deny: two", "c.r": "Warn: three"}},
		{name: "warn", results: []policies.Result{r("a", policies.Fail, v1alpha1.Warn, "careful")}, allowed: true, decision: Warned,
			warnings: []string{"[a/r] careful"}, annotations: map[string]string{"a.r": "Warn: careful"}},
		{name: "audit records only", results: []policies.Result{r("a", policies.Fail, v1alpha1.Audit, "noted")}, allowed: true, decision: Allowed,
			annotations: map[string]string{"a.r": "Audit: noted"}},
		{name: "ignored evaluation error warns", results: []policies.Result{r("a", policies.Error, v1alpha1.Deny, "boom")}, allowed: true, decision: Warned,
			warnings: []string{"[a/r] evaluation error ignored (failurePolicy Ignore): boom"}},
		{name: "namespaced policy key", results: []policies.Result{r("shop/p", policies.Fail, v1alpha1.Audit, "x")}, allowed: true, decision: Allowed,
			annotations: map[string]string{"shop.p.r": "Audit: x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, decision := respond(tt.results)
			if resp.Allowed != tt.allowed || decision != tt.decision {
				t.Fatalf("allowed=%v decision=%s", resp.Allowed, decision)
			}
			if !tt.allowed && (resp.Result.Message != tt.message || resp.Result.Code != http.StatusForbidden) {
				t.Errorf("message %q code %d", resp.Result.Message, resp.Result.Code)
			}
			if strings.Join(resp.Warnings, "|") != strings.Join(tt.warnings, "|") {
				t.Errorf("warnings %q, want %q", resp.Warnings, tt.warnings)
			}
			if len(resp.AuditAnnotations) != len(tt.annotations) {
				t.Errorf("annotations %v, want %v", resp.AuditAnnotations, tt.annotations)
			}
			for k, v := range tt.annotations {
				if resp.AuditAnnotations[k] != v {
					t.Errorf("annotation %s = %q, want %q", k, resp.AuditAnnotations[k], v)
				}
			}
		})
	}
}

func TestAuditKey(t *testing.T) {
	long := strings.Repeat("a", 80)
	k1, k2 := auditKey(long, "rule"), auditKey(long+"b", "rule")
	if len(k1) > 63 || k1 == k2 || !strings.HasPrefix(k1, "aaaa") {
		t.Errorf("auditKey: %q %q", k1, k2)
	}
	if got := auditKey("p", "r"); got != "p.r" {
		t.Errorf("short key %q", got)
	}
}
