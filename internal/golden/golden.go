// Package golden compares a test's output with a golden file under testdata/golden, and with
// -update (make golden) rewrites the file instead.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// Check fails t when got differs from testdata/golden/name; with -update it writes got there.
func Check(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil { //nolint:gosec // golden files are world-readable
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make golden)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run make golden and review the diff):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
