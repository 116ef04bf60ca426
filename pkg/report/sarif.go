package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/portcullis-dev/portcullis/internal/spool"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Rule describes one rule of a policy: a SARIF rule.
type Rule struct {
	Policy, Rule                           string
	Title, Description, Category, Severity string
}

// ID is the rule's id in SARIF: "policy/rule".
func (r Rule) ID() string { return r.Policy + "/" + r.Rule }

// RulesOf describes every rule of the engine's policies, in policy order.
func RulesOf(engine *policies.Engine) []Rule {
	var rules []Rule
	for p := range engine.Policies() {
		for _, name := range p.RuleNames() {
			rules = append(rules, Rule{Policy: p.Name, Rule: name, Title: p.Title, Description: p.Description, Category: p.Category, Severity: p.Severity})
		}
	}
	return rules
}

// SARIFSchema is the schema of the SARIF documents written.
const SARIFSchema = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

// The parts of SARIF 2.1.0 written here.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool    sarifTool     `json:"tool"`
		Results []sarifResult `json:"results"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		InformationURI string      `json:"informationUri"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID               string          `json:"id"`
		ShortDescription sarifText       `json:"shortDescription"`
		FullDescription  *sarifText      `json:"fullDescription,omitempty"`
		Help             sarifText       `json:"help"`
		Properties       *sarifRuleProps `json:"properties,omitempty"`
	}
	sarifRuleProps struct {
		Category string   `json:"category,omitempty"`
		Severity string   `json:"severity,omitempty"`
		Tags     []string `json:"tags,omitempty"`
	}
	sarifText struct {
		Text string `json:"text"`
	}
	sarifResult struct {
		RuleID    string          `json:"ruleId"`
		RuleIndex int             `json:"ruleIndex"`
		Level     string          `json:"level"`
		Message   sarifText       `json:"message"`
		Locations []sarifLocation `json:"locations"`
	}
	sarifLocation struct {
		PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
		LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
	}
	sarifPhysical struct {
		ArtifactLocation sarifArtifact `json:"artifactLocation"`
		Region           *sarifRegion  `json:"region,omitempty"`
	}
	sarifArtifact struct {
		URI string `json:"uri"`
	}
	sarifRegion struct {
		StartLine int `json:"startLine"`
	}
	sarifLogical struct {
		Name               string `json:"name"`
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

// writeSARIF writes SARIF 2.1.0 (sarifStream).
func (r *Report) writeSARIF(w io.Writer) error {
	st := newSARIFStream(r.Rules)
	defer st.close()
	for i := range r.Results {
		st.add(&r.Results[i])
	}
	return st.finish(w)
}

// sarifStream writes SARIF 2.1.0 a result at a time: one rule per policy rule (the report's
// Rules, then any other a result names, as it is met), its description as help, and one result
// per failed rule and evaluation error, located at the file and the line where the resource's
// document starts. The level follows the action: error for Deny (and evaluation errors), warning
// for Warn, note for Audit. Each result, encoded, goes to a spool; finish writes the document an
// encoding/json Encoder indenting by two spaces writes, the rules (known only then) before the
// results.
type sarifStream struct {
	rules   []Rule
	index   map[string]int // of rules, by ID
	results spool.Spool
	n       int   // results written
	err     error // the first that did not encode
}

func newSARIFStream(rules []Rule) *sarifStream {
	st := &sarifStream{rules: slices.Clone(rules), index: map[string]int{}}
	for i, rule := range st.rules {
		st.index[rule.ID()] = i
	}
	return st
}

// sarifResultIndent is a result's indentation in the document: the log, runs, a run, results.
const sarifResultIndent = "        "

// add writes res's SARIF result, if it has one (a failure or an error of a policy's rule).
func (st *sarifStream) add(res *Result) {
	if res.Policy == "" || (res.Result != policies.Fail && res.Result != policies.Error) {
		return
	}
	b, err := json.MarshalIndent(st.result(res), sarifResultIndent, "  ")
	if err != nil {
		if st.err == nil {
			st.err = err
		}
		return
	}
	if st.n > 0 {
		_, _ = st.results.Write([]byte{','})
	}
	_, _ = st.results.Write([]byte("\n" + sarifResultIndent))
	if _, err := st.results.Write(b); err != nil && st.err == nil {
		st.err = err
	}
	st.n++
}

// result is res's SARIF result; a rule not described yet is added.
func (st *sarifStream) result(res *Result) sarifResult {
	id := res.Policy + "/" + res.Rule
	i, ok := st.index[id]
	if !ok { // a rule the caller did not describe: still listed
		i = len(st.rules)
		st.index[id] = i
		st.rules = append(st.rules, Rule{Policy: res.Policy, Rule: res.Rule})
	}
	level := "error"
	if res.Result == policies.Fail {
		switch res.Action {
		case v1alpha1.Warn:
			level = "warning"
		case v1alpha1.Audit:
			level = "note"
		}
	}
	loc := sarifLocation{LogicalLocations: []sarifLogical{{Name: res.Resource.Name, FullyQualifiedName: res.Resource.String(), Kind: "resource"}}}
	if res.File != "" && res.File != "-" && res.File != ClusterFile {
		loc.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: filepathToURI(res.File)}}
		if res.Line > 0 {
			loc.PhysicalLocation.Region = &sarifRegion{StartLine: res.Line}
		}
	}
	msg := res.Message
	if msg == "" {
		msg = id
	}
	return sarifResult{RuleID: id, RuleIndex: i, Level: level, Message: sarifText{Text: msg}, Locations: []sarifLocation{loc}}
}

