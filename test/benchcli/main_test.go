package main

import "testing"

// TestBenchCLIRuns runs the harness once on a few Pods, in both formats, so that a broken
// harness fails CI (make test builds bin/kubectl-portcullis first).
func TestBenchCLIRuns(t *testing.T) {
	for _, format := range []string{"yaml", "json"} {
		for _, pod := range []string{"bench", "small"} {
			if err := run("../..", 20, 1, format, pod); err != nil {
				t.Fatalf("%s, %s Pods: %v", format, pod, err)
			}
		}
	}
}
