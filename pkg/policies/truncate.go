package policies

import (
	"fmt"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxMessageBytes bounds a result's message. Messages list offending containers, images and
// labels, all of which a tenant controls; the same bounded text reaches kubectl, the audit log
// and the CLI.
const MaxMessageBytes = 4 << 10

// Truncate cuts s to at most n bytes on a character boundary, saying how much was left out.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// The suffix's number is at most len(s): reserve room for that many digits.
	cut := max(n-len(fmt.Sprintf(" … (%d more bytes)", len(s))), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf(" … (%d more bytes)", len(s)-cut)
}

// Bounds on a list of errors in a policy's status or in the policy webhook's answer: they quote
// what a tenant wrote (an expression is up to 5,000 characters), and a status must stay well
// within an object's size limit.
const (
	MaxListedErrors = 32
	MaxErrorBytes   = 1 << 10
)

// BoundErrors keeps the first MaxListedErrors errors, each cut at MaxErrorBytes, and says how
// many were left out.
func BoundErrors(errs []string) []string {
	out := make([]string, 0, min(len(errs), MaxListedErrors+1))
	for i, e := range errs {
		if i == MaxListedErrors {
			out = append(out, fmt.Sprintf("… and %d more errors", len(errs)-i))
			break
		}
		out = append(out, Truncate(e, MaxErrorBytes))
	}
	return out
}

// FieldErrorStrings is each field error as text.
func FieldErrorStrings(errs field.ErrorList) []string {
	out := make([]string, len(errs))
	for i, fe := range errs {
		out[i] = fe.Error()
	}
	return out
}
