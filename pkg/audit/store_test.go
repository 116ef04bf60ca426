package audit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

var pods = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func pod(ns string, i int) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("p%04d", i), UID: types.UID(fmt.Sprintf("%s-%d", ns, i))}
}

func results(fail bool, message string) []policies.Result {
	rs := []policies.Result{
		{Policy: "pss", Rule: "restricted", Result: policies.Pass, Action: v1alpha1.Audit},
		{Policy: "labels", Rule: "team", Result: policies.Fail, Action: v1alpha1.Warn, Message: "no team"},
		{Policy: "who", Rule: "user", Result: policies.Skip, Action: v1alpha1.Deny, Message: "background"},
	}
	if fail {
		rs[0].Result, rs[0].Message = policies.Fail, message
	}
	return rs
}

var failWarnError = sets.New(Fail, Warn, Error)

// TestStoreCountsEverythingListsWhatIsKept: the summary counts every (object, rule) result; the
// report lists the kept outcomes only, up to the cap, and says how many it left out.
func TestStoreCountsEverythingListsWhatIsKept(t *testing.T) {
	s := NewStore(failWarnError, 5, nil)
	for i := range 4 {
		s.Put(pods, pod("shop", i), 0, 1, results(i%2 == 0, "privileged"))
	}
	changed, gone := s.Changed()
	if len(changed) != 1 || len(gone) != 0 {
		t.Fatalf("changed %d, gone %v", len(changed), gone)
	}
	c := changed[0]
	if c.Summary[Pass] != 2 || c.Summary[Fail] != 2 || c.Summary[Warn] != 4 || c.Summary[Skip] != 4 {
		t.Errorf("summary %v, want 2 pass, 2 fail, 4 warn, 4 skip", c.Summary)
	}
	// 6 results to list (2 fail + 4 warn), 5 kept.
	if len(c.Results) != 5 || c.Omitted != 1 {
		t.Errorf("listed %d, omitted %d; want 5 and 1", len(c.Results), c.Omitted)
	}
	if again, _ := s.Changed(); len(again) != 0 {
		t.Errorf("nothing changed, yet %d reports to write", len(again))
	}
	// The same results again: nothing to write.
	s.Put(pods, pod("shop", 1), 0, 2, results(false, ""))
	if again, _ := s.Changed(); len(again) != 0 {
		t.Errorf("same results, yet %d reports to write", len(again))
	}
}

// TestStoreKeepsWhenAFindingWasFirstSeen: a result found again keeps its timestamp, so a scan
// that finds the same does not rewrite the report.
func TestStoreKeepsWhenAFindingWasFirstSeen(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewStore(failWarnError, 100, func() time.Time { return now })
	s.Put(pods, pod("shop", 0), 0, 1, results(true, "privileged"))
	first, _ := s.Changed()
	now = now.Add(time.Hour)
	s.Put(pods, pod("shop", 0), 0, 2, results(true, "privileged"))
	if again, _ := s.Changed(); len(again) != 0 {
		t.Fatalf("the same findings an hour later rewrote the report")
	}
	s.Put(pods, pod("shop", 0), 0, 3, results(true, "privileged, hostPath"))
	next, _ := s.Changed()
	// Results are ordered by object, then policy: labels/team, then pss/restricted.
	if len(next) != 1 || !next[0].Results[1].Since.Equal(first[0].Results[1].Since) || next[0].Results[1].Message != "privileged, hostPath" {
		t.Errorf("a finding whose message changed: %+v, want the new message since %v", next, first[0].Results[0].Since)
	}
}

