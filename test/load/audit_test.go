package main

import (
	"runtime"
	"testing"
	"time"
)

// TestBenchAuditRuns runs make bench-audit once, small, so that a broken harness fails the
// build; its figures are not asserted (they are measured, with make bench-audit). On 2 CPUs or
// more it runs as PIN=1 does.
func TestBenchAuditRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	if runtime.NumCPU() >= 2 {
		pinCPUs = true
		defer func() { pinCPUs = false }()
	}
	auditRounds = 2 // the second round waits for the first round's last scan
	defer func() { auditRounds = 1 }()
	if err := runAudit("../..", 300, 200, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}
