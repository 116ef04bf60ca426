package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
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
