package report

import (
	"encoding/xml"
	"fmt"
	"io"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// JUnitSuites is a JUnit XML document, as CI systems read test results (Jenkins, GitLab,
// GitHub Actions that publish them).
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is one testsuite.
type JUnitSuite struct {
	Name     string      `xml:"name,attr"`
	File     string      `xml:"file,attr,omitempty"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []JUnitCase `xml:"testcase"`
}

// JUnitCase is one testcase: it passed unless it has a failure, an error or is skipped.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Failure   *JUnitMessage `xml:"failure,omitempty"`
	Error     *JUnitMessage `xml:"error,omitempty"`
	Skipped   *JUnitMessage `xml:"skipped,omitempty"`
}

// JUnitMessage is a failure, an error or a skip.
type JUnitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// Add adds a suite and counts its cases.
func (s *JUnitSuites) Add(suite JUnitSuite) {
	for _, c := range suite.Cases {
		suite.Tests++
		switch {
		case c.Failure != nil:
			suite.Failures++
		case c.Error != nil:
			suite.Errors++
		case c.Skipped != nil:
			suite.Skipped++
		}
	}
	s.Tests += suite.Tests
	s.Failures += suite.Failures
	s.Errors += suite.Errors
	s.Skipped += suite.Skipped
	s.Suites = append(s.Suites, suite)
}

// Write writes the document, indented, with the XML header.
func (s *JUnitSuites) Write(w io.Writer) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// writeJUnit writes one testsuite per input file and one testcase per result: a failed rule is
// a failure (its type the action: Deny, Warn or Audit), an evaluation error an error, a skipped
// rule skipped.
func (r *Report) writeJUnit(w io.Writer) error {
	doc := JUnitSuites{Name: "portcullis check"}
	var cur *JUnitSuite
	for _, g := range r.groups {
		if cur == nil || cur.Name != g.file {
			if cur != nil {
				doc.Add(*cur)
			}
			cur = &JUnitSuite{Name: g.file, File: g.file}
		}
		what := g.ref.String()
		if g.op != "" {
			what += " (" + string(g.op) + ")"
		}
		for _, res := range r.resultsOf(g) {
			name := res.Policy + "/" + res.Rule
			if res.Policy == "" {
				name = "no policy"
			}
			c := JUnitCase{Name: name, Classname: what, File: g.file, Line: res.Line}
			msg := &JUnitMessage{Message: res.Message, Type: string(res.Action), Text: res.Message}
			switch res.Result {
			case policies.Fail:
				msg.Text = fmt.Sprintf("%s: %s", res.Action, res.Message)
				c.Failure = msg
			case policies.Error:
				c.Error = msg
			case policies.Skip:
				c.Skipped = &JUnitMessage{Message: res.Message}
			}
			cur.Cases = append(cur.Cases, c)
		}
	}
	if cur != nil {
		doc.Add(*cur)
	}
	return doc.Write(w)
}
