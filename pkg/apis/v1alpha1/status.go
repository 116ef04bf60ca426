package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyStatus is the observed state of a policy.
type PolicyStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready is True when the policy compiled and is enforced.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Errors are the compile errors, each with its field path.
	// +optional
	// +listType=atomic
	Errors []string `json:"errors,omitempty"`
	// Audit is what the background audit found of the policy on the objects that exist.
	// +optional
	Audit *AuditStatus `json:"audit,omitempty"`
}

// AuditStatus counts a policy's results on the existing objects, as the background audit last
// found them: each count is of (object, rule) results, as the reports' summaries count.
type AuditStatus struct {
	// Pass counts the results that pass.
	Pass int `json:"pass"`
	// Fail counts the failures whose action is Deny or Audit.
	Fail int `json:"fail"`
	// Warn counts the failures whose action is Warn.
	Warn int `json:"warn"`
	// Error counts the results that could not be judged.
	Error int `json:"error"`
	// Violations is fail + warn: what would be denied if the policy were enforced with Deny.
	Violations int `json:"violations"`
	// LastScanTime is when the audit last judged the kinds the policy matches.
	// +optional
	LastScanTime *metav1.Time `json:"lastScanTime,omitempty"`
}

// PolicyExceptionStatus is the observed state of an exception.
type PolicyExceptionStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}
