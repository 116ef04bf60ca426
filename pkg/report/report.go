package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unique"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Result is one result of the -o json schema (the CLI contract in the README).
type Result struct {
	Policy   string       `json:"policy"`
	Rule     string       `json:"rule"`
	Resource policies.Ref `json:"resource"`
	File     string       `json:"file"`
	// Line is where the resource's document starts in File (0: not known); SARIF locates
	// results by it.
	Line int `json:"-"`
	// Operation is the request's, when not a CREATE: an AdmissionReview replayed.
	Operation v1alpha1.Operation   `json:"operation,omitempty"`
	Result    policies.Outcome     `json:"result"`
	Action    v1alpha1.Enforcement `json:"action,omitempty"`
	Message   string               `json:"message,omitempty"`
	// Changes are what a mutating rule in Deny changed, each described; the check went on with
	// the changed object.
	Changes []string `json:"changes,omitempty"`
	// Warnings are what a mutating rule could not do, e.g. a container with no port to probe.
	Warnings []string `json:"warnings,omitempty"`
}

// engine is the result as the engine returned it, for policies.Decide.
func (r *Result) engine() policies.Result {
	return policies.Result{Policy: r.Policy, Rule: r.Rule, Resource: r.Resource, Result: r.Result, Action: r.Action,
		Message: r.Message, Changes: r.Changes, Warnings: r.Warnings}
}

// Decide is what the API server does with a resource of these results: policies.Decide, the
// one mapping from results to a decision, on results read back from a report.
func Decide(results []Result) policies.Decision {
	engine := make([]policies.Result, len(results))
	for i := range results {
		engine[i] = results[i].engine()
	}
	return policies.Decide(engine)
}

// Verdict is a resource's verdict in the text output, in the words of the cluster's answer:
// the decision's verdict (DENIED, MUTATED, WARNED, PASSED), but AUDITED for an admitted
// resource an Audit rule fails (recorded, not told), and SKIPPED when no rule applied.
func Verdict(results []Result) string {
	d := Decide(results)
	switch d.Verdict {
	case policies.Denied:
		return "DENIED"
	case policies.Mutated:
		return "MUTATED"
	case policies.Warned:
		return "WARNED"
	}
	skipped := 0
	for i := range results {
		switch results[i].Result {
		case policies.Fail:
			return "AUDITED"
		case policies.Skip:
			skipped++
		}
	}
	if skipped == len(results) {
		return "SKIPPED"
	}
	return "PASSED"
}

// Summary counts the results by outcome; Warn counts the failures whose action is Warn.
type Summary struct {
	Pass  int `json:"pass"`
	Fail  int `json:"fail"`
	Warn  int `json:"warn"`
	Error int `json:"error"`
	Skip  int `json:"skip"`
}

// Report holds the results of a run, grouped by resource in input order: what the CLI prints,
// and what tests and reports of other kinds are made from.
type Report struct {
	Results []Result `json:"results"`
	Summary Summary  `json:"summary"`
	// Rules describe every rule of the policies the run loaded, for the formats that list them
	// (SARIF); set by the caller.
	Rules []Rule `json:"-"`
	// Quiet makes the text output list only the resources with failures or errors, and only
	// those results (the summary stays).
	Quiet bool `json:"-"`

	groups []group
	// failing counts the failures by their action's strength (a streaming report keeps none of
	// its results to count them from)
	failing [4]int
	stream  *stream
}

// stream is where a streaming report writes each resource as it is added (Stream), and what it
// counts of those it let go.
type stream struct {
	w                 *bufio.Writer
	format            string
	junit             *junitStream // junit: the cases, until Finish writes the counts before them
	sarif             *sarifStream // sarif: the results, until Finish writes the rules before them
	written           int          // results written (json: a comma before each but the first)
	resources, denied int          // resources written, and those the API server would deny (text)
	err               error        // the first result that did not encode
}

// Location is where a resource was read: its file, and the line its document starts on (0:
// not known).
type Location struct {
	File string
	Line int
}

type group struct {
	file string
	ref  policies.Ref
	op   v1alpha1.Operation
	// first and n are where the request's results are in Report.Results (each result is held
	// once: a report of many objects is mostly its results).
	first, n int
}

// resultsOf are the results of one request.
func (r *Report) resultsOf(g group) []Result { return r.Results[g.first : g.first+g.n] }

// Add adds the results of one resource, read from file, judged as a CREATE.
func (r *Report) Add(file string, ref policies.Ref, results []policies.Result) {
	r.AddRequest(Location{File: file}, v1alpha1.Create, ref, results)
}

