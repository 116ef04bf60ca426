package main

import (
	"os"
	"testing"
)

// TestReadmeTableIsCurrent fails when the README's library table is not what the policies'
// annotations give: run make docs.
func TestReadmeTableIsCurrent(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := render("../../manifests/library", readme)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(readme) {
		t.Error("the README's library table is stale: run make docs and commit the README")
	}
}
