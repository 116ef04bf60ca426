package app

import (
	"os"
	"strings"
	"testing"
)

// readmeBlocks returns the fenced blocks of the README, without their fences.
func readmeBlocks(t *testing.T) [][]string {
	t.Helper()
	data, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]string
	var cur []string
	in := false
	for line := range strings.SplitSeq(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "```") && !in:
			in, cur = true, nil
		case strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// blockStarting returns the README block whose first line starts with prefix.
func blockStarting(t *testing.T, prefix string) []string {
	t.Helper()
	for _, b := range readmeBlocks(t) {
		if len(b) > 0 && strings.HasPrefix(b[0], prefix) {
			return b
		}
	}
	t.Fatalf("the README has no block starting with %q", prefix)
	return nil
}

// TestReadmeSamples: the README's samples of the CLI's output are the CLI's output (the golden
// files, which the golden tests check against the CLI), line for line; "..." stands for lines
// left out.
func TestReadmeSamples(t *testing.T) {
	for _, tc := range []struct {
		block, golden, prefix string // prefix: how the golden file names the input files
	}{
		{"examples/workloads/debug-pod.yaml: v1 Pod", "check.text", "../../../"},
		{"testdata/bad/invalid-policy.yaml: ClusterPolicy", "error-invalid-policy.txt", ""},
		{"FAIL  testdata/mismatch/portcullis-test.yaml", "../../../../../pkg/policytest/testdata/golden/suites.text", ""},
	} {
		data, err := os.ReadFile("testdata/golden/" + tc.golden)
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]bool{}
		for l := range strings.SplitSeq(string(data), "\n") {
			lines[strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), tc.prefix))] = true
		}
		for _, l := range blockStarting(t, tc.block) {
			if l = strings.TrimSpace(l); l == "..." || l == "" {
				continue
			}
			if !lines[l] {
				t.Errorf("README line not in the CLI's output (%s; run make golden, then mend the README):\n%s", tc.golden, l)
			}
		}
	}
}

// TestReadmeSuiteExample: the README's complete test suite is a suite the package's tests run.
func TestReadmeSuiteExample(t *testing.T) {
	want, err := os.ReadFile("../../../pkg/policytest/testdata/pass/portcullis-test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range readmeBlocks(t) {
		if len(b) > 1 && b[1] == "kind: Test" {
			if got := strings.Join(b, "\n") + "\n"; got != string(want) {
				t.Errorf("the README's suite differs from pkg/policytest/testdata/pass/portcullis-test.yaml:\n%s", got)
			}
			return
		}
	}
	t.Error("the README has no test suite example")
}