// TestStorePrune: what a scan did not see is gone; objects of kinds no policy matches any more
// go; an emptied namespace's report goes.
func TestStorePrune(t *testing.T) {
	s := NewStore(failWarnError, 100, nil)
	deploys := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	s.Put(pods, pod("a", 0), 0, 1, results(true, "x"))
	s.Put(pods, pod("a", 1), 0, 1, results(true, "x"))
	s.Put(deploys, corev1.ObjectReference{Kind: "Deployment", Namespace: "b", Name: "d", UID: "d"}, 0, 1, results(true, "x"))
	s.Changed()
	s.Put(pods, pod("a", 0), 0, 2, results(true, "x"))
	s.Prune(map[schema.GroupVersionResource]Scanned{pods: {Scan: 2}}, nil)
	changed, gone := s.Changed()
	if len(changed) != 1 || changed[0].Summary[Warn] != 1 || len(gone) != 0 {
		t.Fatalf("after a scan that saw one pod of two: %+v, gone %v", changed, gone)
	}
	s.Prune(map[schema.GroupVersionResource]Scanned{pods: {Scan: 2}}, sets.New(pods))
	if _, gone := s.Changed(); strings.Join(gone, ",") != "b" {
		t.Errorf("deployments matched by no policy: gone %v, want b", gone)
	}
}

// TestBuildBounds: a report lists at most the cap and at most MaxReportBytes, with the summary
// exact and the omitted results counted.
func TestBuildBounds(t *testing.T) {
	s := NewStore(failWarnError, 5000, nil)
	long := strings.Repeat("m", 3000)
	for i := range 5000 {
		s.Put(pods, pod("shop", i), 0, 1, results(true, long))
	}
	changed, _ := s.Changed()
	none := func(string) (string, string) { return "", "" }
	r := Build(changed[0], 1000, []Outcome{Fail, Warn, Error}, none).(*openreports.Report)
	if r.Summary.Fail != 5000 || r.Summary.Warn != 5000 || r.Summary.Skip != 5000 {
		t.Errorf("summary %+v", r.Summary)
	}
	size := 0
	for _, res := range r.Results {
		size += len(res.Description)
	}
	if size > MaxReportBytes || len(r.Results) == 0 || len(r.Results) >= 1000 {
		t.Errorf("%d results of %d message bytes: want fewer than 1000, under %d bytes", len(r.Results), size, MaxReportBytes)
	}
	if got, want := r.Annotations[OmittedAnnotation], fmt.Sprint(10000-len(r.Results)); got != want {
		t.Errorf("omitted %s, want %s", got, want)
	}
	if r.Configuration.Limits.MaxResults != 1000 || r.Labels[ManagedByLabel] != ManagedBy || r.Source != Source {
		t.Errorf("configuration %+v labels %v source %q", r.Configuration, r.Labels, r.Source)
	}
	// The cap alone.
	r = Build(changed[0], 10, []Outcome{Fail, Warn, Error}, none).(*openreports.Report)
	if len(r.Results) != 10 || r.Results[0].Properties["action"] != "Warn" || r.Results[0].Subjects[0].UID == "" {
		t.Errorf("capped at 10: %d results, first %+v", len(r.Results), r.Results[0])
	}
}

// TestStoreSeedKeepsTimestampsAcrossRestarts: findings read back from the reports in place keep
// when they were first seen, so the first scan after a restart writes nothing new.
func TestStoreSeedKeepsTimestampsAcrossRestarts(t *testing.T) {
	before := NewStore(failWarnError, 100, func() time.Time { return time.Unix(1000, 0) })
	before.Put(pods, pod("shop", 0), 0, 1, results(true, "privileged"))
	first, _ := before.Changed()
	seen := map[Finding]int64{}
	for _, r := range first[0].Results {
		seen[Finding{UID: r.Object.UID, Policy: r.Policy, Rule: r.Rule, Outcome: r.Outcome}] = r.Since.Unix()
	}
	after := NewStore(failWarnError, 100, func() time.Time { return time.Unix(5000, 0) })
	after.Seed(seen)
	after.Put(pods, pod("shop", 0), 0, 1, results(true, "privileged"))
	again, _ := after.Changed()
	none := func(string) (string, string) { return "", "" }
	if ContentHash(Build(first[0], 100, nil, none)) != ContentHash(Build(again[0], 100, nil, none)) {
		t.Errorf("the same findings after a restart make another report: %+v vs %+v", first[0].Results, again[0].Results)
	}
}
