package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Decision summarizes a review for metrics.
type Decision string

// The decisions.
const (
	Allowed Decision = "allowed"
	Denied  Decision = "denied"
	Warned  Decision = "warned"
	Errored Decision = "error"
	Mutated Decision = "mutated"
	// Refused: too large or complex to evaluate.
	Refused Decision = "refused"
)

// respond maps results to the admission response:
//   - a fail with action Deny denies, with every denying rule's message;
//   - a fail with action Warn becomes a warning that kubectl prints;
//   - every fail is recorded as an audit annotation, which the API server's audit log keeps;
//   - an error (failurePolicy Ignore) admits with a warning.
func respond(results []policies.Result) (admission.Response, Decision) {
	var denials, warnings []string
	annotations := map[string]string{}
	for i := range results {
		r := &results[i]
		switch r.Result {
		case policies.Fail:
			annotations[auditKey(r.Policy, r.Rule)] = string(r.Action) + ": " + r.Message
			switch r.Action {
			case v1alpha1.Deny:
				denials = append(denials, r.String())
			case v1alpha1.Warn:
				warnings = append(warnings, r.String())
			}
		case policies.Error:
			warnings = append(warnings, fmt.Sprintf("[%s/%s] evaluation error ignored (failurePolicy Ignore): %s", r.Policy, r.Rule, r.Message))
		}
	}
	var resp admission.Response
	decision := Allowed
	switch {
	case len(denials) > 0:
		resp = admission.Denied(joinBounded(denials, maxDenialBytes, "rules deny"))
		resp.Result.Code = http.StatusForbidden
		resp.Result.Reason = metav1.StatusReasonForbidden
		decision = Denied
	default:
		resp = admission.Allowed("")
		if len(warnings) > 0 {
			decision = Warned
		}
	}
	if len(warnings) > 0 {
		resp = resp.WithWarnings(warnings...)
	}
	if len(annotations) > 0 {
		resp.AuditAnnotations = annotations
	}
	return resp, decision
}

// auditKey is "policy.rule", shortened with a hash to the 63 characters an audit annotation
// key may have (the API server prefixes it with the webhook's name).
func auditKey(policy, rule string) string {
	key := strings.ReplaceAll(policy, "/", ".") + "." + rule
	if len(key) <= 63 {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	suffix := "-" + hex.EncodeToString(sum[:4])
	return strings.TrimRight(key[:63-len(suffix)], ".-") + suffix
}

// joinBounded joins lines until the next would pass n bytes, then says how many were left out.
func joinBounded(lines []string, n int, what string) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 && b.Len()+1+len(l) > n-64 {
			fmt.Fprintf(&b, "\n… and %d more %s", len(lines)-i, what)
			break
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(l)
	}
	return b.String()
}
