package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// sample is a report of every kind of result: a Deny, a Warn and an Audit failure, an
// evaluation error, a pass and a skip, over two files.
func sample() *Report {
	web := policies.Ref{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "shop", Name: "web"}
	job := policies.Ref{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "job"}
	r := &Report{Rules: []Rule{
		{Policy: "pss", Rule: "baseline", Title: "Pod Security baseline", Description: "Meet the baseline level.", Category: "Pod Security", Severity: "high"},
		{Policy: "pss", Rule: "labels"},
	}}
	r.AddRequest(Location{File: "deploy/web.yaml", Line: 3}, v1alpha1.Create, web, []policies.Result{
		{Policy: "pss", Rule: "baseline", Resource: web, Result: policies.Fail, Action: v1alpha1.Deny, Message: "privileged"},
		{Policy: "pss", Rule: "labels", Resource: web, Result: policies.Fail, Action: v1alpha1.Warn, Message: "missing team"},
		{Policy: "other", Rule: "tag", Resource: web, Result: policies.Fail, Action: v1alpha1.Audit, Message: "latest"},
	})
	r.AddRequest(Location{File: "deploy/job.yaml", Line: 1}, v1alpha1.Update, job, []policies.Result{
		{Policy: "pss", Rule: "baseline", Resource: job, Result: policies.Pass, Action: v1alpha1.Deny},
		{Policy: "sig", Rule: "cosign", Resource: job, Result: policies.Error, Action: v1alpha1.Deny, Message: "registry unreachable"},
		{Policy: "pss", Rule: "labels", Resource: job, Result: policies.Skip, Action: v1alpha1.Deny, Message: "exempted"},
	})
	return r
}

// sarifSchema is the SARIF 2.1.0 JSON schema (OASIS, errata 01), against which documents are
// validated.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SARIFSchema, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(SARIFSchema)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSARIF: the document is valid SARIF 2.1.0 (and the schema check fails on an invalid
// one); each rule is listed once with its description as help; each failure and error is a
// result at its file and line, at the level its action gives.
func TestSARIF(t *testing.T) {
	var b bytes.Buffer
	if err := sample().Write(&b, "sarif"); err != nil {
		t.Fatal(err)
	}
	schema := sarifSchema(t)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Fatalf("invalid SARIF: %v\n%s", err, b.String())
	}
	// And what the CLI prints for the examples and the library (its golden file).
	golden, err := os.Open("../../cmd/kubectl-portcullis/app/testdata/golden/check.sarif")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = golden.Close() }()
	cli, err := jsonschema.UnmarshalJSON(golden)
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(cli); err != nil {
		t.Errorf("the CLI's SARIF (check.sarif) is invalid: %v", err)
	}
	// The check can fail: a result without a message, and a level SARIF does not have.
	for _, broken := range []string{`"message": {`, `"level": "note"`} {
		bad := strings.Replace(b.String(), broken, map[string]string{`"message": {`: `"msg": {`, `"level": "note"`: `"level": "notice"`}[broken], 1)
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(bad))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(doc); err == nil {
			t.Errorf("the schema accepted a document with %s changed", broken)
		}
	}

	var log sarifLog
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	var ids []string
	for _, r := range run.Tool.Driver.Rules {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, " ") != "pss/baseline pss/labels other/tag sig/cosign" {
		t.Errorf("rules %v", ids)
	}
	if h := run.Tool.Driver.Rules[0].Help.Text; h != "Meet the baseline level." {
		t.Errorf("help %q, want the description", h)
	}
	var got []string
	for _, r := range run.Results {
		loc := r.Locations[0].PhysicalLocation
		got = append(got, r.RuleID+" "+r.Level+" "+loc.ArtifactLocation.URI+":"+itoa(loc.Region.StartLine)+" "+ids[r.RuleIndex])
	}
	want := []string{
		"pss/baseline error deploy/web.yaml:3 pss/baseline",
		"pss/labels warning deploy/web.yaml:3 pss/labels",
		"other/tag note deploy/web.yaml:3 other/tag",
		"sig/cosign error deploy/job.yaml:1 sig/cosign",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestJUnit: one testsuite per file, one testcase per result; failures, errors and skips
// counted, each failure typed by its action.
func TestJUnit(t *testing.T) {
	var b bytes.Buffer
	if err := sample().Write(&b, "junit"); err != nil {
		t.Fatal(err)
	}
	var doc JUnitSuites
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if doc.Tests != 6 || doc.Failures != 3 || doc.Errors != 1 || doc.Skipped != 1 || len(doc.Suites) != 2 {
		t.Fatalf("counts: %+v\n%s", doc, b.String())
	}
	c := doc.Suites[0].Cases[1]
	if c.Name != "pss/labels" || c.Classname != "apps/v1 Deployment shop/web" || c.Failure == nil || c.Failure.Type != "Warn" || c.Line != 3 {
		t.Errorf("case %+v", c)
	}
	if doc.Suites[1].Cases[0].Classname != "v1 Pod shop/job (UPDATE)" {
		t.Errorf("an UPDATE's class %q", doc.Suites[1].Cases[0].Classname)
	}
}

// junitWhole is the JUnit document of r as JUnitSuites.Write encodes it whole: what the
// streamed writer must write.
func junitWhole(t *testing.T, r *Report) string {
	t.Helper()
	doc := JUnitSuites{Name: "portcullis check"}
	var cur *JUnitSuite
	for _, g := range r.groups {
		if cur == nil || cur.Name != g.file {
			if cur != nil {
				doc.Add(*cur)
			}
			cur = &JUnitSuite{Name: g.file, File: g.file}
		}
		results := r.resultsOf(g)
		for i := range results {
			cur.Cases = append(cur.Cases, junitCase(g, &results[i]))
		}
	}
	if cur != nil {
		doc.Add(*cur)
	}
	var b bytes.Buffer
	if err := doc.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// sarifWhole is the SARIF document of r as an encoding/json Encoder indenting by two spaces
// encodes it whole.
func sarifWhole(t *testing.T, r *Report) string {
	t.Helper()
	st := newSARIFStream(r.Rules)
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "Portcullis", InformationURI: "https://github.com/portcullis-dev/portcullis"}}, Results: []sarifResult{}}
	for i := range r.Results {
		res := &r.Results[i]
		if res.Policy != "" && (res.Result == policies.Fail || res.Result == policies.Error) {
			run.Results = append(run.Results, st.result(res))
		}
	}
	run.Tool.Driver.Rules = sarifRules(st.rules)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sarifLog{Schema: SARIFSchema, Version: "2.1.0", Runs: []sarifRun{run}}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestJUnitAndSARIFWrittenAsWhole: JUnit and SARIF, written an entry at a time with their counts