// AddRequest adds the results of one request of operation op on a resource read at at.
func (r *Report) AddRequest(at Location, op v1alpha1.Operation, ref policies.Ref, results []policies.Result) {
	if op == v1alpha1.Create {
		op = ""
	}
	file := at.File
	g := group{file: file, ref: ref, op: op, first: len(r.Results), n: len(results)}
	for _, res := range results {
		// Many resources fail a rule the same way: their reports hold its message once.
		msg := unique.Make(res.Message).Value()
		jr := Result{Policy: res.Policy, Rule: res.Rule, Resource: res.Resource, File: file, Line: at.Line, Operation: op, Result: res.Result, Action: res.Action,
			Message: msg, Changes: res.Changes, Warnings: res.Warnings}
		r.Results = append(r.Results, jr)
		switch res.Result {
		case policies.Pass:
			r.Summary.Pass++
		case policies.Fail:
			r.Summary.Fail++
			// warn counts the failures that only warn: what kubectl shows as warnings.
			if res.Action == v1alpha1.Warn {
				r.Summary.Warn++
			}
			r.failing[strength[res.Action]]++
		case policies.Error:
			r.Summary.Error++
		case policies.Skip:
			r.Summary.Skip++
		}
	}
	st := r.stream
	if st == nil {
		r.groups = append(r.groups, g)
		return
	}
	// Written, then let go: a streaming report keeps no resource's results.
	st.resources++
	switch st.format {
	case "json":
		for i := range r.resultsOf(g) {
			st.writeJSONResult(&r.Results[g.first+i])
		}
	case "junit":
		st.junit.add(g, r.resultsOf(g))
	case "sarif":
		for i := range r.resultsOf(g) {
			st.sarif.add(&r.Results[g.first+i])
		}
	default:
		if r.writeText(st.w, g) {
			st.denied++
		}
	}
	clear(r.Results)
	r.Results = r.Results[:0]
}

// Stream makes r write each resource it is given as it is added, in format (one of Formats),
// keeping only the counts: Finish writes the rest. Text and json go to w as they are added; the
// testcases of junit and the results of sarif go to a spool (memory, then a temporary file),
// and Finish writes what comes before them (the counts, the rules) and them to w. What is written
// is what Write would write had r kept every result, and the memory a report of many resources
// takes stays that of one. Call it before anything is added, with the Rules set; it reports
// whether format can be streamed.
func (r *Report) Stream(w io.Writer, format string) bool {
	if len(r.groups) > 0 || r.stream != nil || !slices.Contains(Formats, format) {
		return false
	}
	r.stream = &stream{w: bufio.NewWriter(w), format: format}
	switch format {
	case "json":
		_, _ = r.stream.w.WriteString(jsonHead)
	case "junit":
		r.stream.junit = &junitStream{}
	case "sarif":
		r.stream.sarif = newSARIFStream(r.Rules)
	}
	return true
}

// WritesOnFinish reports whether a report streaming format writes nothing to its writer until
// Finish (junit and sarif, whose entries wait in a spool of their own): a caller that prints only
// a run that succeeded can give it the output itself.
func WritesOnFinish(format string) bool { return format == "junit" || format == "sarif" }

// Streaming reports whether r writes its resources as they are added (Stream).
func (r *Report) Streaming() bool { return r.stream != nil }

// Finish writes what follows the resources of a streaming report (Stream): the summary.
func (r *Report) Finish() error {
	st := r.stream
	if st == nil {
		return errors.New("report: Finish without Stream")
	}
	if st.err != nil {
		return st.err
	}
	switch st.format {
	case "json":
		if err := writeJSONTail(st.w, st.written, r.Summary); err != nil {
			return err
		}
	case "junit":
		defer st.junit.close()
		if err := st.junit.finish(st.w); err != nil {
			return err
		}
	case "sarif":
		defer st.sarif.close()
		if err := st.sarif.finish(st.w); err != nil {
			return err
		}
	default:
		r.writeTextSummary(st.w, st.resources, st.denied)
	}
	return st.w.Flush()
}

// Failing counts the failures whose action is level or stronger, as FailingAt lists them; it
// counts those a streaming report no longer holds too.
func (r *Report) Failing(level v1alpha1.Enforcement) int {
	n := 0
	for _, count := range r.failing[strength[level]:] {
		n += count
	}
	return n
}

// strength orders the actions: a failure counts at its action's level and every level below
// (0: an action that is none of them).
var strength = map[v1alpha1.Enforcement]int{v1alpha1.Audit: 1, v1alpha1.Warn: 2, v1alpha1.Deny: 3}

// Blocking returns the results that make the API server reject a resource: fails with Deny.
func (r *Report) Blocking() []Result { return r.FailingAt(v1alpha1.Deny) }

