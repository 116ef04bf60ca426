package report

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

func TestReport(t *testing.T) {
	pod := policies.Ref{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web"}
	var r Report
	r.Add("web.yaml", pod, []policies.Result{
		{Policy: "p", Rule: "deny", Resource: pod, Result: policies.Fail, Action: v1alpha1.Deny, Message: "no"},
		{Policy: "p", Rule: "warn", Resource: pod, Result: policies.Fail, Action: v1alpha1.Warn, Message: "hm"},
		{Policy: "p", Rule: "ok", Resource: pod, Result: policies.Pass, Action: v1alpha1.Deny},
		{Policy: "p", Rule: "x", Resource: pod, Result: policies.Skip, Action: v1alpha1.Deny, Message: "exempted"},
	})
	if s := r.Summary; s.Pass != 1 || s.Fail != 2 || s.Warn != 1 || s.Skip != 1 || s.Error != 0 {
		t.Errorf("summary %+v", s)
	}
	if b := r.Blocking(); len(b) != 1 || b[0].Rule != "deny" || b[0].File != "web.yaml" {
		t.Errorf("blocking %+v, want the Deny fail", b)
	}
	var text bytes.Buffer
	if err := r.Write(&text, "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"web.yaml: v1 Pod shop/web: DENIED (1 pass, 2 fail, 0 error, 1 skip)", "  FAIL  Deny  [p/deny] no", "1 resource, 1 denied"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.Write(&js, "json"); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 4 || back.Summary != r.Summary {
		t.Errorf("json round trip: %v %+v", err, back)
	}
}

// TestVerdict: a resource's verdict is the engine's decision, with AUDIT and SKIP for what the
// decision admits silently.
func TestVerdict(t *testing.T) {
	fail := func(a v1alpha1.Enforcement) Result {
		return Result{Policy: "p", Rule: "r", Result: policies.Fail, Action: a}
	}
	pass := Result{Policy: "p", Rule: "ok", Result: policies.Pass, Action: v1alpha1.Deny}
	for _, tc := range []struct {
		name    string
		results []Result
		want    string
	}{
		{"deny beats all", []Result{fail(v1alpha1.Warn), fail(v1alpha1.Deny), {Result: policies.Pass, Action: v1alpha1.Deny, Changes: []string{"add x"}}}, "DENIED"},
		{"mutated", []Result{pass, {Result: policies.Pass, Action: v1alpha1.Deny, Changes: []string{"add x"}}, fail(v1alpha1.Warn)}, "MUTATED"},
		{"warn", []Result{pass, fail(v1alpha1.Warn)}, "WARNED"},
		{"a mutating rule's warning", []Result{{Result: policies.Pass, Action: v1alpha1.Deny, Warnings: []string{"no port"}}}, "WARNED"},
		{"an Audit rule's warning is not shown", []Result{{Result: policies.Pass, Action: v1alpha1.Audit, Warnings: []string{"no port"}}}, "PASSED"},
		{"an ignored error warns", []Result{pass, {Result: policies.Error, Action: v1alpha1.Deny, Message: "x"}}, "WARNED"},
		{"audit", []Result{pass, fail(v1alpha1.Audit)}, "AUDITED"},
		{"pass", []Result{pass, {Result: policies.Skip}}, "PASSED"},
		{"skip", []Result{{Result: policies.Skip}}, "SKIPPED"},
	} {
		if got := Verdict(tc.results); got != tc.want {
			t.Errorf("%s: verdict %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestJSONCarriesChanges: what a mutation changed and could not do survive -o json, so a reader
// decides as the engine does without parsing messages.
func TestJSONCarriesChanges(t *testing.T) {
	pod := policies.Ref{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web"}
	var r Report
	r.Add("web.yaml", pod, []policies.Result{{Policy: "p", Rule: "m", Resource: pod, Result: policies.Pass, Action: v1alpha1.Deny,
		Message: "applied: add probe", Changes: []string{"add probe"}, Warnings: []string{"no port for c"}}})
	var js bytes.Buffer
	if err := r.Write(&js, "json"); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if d := Decide(back.Results); d.Verdict != policies.Mutated || len(d.Warnings) != 1 || d.Warnings[0] != "[p/m] no port for c" {
		t.Errorf("decision from JSON %+v, want mutated with the warning", d)
	}
}

// writeJSON writes what encoding/json's Encoder, indenting by two spaces, writes of the report:
// with no results, and with some (HTML characters, changes, warnings).
func TestWriteJSONAsTheEncoder(t *testing.T) {
	for _, r := range []*Report{
		{},
		{Results: []Result{
			{Policy: "p", Rule: "r", Resource: policies.Ref{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "a"}, File: "a.yaml", Result: policies.Fail, Action: "Deny", Message: `<must> & "quoted"`},
			{Policy: "p", Rule: "m", File: "a.yaml", Result: policies.Pass, Changes: []string{"add x"}, Warnings: []string{"w"}},
		}, Summary: Summary{Pass: 1, Fail: 1}},
	} {
		var got bytes.Buffer
		if err := r.Write(&got, "json"); err != nil {
			t.Fatal(err)
		}
		want := *r
		if want.Results == nil {
			want.Results = []Result{}
		}
		var wantBuf bytes.Buffer
		enc := json.NewEncoder(&wantBuf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(&want); err != nil {
			t.Fatal(err)
		}
		if got.String() != wantBuf.String() {
			t.Errorf("got\n%s\nwant\n%s", got.String(), wantBuf.String())
		}
	}
}

// TestReportHoldsEachMessageOnce: many resources failing a rule the same way hold one copy of
// its message (77,000 Pods' reports held 28 MB of equal messages).
func TestReportHoldsEachMessageOnce(t *testing.T) {
	var r Report
	for i := range 2 {
		msg := strings.Repeat("runAsNonRoot != true ", 3) + strconv.Itoa(7) // built anew each time
		ref := policies.Ref{Kind: "Pod", Name: "p" + strconv.Itoa(i)}
		r.Add("pods.yaml", ref, []policies.Result{{Policy: "p", Rule: "r", Resource: ref, Result: policies.Fail, Message: msg}})
	}
	if a, b := r.Results[0].Message, r.Results[1].Message; a != b || unsafe.StringData(a) != unsafe.StringData(b) {
		t.Errorf("the equal messages %q and %q are held twice", a, b)
	}
}

// A streaming report writes what a report that keeps its results writes, in every format it
// streams, quiet or not, and keeps none of them; it counts the failures at each level as the
// kept report lists them.
func TestStreamWritesWhatWriteWrites(t *testing.T) {
	add := func(r *Report) {
		for i := range 5 {
			pod := policies.Ref{APIVersion: "v1", Kind: "Pod", Namespace: "shop", Name: "web-" + strconv.Itoa(i)}
			var results []policies.Result
			switch i {
			case 0: // denied, warned, passed with a message, skipped
				results = []policies.Result{
					{Policy: "p", Rule: "deny", Resource: pod, Result: policies.Fail, Action: v1alpha1.Deny, Message: "no"},
					{Policy: "p", Rule: "warn", Resource: pod, Result: policies.Fail, Action: v1alpha1.Warn, Message: "hm"},
					{Policy: "p", Rule: "probe", Resource: pod, Result: policies.Pass, Action: v1alpha1.Deny, Message: "added", Changes: []string{"a probe"}},
					{Policy: "p", Rule: "x", Resource: pod, Result: policies.Skip, Action: v1alpha1.Deny, Message: "exempted"},
				}
			case 1: // no rule applied
			case 2: // an error, and an audit failure
				results = []policies.Result{
					{Policy: "p", Rule: "err", Resource: pod, Result: policies.Error, Action: v1alpha1.Deny, Message: "unreadable"},
					{Policy: "q", Rule: "audit", Resource: pod, Result: policies.Fail, Action: v1alpha1.Audit, Message: "seen"},
				}
			default: // passes only
				results = []policies.Result{{Policy: "p", Rule: "ok", Resource: pod, Result: policies.Pass, Action: v1alpha1.Deny}}
			}
			op := v1alpha1.Create
			if i == 3 {
				op = v1alpha1.Update
			}
			file := "pods.yaml"
			if i == 4 {
				file = "more pods.yaml" // a second JUnit suite; a space in a SARIF URI
			}
			r.AddRequest(Location{File: file, Line: 1 + 10*i}, op, pod, results)
			if r.Streaming() && len(r.Results) != 0 {
				t.Fatalf("a streaming report kept %d results", len(r.Results))
			}
		}
	}
	// SARIF lists these, then the rules results name that they do not (p/warn, p/err, q/audit)
	rules := []Rule{{Policy: "p", Rule: "deny", Title: "No", Description: "Says no.", Category: "Test", Severity: "high"}, {Policy: "p", Rule: "unused"}}
	for _, format := range Formats {
		for _, quiet := range []bool{false, true} {
			kept := &Report{Quiet: quiet, Rules: rules}
			add(kept)
			var want bytes.Buffer
			if err := kept.Write(&want, format); err != nil {
				t.Fatal(err)
			}
			streamed := &Report{Quiet: quiet, Rules: rules}
			var got bytes.Buffer
			if !streamed.Stream(&got, format) {
				t.Fatalf("%s does not stream", format)
			}
			add(streamed)
			if WritesOnFinish(format) && got.Len() != 0 {
				t.Errorf("-o %s wrote %d bytes before Finish", format, got.Len())
			}
			if err := streamed.Finish(); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Errorf("-o %s (quiet %v), streamed:\n%s\nwant, as written at the end:\n%s", format, quiet, got.String(), want.String())
			}
			// and what both write is right
			switch format {
			case "text":
				if !strings.HasSuffix(got.String(), "\n5 resources, 1 denied: 3 pass, 3 fail (1 warn), 1 error, 1 skip\n") {
					t.Errorf("-o text ends with another summary:\n%s", got.String())
				}
			case "json":
				var back Report
				if err := json.Unmarshal(got.Bytes(), &back); err != nil || len(back.Results) != 8 || back.Summary != kept.Summary {
					t.Errorf("-o json read back: %v, %d results, summary %+v; want 8, %+v", err, len(back.Results), back.Summary, kept.Summary)
				}
			}
			for _, level := range []v1alpha1.Enforcement{v1alpha1.Deny, v1alpha1.Warn, v1alpha1.Audit} {
				if n, want := streamed.Failing(level), len(kept.FailingAt(level)); n != want {
					t.Errorf("failing at %s: %d streamed, %d kept", level, n, want)
				}
			}
		}
	}
	if (&Report{}).Stream(&bytes.Buffer{}, "yaml") {
		t.Error("-o yaml streams")
	}
	for _, format := range Formats {
		empty := &Report{}
		var got, want bytes.Buffer
		empty.Stream(&got, format)
		_ = empty.Finish()
		_ = (&Report{}).Write(&want, format)
		if got.String() != want.String() {
			t.Errorf("an empty streamed report, -o %s: %q, want %q", format, got.String(), want.String())
		}
	}
}
