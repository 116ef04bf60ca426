package report

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"

	"github.com/portcullis-dev/portcullis/internal/spool"
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
		suite.count(c)
	}
	s.count(suite)
	s.Suites = append(s.Suites, suite)
}

// count counts c among the suite's cases.
func (s *JUnitSuite) count(c JUnitCase) {
	s.Tests++
	switch {
	case c.Failure != nil:
		s.Failures++
	case c.Error != nil:
		s.Errors++
	case c.Skipped != nil:
		s.Skipped++
	}
}

// count adds a suite's counts to the document's.
func (s *JUnitSuites) count(suite JUnitSuite) {
	s.Tests += suite.Tests
	s.Failures += suite.Failures
	s.Errors += suite.Errors
	s.Skipped += suite.Skipped
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

// writeJUnit writes one testsuite per input file and one testcase per result (junitCase).
func (r *Report) writeJUnit(w io.Writer) error {
	j := &junitStream{}
	defer j.close()
	for _, g := range r.groups {
		j.add(g, r.resultsOf(g))
	}
	return j.finish(w)
}

// junitCase is the testcase of a result of g's resource: a failed rule is a failure (its type
// the action: Deny, Warn or Audit), an evaluation error an error, a skipped rule skipped.
func junitCase(g group, res *Result) JUnitCase {
	what := g.ref.String()
	if g.op != "" {
		what += " (" + string(g.op) + ")"
	}
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
	return c
}

// junitStream writes the JUnit document of a report a resource at a time, as JUnitSuites.Write
// would write it whole: each testcase, encoded, goes to a spool, and only each suite's counts
// and place in it are kept, until finish writes the start tags, which carry the counts, around
// the cases.
type junitStream struct {
	cases  spool.Spool
	enc    *xml.Encoder // into cases (it flushes each case)
	suites []junitSuiteAt
	err    error // the first case that did not encode
}

// junitSuiteAt is a suite's name and counts, and where its cases are in the spool.
type junitSuiteAt struct {
	JUnitSuite // without its cases
	from, to   int64
}

// junitCaseElement is a testcase's element.
var junitCaseElement = xml.StartElement{Name: xml.Name{Local: "testcase"}}

// junitCaseIndent is a testcase's indentation in the document: testsuites, testsuite, testcase.
const junitCaseIndent = "    "

// add writes the testcases of g's results; a resource read from another file than the last
// starts a testsuite.
func (j *junitStream) add(g group, results []Result) {
	if n := len(j.suites); n == 0 || j.suites[n-1].Name != g.file {
		j.suites = append(j.suites, junitSuiteAt{JUnitSuite: JUnitSuite{Name: g.file, File: g.file}, from: j.cases.Len()})
	}
	suite := &j.suites[len(j.suites)-1]
	for i := range results {
		c := junitCase(g, &results[i])
		if j.enc == nil {
			// One encoder for every case: it starts each after the first on a line of its own.
			_, _ = j.cases.Write([]byte{'\n'})
			j.enc = xml.NewEncoder(&j.cases)
			j.enc.Indent(junitCaseIndent, "  ")
		}
		if err := j.enc.EncodeElement(c, junitCaseElement); err != nil && j.err == nil {
			j.err = err
		}
		suite.count(c)
	}
	suite.to = j.cases.Len()
}

// finish writes the document: the XML header, the testsuites and each testsuite with their
// counts, and the cases in between.
func (j *junitStream) finish(w io.Writer) error {
	if j.err != nil {
		return j.err
	}
	doc := JUnitSuites{Name: "portcullis check"}
	for _, s := range j.suites {
		doc.count(s.JUnitSuite)
	}
	bw := bufio.NewWriter(w)
	_, _ = bw.WriteString(xml.Header)
	start, end, err := xmlTags(doc, "testsuites")
	if err != nil {
		return err
	}
	_, _ = bw.Write(start)
	for _, s := range j.suites {
		sstart, send, err := xmlTags(s.JUnitSuite, "testsuite")
		if err != nil {
			return err
		}
		_, _ = bw.WriteString("\n  ")
		_, _ = bw.Write(sstart)
		if s.to > s.from {
			if err := j.cases.CopyRange(bw, s.from, s.to); err != nil {
				return err
			}
			_, _ = bw.WriteString("\n  ")
		}
		_, _ = bw.Write(send)
	}
	if len(j.suites) > 0 {
		_, _ = bw.WriteString("\n")
	}
	_, _ = bw.Write(end)
	_, _ = bw.WriteString("\n")
	return bw.Flush()
}

// close drops the spooled cases.
func (j *junitStream) close() { _ = j.cases.Close() }

// xmlTags are the start and end tags that encoding v (with no children) writes: name's element.
func xmlTags(v any, name string) (start, end []byte, err error) {
	var buf bytes.Buffer
	if err := xml.NewEncoder(&buf).EncodeElement(v, xml.StartElement{Name: xml.Name{Local: name}}); err != nil {
		return nil, nil, err
	}
	b := buf.Bytes()
	end = []byte("</" + name + ">")
	if !bytes.HasSuffix(b, end) {
		return nil, nil, fmt.Errorf("junit: %s encoded as %q", name, b)
	}
	return b[:len(b)-len(end)], end, nil
}
