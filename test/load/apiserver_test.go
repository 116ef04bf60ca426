package main

import "testing"

// TestBenchAPIServerRuns runs make bench-apiserver once, small.
func TestBenchAPIServerRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	if err := runAPIServer("../..", 50, 2); err != nil {
		t.Fatal(err)
	}
}
