package policytest

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/portcullis-dev/portcullis/pkg/report"
)

// Summary counts suites and expectations.
type Summary struct {
	Suites int `json:"suites"`
	// Bad are the suites that could not be run.
	Bad    int `json:"bad"`
	Cases  int `json:"cases"`
	Passed int `json:"passed"`
	Failed int `json:"failed"`
}

// Summarize counts the results.
func Summarize(results []Result) Summary {
	var s Summary
	for i := range results {
		r := &results[i]
		s.Suites++
		if r.Err != nil {
			s.Bad++
			continue
		}
		s.Cases += len(r.Cases)
		s.Failed += r.Failed()
	}
	s.Passed = s.Cases - s.Failed
	return s
}

// Write writes the results in format: text, json or junit.
func Write(w io.Writer, format string, results []Result) error {
	switch format {
	case "json":
		return writeJSON(w, results)
	case "junit":
		return writeJUnit(w, results)
	}
	return writeText(w, results)
}

// writeText prints one line per suite, and under it every expectation that does not hold:
// want against got, with the message.
func writeText(w io.Writer, results []Result) error {
	var b strings.Builder
	for i := range results {
		r := &results[i]
		if r.Err != nil {
			fmt.Fprintf(&b, "ERROR %s\n", strings.ReplaceAll(r.Err.Error(), "\n", "\n      "))
			continue
		}
		failed := r.Failed()
		status := "PASS "
		if failed > 0 {
			status = "FAIL "
		}
		fmt.Fprintf(&b, "%s %s: %s (%d/%d)\n", status, r.File, r.Name, len(r.Cases)-failed, len(r.Cases))
		for j := range r.Cases {
			c := &r.Cases[j]
			if c.OK() {
				continue
			}
			fmt.Fprintf(&b, "      %s\n", c.Name())
			for _, p := range c.Problems {
				fmt.Fprintf(&b, "        %s\n", strings.ReplaceAll(p, "\n", "\n        "))
			}
			if c.Got != nil && c.Got.Message != "" {
				fmt.Fprintf(&b, "        message: %s\n", c.Got.Message)
			}
		}
	}
	s := Summarize(results)
	fmt.Fprintf(&b, "\n%s, %s: %d passed, %d failed", plural(s.Suites, "suite"), plural(s.Cases, "case"), s.Passed, s.Failed)
	if s.Bad > 0 {
		fmt.Fprintf(&b, "; %s could not run", plural(s.Bad, "suite"))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type jsonSuite struct {
	File  string `json:"file"`
	Name  string `json:"name,omitempty"`
	Error string `json:"error,omitempty"`
	Cases []Case `json:"cases"`
}

func writeJSON(w io.Writer, results []Result) error {
	out := struct {
		Suites  []jsonSuite `json:"suites"`
		Summary Summary     `json:"summary"`
	}{Suites: []jsonSuite{}, Summary: Summarize(results)}
	for i := range results {
		r := &results[i]
		js := jsonSuite{File: r.File, Name: r.Name, Cases: r.Cases}
		if r.Err != nil {
			js.Error = r.Err.Error()
		}
		if js.Cases == nil {
			js.Cases = []Case{}
		}
		out.Suites = append(out.Suites, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// writeJUnit writes one testsuite per suite file and one testcase per expectation; a suite that
// cannot run is one errored case, so that CI shows why.
func writeJUnit(w io.Writer, results []Result) error {
	doc := report.JUnitSuites{Name: "portcullis test"}
	for i := range results {
		r := &results[i]
		s := report.JUnitSuite{Name: r.Name, File: r.File}
		if r.Err != nil {
			s.Name = r.File
			s.Cases = []report.JUnitCase{{Name: "load", Classname: r.File, File: r.File,
				Error: &report.JUnitMessage{Message: firstLine(r.Err.Error()), Type: "BadSuite", Text: r.Err.Error()}}}
		}
		for j := range r.Cases {
			c := &r.Cases[j]
			jc := report.JUnitCase{Name: c.Name(), Classname: r.Name, File: r.File}
			if !c.OK() {
				text := strings.Join(c.Problems, "\n")
				if c.Got != nil && c.Got.Message != "" {
					text += "\nmessage: " + c.Got.Message
				}
				jc.Failure = &report.JUnitMessage{Message: firstLine(c.Problems[0]), Type: "Mismatch", Text: text}
			}
			s.Cases = append(s.Cases, jc)
		}
		doc.Add(s)
	}
	return doc.Write(w)
}

func firstLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
