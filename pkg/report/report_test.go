package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

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
	for _, want := range []string{"web.yaml: v1 Pod shop/web: DENY (1 pass, 2 fail, 0 error, 1 skip)", "  FAIL  Deny  [p/deny] no", "1 resource, 1 denied"} {
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
