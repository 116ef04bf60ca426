package audit

import (
	"context"
	"encoding/json"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// StatusFromReports writes the policies' status.audit when replicas share the audit, each
// knowing only its namespaces: on the leader, every Interval, it sums the per-policy counts every
// report carries (PolicyCountsAnnotation), reading report metadata only, and takes the time of
// the members' oldest last full scan.
type StatusFromReports struct {
	Reader   client.Reader
	Client   client.Client
	Engines  Engines
	Members  *Members
	Interval time.Duration
	Log      logr.Logger
}

// Run sums and writes until ctx ends.
func (a *StatusFromReports) Run(ctx context.Context) error {
	ps := &policyStatus{client: a.Client, scanned: map[string]time.Time{}, written: map[string]v1alpha1.AuditStatus{}}
	tick := time.NewTicker(a.Interval)
	defer tick.Stop()
	for {
		if engine := a.Engines.Load(); engine != nil {
			counts, err := a.sum(ctx)
			if err == nil {
				var last time.Time
				if last, err = a.Members.LastFullScan(ctx); err == nil && !last.IsZero() {
					for p := range engine.Policies() {
						ps.scanned[p.Name] = last
					}
				}
				err = ps.write(ctx, engine, counts, time.Now())
			}
			if err != nil {
				a.Log.Error(err, "audit: the policies' status from the reports")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// sum adds up the per-policy counts of every report.
func (a *StatusFromReports) sum(ctx context.Context) (map[string]Counts, error) {
	out := map[string]Counts{}
	err := eachReportMeta(ctx, a.Reader, func(r *metav1.PartialObjectMetadata) {
		var byPolicy map[string]Counts
		if json.Unmarshal([]byte(r.Annotations[PolicyCountsAnnotation]), &byPolicy) != nil {
			return
		}
		for p, c := range byPolicy {
			if out[p] == nil {
				out[p] = Counts{}
			}
			out[p].add(c)
		}
	})
	return out, err
}
