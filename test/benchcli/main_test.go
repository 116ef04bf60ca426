package main

import "testing"

// TestBenchCLIRuns runs the harness once on a few Pods, in both formats, so that a broken
// harness fails CI (make test builds bin/kubectl-portcullis and bin/opa first).
func TestBenchCLIRuns(t *testing.T) {
	for _, format := range []string{"yaml", "json"} {
		for _, pod := range []string{"bench", "small"} {
			if err := run("../..", 20, 1, format, pod, ""); err != nil {
				t.Fatalf("%s, %s Pods: %v", format, pod, err)
			}
		}
	}
	// And beside OPA, as make bench-cli OPA=1 runs it (make test builds bin/opa): it fails when
	// the engines' verdicts differ.
	if err := run("../..", 40, 1, "json", "bench", "../../bin/opa"); err != nil {
		t.Fatalf("beside OPA: %v", err)
	}
}