// and rules put before the entries at the end, are what encoding the whole document writes, for
// the sample, for a report with no results, and for one whose entries outgrow the spool's
// memory (so that they are copied back from its file). Write and a streaming report both write
// them this way (TestStreamWritesWhatWriteWrites).
func TestJUnitAndSARIFWrittenAsWhole(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	large := &Report{Rules: []Rule{{Policy: "p", Rule: "r0"}}}
	message := strings.Repeat("the image is not signed <by us> & ", 8)
	for i := range 30000 {
		pod := policies.Ref{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-" + strconv.Itoa(i)}
		large.AddRequest(Location{File: "pods-" + strconv.Itoa(i/10000) + ".yaml", Line: 1 + 5*(i%10000)}, v1alpha1.Create, pod, []policies.Result{
			{Policy: "p", Rule: "r" + strconv.Itoa(i%3), Resource: pod, Result: policies.Fail, Action: v1alpha1.Deny, Message: message},
			{Policy: "p", Rule: "ok", Resource: pod, Result: policies.Pass, Action: v1alpha1.Deny},
		})
	}
	for name, r := range map[string]*Report{"sample": sample(), "empty": {}, "large": large} {
		for format, whole := range map[string]func(*testing.T, *Report) string{"junit": junitWhole, "sarif": sarifWhole} {
			var got bytes.Buffer
			if err := r.Write(&got, format); err != nil {
				t.Fatalf("%s, -o %s: %v", name, format, err)
			}
			if want := whole(t, r); got.String() != want {
				t.Errorf("%s, -o %s: %d bytes written, %d encoded whole; from byte %d:\n%.400s\nwant:\n%.400s", name, format, got.Len(), len(want),
					firstDifference(got.String(), want), got.String()[firstDifference(got.String(), want):], want[firstDifference(got.String(), want):])
			}
			if name == "large" && got.Len() <= 8<<20 {
				t.Errorf("-o %s of the large report is %d bytes: within the spool's memory", format, got.Len())
			}
		}
	}
	if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// firstDifference is the index of the first byte where a and b differ.
func firstDifference(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
