package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestMain lets bench-audit's pinned listing control run as this test binary (listerEnv).
func TestMain(m *testing.M) {
	runListerIfAsked()
	os.Exit(m.Run())
}

// TestBenchLoadRuns runs make bench-load once, small, in two rounds, with the noisy tenant, so
// that a broken harness fails the build; its figures are measured with make bench-load, not
// asserted here, beyond being there: every phase reviewed something, the floor's and the
// server's phases read the CPU of the server, of the load generator and of the machine (and the
// server's, its own handling's p99), and each round measured both, the floor first in the first
// round and second in the second.
func TestBenchLoadRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	tenantRate, loadRounds = 50, 2
	defer func() { tenantRate, loadRounds = 0, 1 }()
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
	var measured []string // the floor's and the server's phases, in order, with their rounds
	for _, r := range results {
		servers[r.Server] = true
		if r.Round > 0 {
			measured = append(measured, fmt.Sprintf("%s/%d", r.Server, r.Round))
		}
		if r.Requests == 0 || r.Success == 0 {
			t.Errorf("%s at %d/s: nothing reviewed: %+v", r.Server, r.Rate, r)
		}
		if r.Server != "noop" && r.Server != "portcullis" {
			continue // the tenant's phases report latency only
		}
		if r.Requests == 0 || r.Success == 0 || r.CPUPerReview <= 0 || r.LoadCPUPerReview <= 0 || r.MachineBusy <= 0 || r.MachineBusy > 1 {
			t.Errorf("%s at %d/s: a figure is missing or out of range: %+v", r.Server, r.Rate, r)
		}
		// The server's own handling is read from its metrics; the floor has none.
		if (r.Server == "portcullis") != (r.OwnP99Ms > 0) {
			t.Errorf("%s at %d/s: own p99 %g ms: want one for the server only", r.Server, r.Rate, r.OwnP99Ms)
		}
	}
	if !servers["noop"] || !servers["portcullis"] || len(results) < 6 {
		t.Errorf("want the floor, the server and the tenant's phases; got %+v", results)
	}
	if want := []string{"noop/1", "portcullis/1", "portcullis/2", "noop/2"}; !slices.Equal(measured, want) {
		t.Errorf("phases %v, want %v", measured, want)
	}
}

// TestBucketAt reads the count of the runtime's first bucket at or above 10 ms, whose bound is
// not a round number, from samples as the server writes them.
func TestBucketAt(t *testing.T) {
	h := stoppingHistogram + `_bucket{le="`
	samples := map[string]float64{
		h + `0.0009175039999999999"}`: 40, h + `0.010485759999999998"}`: 47, h + `0.11744051199999998"}`: 49, h + `+Inf"}`: 50,
		stoppingHistogram + "_count": 50,
	}
	for _, c := range []struct {
		bound float64
		want  uint64
	}{{0.0001, 40}, {0.010, 47}, {0.0104, 47}, {0.0105, 49}, {1, 50}} {
		got, err := bucketAt(samples, stoppingHistogram, c.bound)
		if err != nil || got != c.want {
			t.Errorf("bucketAt(%g) = %d, %v; want %d", c.bound, got, err, c.want)
		}
	}
	if _, err := bucketAt(map[string]float64{}, stoppingHistogram, 0.01); err == nil {
		t.Error("no bucket: want an error")
	}
}

// procStatusMiBs reads every field asked for from one reading of the status file, and says
// when one is missing.
func TestProcStatusMiBs(t *testing.T) {
	mib, err := procStatusMiBs(os.Getpid(), "VmRSS", "RssAnon", "RssFile")
	if err != nil {
		t.Fatal(err)
	}
	if mib[0] <= 0 || mib[1] <= 0 || mib[1]+mib[2] > mib[0]+1 {
		t.Errorf("VmRSS, RssAnon, RssFile = %v MiB: want RSS at least anonymous plus file-backed", mib)
	}
	if _, err := procStatusMiBs(os.Getpid(), "VmRSS", "NoSuchField"); err == nil {
		t.Error("a missing field gave no error")
	}
}
