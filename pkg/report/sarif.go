package report

import (
	"encoding/json"
	"io"
	"slices"
	"strings"

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

// writeSARIF writes SARIF 2.1.0: one rule per policy rule (r.Rules), its description as help,
// and one result per failed rule and evaluation error, located at the file and the line where
// the resource's document starts. The level follows the action: error for Deny (and evaluation
// errors), warning for Warn, note for Audit.
func (r *Report) writeSARIF(w io.Writer) error {
	rules := slices.Clone(r.Rules)
	index := map[string]int{}
	for i, rule := range rules {
		index[rule.ID()] = i
	}
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{Name: "Portcullis", InformationURI: "https://github.com/portcullis-dev/portcullis"}}, Results: []sarifResult{}}
	for _, res := range r.Results {
		if res.Policy == "" || (res.Result != policies.Fail && res.Result != policies.Error) {
			continue
		}
		id := res.Policy + "/" + res.Rule
		i, ok := index[id]
		if !ok { // a rule the caller did not describe: still listed
			i = len(rules)
			index[id] = i
			rules = append(rules, Rule{Policy: res.Policy, Rule: res.Rule})
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
		run.Results = append(run.Results, sarifResult{RuleID: id, RuleIndex: i, Level: level,
			Message: sarifText{Text: res.Message}, Locations: []sarifLocation{loc}})
	}
	run.Tool.Driver.Rules = make([]sarifRule, len(rules))
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
		run.Tool.Driver.Rules[i] = sr
	}
	for i := range run.Results {
		if run.Results[i].Message.Text == "" {
			run.Results[i].Message.Text = run.Results[i].RuleID
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: SARIFSchema, Version: "2.1.0", Runs: []sarifRun{run}})
}

// ClusterFile is the file of results judged on a live cluster (check --cluster): they have no
// file to locate.
const ClusterFile = "cluster"

// filepathToURI writes a path as a relative URI reference: forward slashes, spaces escaped.
func filepathToURI(p string) string {
	p = strings.ReplaceAll(p, `\`, "/")
	return strings.ReplaceAll(p, " ", "%20")
}
