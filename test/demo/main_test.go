package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestElidedMatch(t *testing.T) {
	for _, tc := range []struct {
		want, got string
		ok        bool
	}{
		{"DENIED a  [p/r] msg", "DENIED a  [p/r] msg", true},
		{"DENIED a  [p/r] msg", "DENIED a  [p/r] other", false},
		{"WARNED a  [p/r] violates (...) | [q/s] x", "WARNED a  [p/r] violates (long detail) | [q/s] x", true},
		{"WARNED a  [p/r] violates ...; ...", "WARNED a  [p/r] violates one; two; three", true},
		{"WARNED a  [p/r] violates ... end", "WARNED a  [p/r] violates one", false},
		{"MUTATED b ... x", "ADMITTED b y x", false},
	} {
		if got := elidedMatch(tc.want, tc.got); got != tc.ok {
			t.Errorf("elidedMatch(%q, %q) = %t, want %t", tc.want, tc.got, got, tc.ok)
		}
	}
}

// The demo fails when the README's sample of its output drifts from what it prints.
func TestCheckReadme(t *testing.T) {
	readme := filepath.Join(t.TempDir(), "README.md")
	sample := "```\nDENIED    examples/workloads/api.yaml  CLI agrees  [p/r] ...\nADMITTED  examples/workloads/b.yaml    CLI agrees  (3 audit findings)\n```\n"
	if err := os.WriteFile(readme, []byte(sample), 0o600); err != nil {
		t.Fatal(err)
	}
	printed := []string{"DENIED    examples/workloads/api.yaml  CLI agrees  [p/r] too few replicas", "ADMITTED  examples/workloads/b.yaml    CLI agrees  (3 audit findings)"}
	if err := checkReadme(readme, printed); err != nil {
		t.Errorf("a matching sample: %v", err)
	}
	printed[1] = strings.Replace(printed[1], "3 audit", "4 audit", 1)
	if err := checkReadme(readme, printed); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("a stale sample: %v", err)
	}
	if err := checkReadme(readme, printed[:1]); err == nil {
		t.Error("a sample of more lines than printed passed")
	}
}
