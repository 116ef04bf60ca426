package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBenchLoadRuns runs make bench-load once, small, with the noisy tenant, so that a broken
// harness fails the build; its figures are measured with make bench-load, not asserted here,
// beyond being there: every phase reviewed something, and the floor's and the server's phases
// read the CPU of the server, of the load generator and of the machine.
func TestBenchLoadRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	tenantRate = 50
	defer func() { tenantRate = 0 }()
	out := filepath.Join(t.TempDir(), "bench-load.json")
	if err := run("../..", "200", time.Second, out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var results []result
	if err := json.Unmarshal(data, &results); err != nil {
		t.Fatal(err)
	}
	servers := map[string]bool{}
	for _, r := range results {
		servers[r.Server] = true
		if r.Requests == 0 || r.Success == 0 {
			t.Errorf("%s at %d/s: nothing reviewed: %+v", r.Server, r.Rate, r)
		}
		if r.Server != "noop" && r.Server != "portcullis" {
			continue // the tenant's phases report latency only
		}
		if r.Requests == 0 || r.Success == 0 || r.CPUPerReview <= 0 || r.LoadCPUPerReview <= 0 || r.MachineBusy <= 0 || r.MachineBusy > 1 {
			t.Errorf("%s at %d/s: a figure is missing or out of range: %+v", r.Server, r.Rate, r)
		}
	}
	if !servers["noop"] || !servers["portcullis"] || len(results) < 4 {
		t.Errorf("want the floor, the server and the tenant's phases; got %+v", results)
	}
}
