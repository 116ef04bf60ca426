package metrics

import (
	"fmt"
	"sync"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Counting through the cache counts in the vector, series by series, from any number of
// goroutines.
func TestCachedCountersCount(t *testing.T) {
	m := New(prometheus.NewRegistry())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				m.PolicyResult("policy", fmt.Sprint("rule-", (g+i)%10), "fail", "Deny")
				m.Reviewed("validate", "CREATE", "Pod", "denied")
			}
		})
	}
	wg.Wait()
	if n := testutil.CollectAndCount(m.PolicyResults); n != 10 {
		t.Errorf("%d series of results, want 10", n)
	}
	for i := range 10 {
		if v := testutil.ToFloat64(m.PolicyResults.WithLabelValues("policy", fmt.Sprint("rule-", i), "fail", "Deny")); v != 800 {
			t.Errorf("rule-%d: %v results, want 800", i, v)
		}
	}
	if v := testutil.ToFloat64(m.Reviews.WithLabelValues("validate", "CREATE", "Pod", "denied")); v != 8000 {
		t.Errorf("%v reviews, want 8000", v)
	}
}

// A label value may be a string of a review's body (the webhook's objects are decoded in place),
// which a later review's bytes overwrite: the cache and the series keep a copy.
func TestCachedCountersCopyTheirLabels(t *testing.T) {
	m := New(prometheus.NewRegistry())
	body := []byte("Pod")
	m.Reviewed("validate", "CREATE", unsafe.String(&body[0], len(body)), "allowed")
	copy(body, "Job")
	m.Reviewed("validate", "CREATE", "Pod", "allowed")
	if n := testutil.CollectAndCount(m.Reviews); n != 1 {
		t.Errorf("%d series, want 1: a series kept the overwritten bytes", n)
	}
	if v := testutil.ToFloat64(m.Reviews.WithLabelValues("validate", "CREATE", "Pod", "allowed")); v != 2 {
		t.Errorf("%v reviews of Pods, want 2", v)
	}
}

// BenchmarkCountResults counts a review's 28 results: through the vector's WithLabelValues each
// time, and through the cache (Metrics.PolicyResult).
func BenchmarkCountResults(b *testing.B) {
	m := New(prometheus.NewRegistry())
	var rules [28]string
	for i := range rules {
		rules[i] = fmt.Sprintf("rule-%02d", i)
	}
	b.Run("WithLabelValues", func(b *testing.B) {
		for b.Loop() {
			for _, r := range rules {
				m.PolicyResults.WithLabelValues("load-cel", r, "pass", "Deny").Inc()
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			for _, r := range rules {
				m.PolicyResult("load-cel", r, "pass", "Deny")
			}
		}
	})
}
