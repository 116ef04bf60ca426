package main

import (
	"os"
	"testing"
)

// TestMain lets the test binary be the harness's launcher, as the command is.
func TestMain(m *testing.M) {
	if os.Getenv(launcherEnv) != "" {
		os.Exit(launch(os.Args[1:]))
	}
	os.Exit(m.Run())
}

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
