package main

import (
	"testing"
	"time"
)

// TestBenchSoakRuns runs make bench-soak once, short: 100 policies, 20 s, RSS every 5 s.
func TestBenchSoakRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	if err := runSoak("../..", 200, 20*time.Second, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
