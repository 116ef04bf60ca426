package main

import (
	"testing"
	"time"
)

// TestBenchAuditRuns runs make bench-audit once, small, so that a broken harness fails the
// build; its figures are not asserted (they are measured, with make bench-audit).
func TestBenchAuditRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	if err := runAudit("../..", 300, 200, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}
