package policies

import (
	"fmt"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// Verdict is what the API server does with a request.
type Verdict string

// The verdicts.
const (
	Admitted Verdict = "allowed"
	Mutated  Verdict = "mutated"
	Warned   Verdict = "warned"
	Denied   Verdict = "denied"
)

// AuditEntry is what the API server's audit log records of one rule: its action and message.
type AuditEntry struct {
	Policy, Rule, Value string
}

// Decision is what the results of a request's rules mean for it. Decide is the one mapping from
// results to a decision; the admission handlers turn a Decision into their answer.
type Decision struct {
	Verdict Verdict
	// Denials are the "[policy/rule] message" of every fail whose action is Deny.
	Denials []string
	// Warnings are what kubectl shows: fails whose action is Warn, evaluation errors under
	// failurePolicy Ignore, and what a mutating rule in Deny or Warn could not do.
	Warnings []string
	// Audit records every fail, and every mutating rule that changed the object or would.
	Audit []AuditEntry
}

// Decide maps results to a decision:
//   - a fail with action Deny denies, with every denying rule's message;
//   - a fail with action Warn becomes a warning;
//   - every fail, and every pass that says something (a mutation applied), is recorded for the
//     audit log;
//   - an error (failurePolicy Ignore) admits with a warning;
//   - a mutation applied makes the request mutated, unless it is denied.
func Decide(results []Result) Decision {
	var d Decision
	mutated := false
	for i := range results {
		r := &results[i]
		if r.Action != v1alpha1.Audit {
			for _, w := range r.Warnings {
				d.Warnings = append(d.Warnings, Truncate(r.label()+w, MaxMessageBytes))
			}
		}
		mutated = mutated || len(r.Changes) > 0
		switch r.Result {
		case Fail:
			d.Audit = append(d.Audit, AuditEntry{Policy: r.Policy, Rule: r.Rule, Value: string(r.Action) + ": " + r.Message})
			switch r.Action {
			case v1alpha1.Deny:
				d.Denials = append(d.Denials, r.String())
			case v1alpha1.Warn:
				d.Warnings = append(d.Warnings, r.String())
			}
		case Pass:
			if r.Message != "" {
				d.Audit = append(d.Audit, AuditEntry{Policy: r.Policy, Rule: r.Rule, Value: string(r.Action) + ": " + r.Message})
			}
		case Error:
			d.Warnings = append(d.Warnings, fmt.Sprintf("%sevaluation error ignored (failurePolicy Ignore): %s", r.label(), r.Message))
		}
	}
	switch {
	case len(d.Denials) > 0:
		d.Verdict = Denied
	case mutated:
		d.Verdict = Mutated
	case len(d.Warnings) > 0:
		d.Verdict = Warned
	default:
		d.Verdict = Admitted
	}
	return d
}