// FailingAt returns the failures whose action is level or stronger: Deny; Deny and Warn; or,
// for Audit, every failure.
func (r *Report) FailingAt(level v1alpha1.Enforcement) []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Result == policies.Fail && strength[res.Action] >= strength[level] {
			out = append(out, res)
		}
	}
	return out
}

// Formats are the formats Write writes.
var Formats = []string{"text", "json", "junit", "sarif"}

// Write writes the report in format: "json" (the -o json schema), "junit", "sarif" or text.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		return r.writeJSON(w)
	case "junit":
		return r.writeJUnit(w)
	case "sarif":
		return r.writeSARIF(w)
	}
	return r.printText(w)
}

// writeJSON writes the report as an encoding/json Encoder indenting by two spaces would, a
// result at a time: a report of many objects is never held twice, as its encoding too.
func (r *Report) writeJSON(w io.Writer) error {
	st := &stream{w: bufio.NewWriter(w)}
	_, _ = st.w.WriteString(jsonHead)
	for i := range r.Results {
		st.writeJSONResult(&r.Results[i])
	}
	if st.err != nil {
		return st.err
	}
	if err := writeJSONTail(st.w, st.written, r.Summary); err != nil {
		return err
	}
	return st.w.Flush()
}

// jsonHead is what the -o json output starts with.
const jsonHead = "{\n  \"results\": ["

// writeJSONResult writes the next result of the "results" array; a result that does not
// encode is kept as the stream's error.
func (st *stream) writeJSONResult(res *Result) {
	b, err := json.MarshalIndent(res, "    ", "  ")
	if err != nil {
		if st.err == nil {
			st.err = err
		}
		return
	}
	if st.written > 0 {
		_ = st.w.WriteByte(',')
	}
	_, _ = st.w.WriteString("\n    ")
	_, _ = st.w.Write(b)
	st.written++
}

// writeJSONTail ends the "results" array of n results and writes the summary.
func writeJSONTail(w *bufio.Writer, n int, s Summary) error {
	if n > 0 {
		_, _ = w.WriteString("\n  ")
	}
	_, _ = w.WriteString("],\n  \"summary\": ")
	b, err := json.MarshalIndent(s, "  ", "  ")
	if err != nil {
		return err
	}
	_, _ = w.Write(b)
	_, _ = w.WriteString("\n}\n")
	return nil
}

// printText prints one block per resource: a header with the file, the resource and its verdict,
// then each failure, error and skipped rule with its result, action, [policy/rule] and message;
// passes are counted, and listed only when they carry a message (a mutation applied, a
// warning). A summary line ends the output.
func (r *Report) printText(w io.Writer) error {
	b := bufio.NewWriter(w)
	denied := 0
	for _, g := range r.groups {
		if r.writeText(b, g) {
			denied++
		}
	}
	r.writeTextSummary(b, len(r.groups), denied)
	return b.Flush()
}

// writeText writes the block of one resource (printText), and reports whether the API server
// would deny it.
func (r *Report) writeText(b *bufio.Writer, g group) (denied bool) {
	results := r.resultsOf(g)
	verdict, counts := Verdict(results), map[policies.Outcome]int{}
	var lines []string
	for _, res := range results {
		counts[res.Result]++
		if res.Result == policies.Pass && res.Message == "" {
			continue // a pass with something to say (a mutation applied, a warning) is listed
		}
		if r.Quiet && res.Result != policies.Fail && res.Result != policies.Error {
			continue
		}
		action, name := string(res.Action), policies.Label(res.Policy, res.Rule)
		if res.Policy == "" {
			action, name = "-", ""
		}
		lines = append(lines, fmt.Sprintf("  %-5s %-5s %s%s", strings.ToUpper(string(res.Result)), action, name, res.Message))
	}
	if r.Quiet && len(lines) == 0 {
		return verdict == "DENIED"
	}
	what := g.ref.String()
	if g.op != "" {
		what += " (" + string(g.op) + ")"
	}
	_, _ = fmt.Fprintf(b, "%s: %s: %s (%d pass, %d fail, %d error, %d skip)\n", g.file, what, verdict,
		counts[policies.Pass], counts[policies.Fail], counts[policies.Error], counts[policies.Skip])
	for _, l := range lines {
		_, _ = b.WriteString(l + "\n")
	}
	return verdict == "DENIED"
}

// writeTextSummary writes the line that ends the text output: of resources, denied denied.
func (r *Report) writeTextSummary(b *bufio.Writer, resources, denied int) {
	s := r.Summary
	noun := "resources"
	if resources == 1 {
		noun = "resource"
	}
	_, _ = fmt.Fprintf(b, "\n%d %s, %d denied: %d pass, %d fail (%d warn), %d error, %d skip\n",
		resources, noun, denied, s.Pass, s.Fail, s.Warn, s.Error, s.Skip)
}
