package policies

import (
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// Outcome is the result of one rule on one resource.
type Outcome string

// The outcomes.
const (
	Pass  Outcome = "pass"
	Fail  Outcome = "fail"
	Error Outcome = "error"
	Skip  Outcome = "skip"
)

// Result is the verdict of one rule of one policy on one resource. The same message reaches
// kubectl, audit annotations and the CLI.
type Result struct {
	Policy   string               `json:"policy"`
	Rule     string               `json:"rule"`
	Resource Ref                  `json:"resource"`
	Result   Outcome              `json:"result"`
	Action   v1alpha1.Enforcement `json:"action"`
	Message  string               `json:"message,omitempty"`
	// Namespaced: the policy is a namespaced Policy, whose names its tenant chose.
	Namespaced bool `json:"-"`
	// Changes are what a mutating rule in Deny changed, each described.
	Changes []string `json:"-"`
	// Warnings are what a mutating rule could not do, e.g. a container with no port to probe.
	Warnings []string `json:"-"`
}

// String is the message as users see it: "[policy/rule] message".
func (r Result) String() string {
	return r.label() + r.Message
}

func (r *Result) label() string { return Label(r.Policy, r.Rule) }

// Label is the "[policy/rule] " every message to users starts with: formatted here only.
func Label(policy, rule string) string {
	return "[" + policy + "/" + rule + "] "
}

// verdict is what a rule evaluator returns; the engine adds policy, rule, resource and action.
type verdict struct {
	outcome Outcome
	message string
}

func pass() verdict               { return verdict{outcome: Pass} }
func fail(msg string) verdict     { return verdict{outcome: Fail, message: msg} }
func skip(msg string) verdict     { return verdict{outcome: Skip, message: msg} }
func evalError(err error) verdict { return verdict{outcome: Error, message: err.Error()} }
