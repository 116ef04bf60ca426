package policytest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/golden"

	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/report"
)

func runner(t *testing.T) *Runner {
	t.Helper()
	c, err := policies.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	return &Runner{Compiler: c, Now: func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }}
}

func runAll(t *testing.T, dir string) []Result {
	t.Helper()
	files, err := Find([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	r := runner(t)
	var out []Result
	for _, f := range files {
		out = append(out, r.Run(t.Context(), f))
	}
	return out
}

// TestSuites: every expectation of the pass suite holds (CREATE, UPDATE and DELETE requests,
// userInfo, namespace labels, params and variables, a mutation compared semantically), and
// each of the mismatch suite's wrong expectations is reported with want and got.
func TestSuites(t *testing.T) {
	results := runAll(t, "testdata")
	if len(results) != 2 {
		t.Fatalf("%d suites, want 2", len(results))
	}
	byName := map[string]*Result{}
	for i := range results {
		if results[i].Err != nil {
			t.Fatalf("%s: %v", results[i].File, results[i].Err)
		}
		byName[results[i].Name] = &results[i]
	}
	pass := byName["every-expectation-holds"]
	if pass == nil || len(pass.Cases) != 6 || pass.Failed() != 0 {
		t.Fatalf("pass suite: %+v", pass)
	}
	mismatch := byName["some-expectations-fail"]
	var got []string
	for _, c := range mismatch.Cases {
		got = append(got, strings.Join(c.Problems, "; "))
	}
	want := []string{
		"",
		"want fail with action Warn, got action Deny",
		"want pass, got fail",
		"want skip, got no result: the policy does not apply to the resource",
		"the mutated object differs from ../api-slow-probes.yaml:\nspec.containers[0].livenessProbe.periodSeconds: want 30, got 20",
	}
	if strings.Join(got, "\n--\n") != strings.Join(want, "\n--\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n--\n"), strings.Join(want, "\n--\n"))
	}
	if s := Summarize(results); s != (Summary{Suites: 2, Cases: 11, Passed: 7, Failed: 4}) {
		t.Errorf("summary %+v", s)
	}
}

// TestGoldenOutputs pins the text, JSON and JUnit outputs; the JUnit document is read back as
// XML and its counts checked.
func TestGoldenOutputs(t *testing.T) {
	results := runAll(t, "testdata")
	results = append(results, Result{File: "broken/portcullis-test.yaml", Err: &BadSuiteError{File: "broken/portcullis-test.yaml", Err: errors.New("results: Required value")}})
	for _, format := range []string{"text", "json", "junit"} {
		var b bytes.Buffer
		if err := Write(&b, format, results); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, "suites."+format, b.String())
		if format == "junit" {
			var doc report.JUnitSuites
			if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
				t.Fatalf("junit: %v", err)
			}
			if doc.Tests != 12 || doc.Failures != 4 || doc.Errors != 1 || len(doc.Suites) != 3 {
				t.Errorf("junit counts: %d tests, %d failures, %d errors, %d suites", doc.Tests, doc.Failures, doc.Errors, len(doc.Suites))
			}
		}
	}
}

// TestBadSuites: a suite that cannot be run is bad input, named with its field; an empty suite
// is one.
func TestBadSuites(t *testing.T) {
	head := "apiVersion: portcullis.dev/v1alpha1\nkind: Test\nmetadata: {name: s}\n"
	ok := "policies: [" + abs(t, "testdata/policies.yaml") + "]\nresources: [" + abs(t, "testdata/web.yaml") + "]\n"
	result := "results:\n- {policy: team, rule: known-team, resource: {kind: Deployment, name: web}, result: pass}\n"
	for _, tt := range []struct{ name, suite, want string }{
		{"empty", head + ok, "results: Required value: an empty suite tests nothing"},
		{"unknown field", head + ok + result + "resource: [x]\n", `unknown field "resource"`},
		{"wrong kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: s}\n" + ok + result, "kind: Invalid value: \"v1 Pod\": want portcullis.dev/v1alpha1 Test"},
		{"bad result", head + ok + strings.Replace(result, "result: pass", "result: passed", 1), `results[0].result: Unsupported value: "passed"`},
		{"no policies", head + "resources: [x.yaml]\n" + result, "policies: Required value"},
		{"missing file", head + "policies: [nowhere.yaml]\nresources: [x.yaml]\n" + result, "nowhere.yaml: no such file or directory"},
		{"unknown policy", head + ok + strings.Replace(result, "policy: team", "policy: teams", 1), `results[0]: policy "teams" is not among the suite's policies`},
		{"unknown rule", head + ok + strings.Replace(result, "rule: known-team", "rule: known", 1), `results[0]: policy "team" has no rule "known"`},
		{"unknown resource", head + ok + strings.Replace(result, "name: web", "name: api", 1), "results[0]: no CREATE of Deployment api among the suite's resources and requests"},
		{"twice", head + "policies: [" + abs(t, "testdata/policies.yaml") + "]\nresources: [" + abs(t, "testdata/web.yaml") + ", " + abs(t, "testdata/web.yaml") + "]\n" + result, "CREATE apps/v1 Deployment shop/web is also judged from"},
		{"update without old", head + ok + "requests: [{operation: UPDATE, object: x.yaml}]\n" + result, "requests[0].oldObject: Required value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), FileName)
			if err := os.WriteFile(file, []byte(tt.suite), 0o600); err != nil {
				t.Fatal(err)
			}
			res := runner(t).Run(t.Context(), file)
			var bad *BadSuiteError
			if !errors.As(res.Err, &bad) || !strings.Contains(res.Err.Error(), tt.want) {
				t.Fatalf("got %v, want a bad suite naming %q", res.Err, tt.want)
			}
			if !strings.HasPrefix(res.Err.Error(), file+": ") {
				t.Errorf("the error does not name the suite's file: %v", res.Err)
			}
		})
	}
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestDiff: differences are listed by path, extra and missing keys included.
func TestDiff(t *testing.T) {
	want := map[string]any{"a": map[string]any{"b": []any{1.0, "x"}, "gone": true}, "k.e/y": "v"}
	got := map[string]any{"a": map[string]any{"b": []any{1.0, "y"}, "new": 2.0}, "k.e/y": "v"}
	var out []string
	diff("", want, got, &out)
	wantOut := `a.b[1]: want "x", got "y"
a.gone: want true, got nothing
a.new: want nothing, got 2`
	if strings.Join(out, "\n") != wantOut {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(out, "\n"), wantOut)
	}
}
