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
