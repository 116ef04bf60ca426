package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// TestResultLabelsBounded: a namespaced Policy's tenant-chosen names never become label values.
func TestResultLabelsBounded(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	c := &Config{Metrics: m}
	c.countResults([]policies.Result{
		{Policy: "team-a/pol-1", Rule: "r1", Result: policies.Fail, Action: "Deny", Namespaced: true},
		{Policy: "team-b/pol-2", Rule: "r2", Result: policies.Fail, Action: "Deny", Namespaced: true},
		{Policy: "platform", Rule: "pss", Result: policies.Fail, Action: "Deny"},
	})
	if n := testutil.CollectAndCount(m.PolicyResults); n != 2 {
		t.Errorf("%d series, want 2 (one per ClusterPolicy rule, one for every namespaced Policy)", n)
	}
	if v := testutil.ToFloat64(m.PolicyResults.WithLabelValues(metrics.Namespaced, metrics.Namespaced, "fail", "Deny")); v != 2 {
		t.Errorf("namespaced series = %v, want 2", v)
	}
}