// sarifRules are rules as SARIF describes them.
func sarifRules(rules []Rule) []sarifRule {
	out := make([]sarifRule, len(rules))
	for i, rule := range rules {
		sr := sarifRule{ID: rule.ID(), ShortDescription: sarifText{Text: rule.ID()}, Help: sarifText{Text: rule.ID()}}
		if rule.Title != "" {
			sr.ShortDescription.Text = rule.Title
		}
		if rule.Description != "" {
			sr.FullDescription, sr.Help = &sarifText{Text: rule.Description}, sarifText{Text: rule.Description}
		}
		if rule.Category != "" || rule.Severity != "" {
			sr.Properties = &sarifRuleProps{Category: rule.Category, Severity: rule.Severity}
			if rule.Category != "" {
				sr.Properties.Tags = []string{rule.Category}
			}
		}
		out[i] = sr
	}
	return out
}

// sarifEmptyResults is how the document with no results writes them; finish puts the spooled
// results in it. No string value can hold it: a quote within one is escaped.
const sarifEmptyResults = `"results": []`

// finish writes the document: the log and its run with every rule met, and the results.
func (st *sarifStream) finish(w io.Writer) error {
	if st.err != nil {
		return st.err
	}
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "Portcullis", InformationURI: "https://github.com/portcullis-dev/portcullis",
		Rules: sarifRules(st.rules)}}, Results: []sarifResult{}}
	var doc bytes.Buffer
	enc := json.NewEncoder(&doc)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sarifLog{Schema: SARIFSchema, Version: "2.1.0", Runs: []sarifRun{run}}); err != nil {
		return err
	}
	i := bytes.Index(doc.Bytes(), []byte(sarifEmptyResults))
	if i < 0 {
		return errors.New("sarif: the document has no results array")
	}
	open := i + len(sarifEmptyResults) - 1 // after the '['
	bw := bufio.NewWriter(w)
	_, _ = bw.Write(doc.Bytes()[:open])
	if st.n > 0 {
		if err := st.results.CopyRange(bw, 0, st.results.Len()); err != nil {
			return err
		}
		_, _ = bw.WriteString("\n      ")
	}
	_, _ = bw.Write(doc.Bytes()[open:])
	return bw.Flush()
}

// close drops the spooled results.
func (st *sarifStream) close() { _ = st.results.Close() }

// ClusterFile is the file of results judged on a live cluster (check --cluster): they have no
// file to locate.
const ClusterFile = "cluster"

// filepathToURI writes a path as a relative URI reference: forward slashes, spaces escaped.
func filepathToURI(p string) string {
	p = strings.ReplaceAll(p, `\`, "/")
	return strings.ReplaceAll(p, " ", "%20")
}
