package main

import (
	"math"
	"testing"
)

// TestBenchAPIServerRuns runs make bench-apiserver once, small.
func TestBenchAPIServerRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	if err := runAPIServer("../..", 50, 2); err != nil {
		t.Fatal(err)
	}
}

// TestQuantileBound: a quantile of a histogram read from the server is bounded by the smallest
// bucket that holds it, summed over phases.
func TestQuantileBound(t *testing.T) {
	name := reviewDuration
	at := func(counts ...float64) map[string]float64 {
		m := map[string]float64{}
		for i, le := range []string{"0.00025", "0.0005", "0.001", "+Inf"} {
			m[name+`_bucket{webhook="validate",le="`+le+`"}`] = counts[i]
		}
		m[name+`_bucket{webhook="mutate",le="0.001"}`] = 1000 // another series: not counted
		return m
	}
	h, err := histogram(nil).add(at(10, 60, 99, 100), at(0, 0, 0, 0), name)
	if err != nil {
		t.Fatal(err)
	}
	if h, err = h.add(at(110, 160, 199, 200), at(100, 100, 100, 100), name); err != nil { // a second phase: 10, 60, 99, 100 more
		t.Fatal(err)
	}
	for q, want := range map[float64]float64{0.05: 0.00025, 0.5: 0.0005, 0.99: 0.001, 0.995: math.Inf(1)} {
		if got := h.quantileBound(q); got != want {
			t.Errorf("q %g: %g, want %g (%v)", q, got, want, h)
		}
	}
	if h.count() != 200 {
		t.Errorf("count %g, want 200", h.count())
	}
	if got := (histogram{}).quantileBound(0.5); got != -1 {
		t.Errorf("empty: %g, want -1", got)
	}
	if _, err := histogram(nil).add(map[string]float64{}, nil, name); err == nil {
		t.Error("no series: no error")
	}
}
