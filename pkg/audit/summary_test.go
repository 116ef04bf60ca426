package audit

import (
	"bytes"
	"strings"
	"testing"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestSummarize: resources are counted once per policy and namespace however many of its rules
// they fail; passes and errors do not count; omitted results make the counts a lower bound, and
// say so.
func TestSummarize(t *testing.T) {
	res := func(policy, rule, result, uid string) openreports.ReportResult {
		return openreports.ReportResult{Policy: policy, Rule: rule, Result: openreports.Result(result), Subjects: []corev1.ObjectReference{{UID: types.UID(uid)}}}
	}
	reports := []openreports.Report{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "b"}, Results: []openreports.ReportResult{res("pss", "r1", "fail", "1"), res("pss", "r2", "fail", "1"), res("pss", "r1", "warn", "2"), res("labels", "team", "error", "1")}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Annotations: map[string]string{OmittedAnnotation: "7"}}, Results: []openreports.ReportResult{res("pss", "r1", "fail", "3")}},
	}
	cluster := &openreports.ClusterReport{Results: []openreports.ReportResult{res("labels", "team", "fail", "n")}}
	ov := Summarize(reports, cluster)
	if len(ov.Policies) != 2 || ov.Omitted != 7 {
		t.Fatalf("%+v", ov)
	}
	labels, pss := ov.Policies[0], ov.Policies[1]
	if pss.Resources != 3 || pss.Violations != 4 || len(pss.Namespaces) != 2 || pss.Namespaces[0].Namespace != "a" || pss.Namespaces[1].Resources != 2 {
		t.Errorf("pss %+v", pss)
	}
	if labels.Resources != 1 || labels.Namespaces[0].Namespace != "" {
		t.Errorf("labels %+v: the error is not a violation; the cluster-scoped fail is", labels)
	}
	var b bytes.Buffer
	if err := ov.Write(&b, "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"POLICY  NAMESPACE  RESOURCES  VIOLATIONS", "labels  (cluster)  1          1", "pss     b          2          3", "7 results are not listed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}
