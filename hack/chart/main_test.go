package main

import "testing"

// TestChartIsCurrent fails when charts/portcullis is not what make chart writes from the
// kustomize install: the two cannot drift.
func TestChartIsCurrent(t *testing.T) {
	files, err := stale("../..")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) > 0 {
		t.Errorf("the chart is stale, run make chart and commit it: %v", files)
	}
}
