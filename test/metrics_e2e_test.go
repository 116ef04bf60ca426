package test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// TestMetrics: the server's Prometheus endpoint counts reviews and results with bounded labels.
func TestMetrics(t *testing.T) {
	applyPolicy(t, libraryPolicy(t, "pod-security-baseline", "  enforcement: Deny\n"))
	defer deletePolicy(t, "pod-security-baseline")
	ns := newNamespace(t, nil)
	if _, _, err := kubectl(t, fmt.Sprintf(privilegedPod, "metrics-probe", ns), "apply", "-f", "-"); err == nil {
		t.Fatal("the privileged pod was admitted")
	}
	m := scrapeMetrics(t)
	for _, want := range []string{
		`portcullis_admission_reviews_total{decision="denied",kind="Pod",operation="CREATE",webhook="validate"}`,
		`portcullis_policy_results_total{action="Deny",policy="pod-security-baseline",result="fail",rule="baseline"}`,
		`portcullis_admission_review_duration_seconds_bucket{webhook="validate",le="0.0001"}`,
		`portcullis_policies_active`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// No label carries a namespace or a resource name.
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "portcullis_") && (strings.Contains(line, ns) || strings.Contains(line, "metrics-probe")) {
			t.Errorf("unbounded label value in %s", line)
		}
	}
	if !regexp.MustCompile(`(?m)^portcullis_admission_review_duration_seconds_count\{webhook="validate"\} [1-9]`).MatchString(m) {
		t.Error("no review latency observed")
	}
}
