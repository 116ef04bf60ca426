package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Decision summarizes a review for metrics: the engine's verdict, or what kept the engine from
// giving one.
type Decision string

// The decisions.
const (
	Allowed          = Decision(policies.Admitted)
	Denied           = Decision(policies.Denied)
	Warned           = Decision(policies.Warned)
	Mutated          = Decision(policies.Mutated)
	Errored Decision = "error"
	// Refused: too large or complex to evaluate.
	Refused Decision = "refused"
)

// respond turns the engine's decision on results into the admission response: its denials, its
// warnings for kubectl, its audit annotations for the API server's audit log.
func respond(results []policies.Result) (admission.Response, Decision) {
	d := policies.Decide(results)
	var resp admission.Response
	if d.Verdict == policies.Denied {
		resp = admission.Denied(joinBounded(d.Denials, maxDenialBytes, "rules deny"))
		resp.Result.Code = http.StatusForbidden
		resp.Result.Reason = metav1.StatusReasonForbidden
	} else {
		resp = admission.Allowed("")
	}
	if len(d.Warnings) > 0 {
		resp = resp.WithWarnings(d.Warnings...)
	}
	if len(d.Audit) > 0 {
		resp.AuditAnnotations = make(map[string]string, len(d.Audit))
		for _, a := range d.Audit {
			resp.AuditAnnotations[auditKey(a.Policy, a.Rule)] = a.Value
		}
	}
	return resp, Decision(d.Verdict)
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
