package server

import (
	"fmt"
	"maps"
	"slices"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// The bounds of a response. A review of an object with thousands of failing containers, or a
// namespace with hundreds of failing rules, still gets an answer of a few tens of KiB: the
// API server keeps at most 4 Ki characters of warnings anyway, and audit annotations land in
// every audit event.
const (
	maxDenialBytes          = 16 << 10
	maxWarnings             = 16
	maxWarningBytes         = 1 << 10
	maxAuditAnnotations     = 32
	maxAuditAnnotationBytes = 1 << 10
	// TruncatedAnnotation counts the audit annotations left out of a response.
	TruncatedAnnotation = "truncated"
)

// boundResponse caps the denial message, the warnings and the audit annotations of resp.
func boundResponse(resp *admission.Response) {
	if resp.Result != nil {
		resp.Result.Message = policies.Truncate(resp.Result.Message, maxDenialBytes)
	}
	if n := len(resp.Warnings); n > maxWarnings {
		resp.Warnings = append(resp.Warnings[:maxWarnings-1:maxWarnings-1], fmt.Sprintf("… and %d more warnings", n-maxWarnings+1))
	}
	for i, w := range resp.Warnings {
		resp.Warnings[i] = policies.Truncate(w, maxWarningBytes)
	}
	if n := len(resp.AuditAnnotations); n > maxAuditAnnotations {
		keys := slices.Sorted(maps.Keys(resp.AuditAnnotations))
		for _, k := range keys[maxAuditAnnotations-1:] {
			delete(resp.AuditAnnotations, k)
		}
		resp.AuditAnnotations[TruncatedAnnotation] = fmt.Sprintf("%d more results are not recorded here", n-maxAuditAnnotations+1)
	}
	for k, v := range resp.AuditAnnotations {
		resp.AuditAnnotations[k] = policies.Truncate(v, maxAuditAnnotationBytes)
	}
}
