package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/audit"
)

// TestAuditReportCap: 5,000 failing Pods in one namespace give a Report that lists the most
// results a report may (--report-max-results, 1000 by default), with the summary exact, and
// small enough for etcd.
func TestAuditReportCap(t *testing.T) {
	ctx := t.Context()
	fast := fastClient(t)
	ns := newNamespace(t, nil)
	t.Cleanup(func() { // no namespace controller here: the Pods go with the test
		_ = e2e.client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0))
	})
	const pods = 5000
	work := make(chan int)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for i := range work {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: ns},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:latest"}}}}
				if err := fast.Create(ctx, pod); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range pods {
		work <- i
	}
	close(work)
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	applyPolicy(t, auditLibraryPolicy(t, "disallow-latest-tag", []string{ns}))
	r := waitReports(t, []string{ns}, 90*time.Second, func(r *openreports.Report) error {
		if r.Summary.Fail != pods {
			return fmt.Errorf("summary %+v, want %d fail", r.Summary, pods)
		}
		return nil
	})[0]
	size, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a report of %d failures lists %d, in %d bytes", r.Summary.Fail, len(r.Results), len(size))
	if len(r.Results) != 1000 || r.Configuration == nil || r.Configuration.Limits.MaxResults != 1000 || r.Annotations[audit.OmittedAnnotation] != "4000" {
		t.Errorf("%d results listed, configuration %+v, omitted %q; want 1000 listed, maxResults 1000, 4000 omitted",
			len(r.Results), r.Configuration, r.Annotations[audit.OmittedAnnotation])
	}
	if len(size) > 1536*1024 {
		t.Errorf("the report is %d bytes: past etcd's 1.5 MiB", len(size))
	}
}

// TestAuditScaleOut: two replicas of the real binary with --audit-scale-out share the audit by
// namespace. Each judges a part, together every object exactly once; every namespace gets its
// report; the leader sums the reports into the policy's status.
func TestAuditScaleOut(t *testing.T) {
	f := startFleet(t, 2, "--audit-scale-out")
	ctx := t.Context()
	const namespaces, pods = 16, 5
	var names []string
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("shard-%02d", i)}}
		if err := f.client.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
		names = append(names, ns.Name)
		for j := range pods {
			image := "registry.example/app:1.0"
			if j == 0 {
				image = "registry.example/app:latest"
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", j), Namespace: ns.Name},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
			if err := f.client.Create(ctx, pod); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.applyPolicy(libraryPolicy(t, "disallow-latest-tag", "  enforcement: Audit # scale-out\n"))

	// Every namespace's report: one failure of five.
	eventually(t, 60*time.Second, func() error {
		for _, ns := range names {
			r := &openreports.Report{}
			if err := f.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: audit.ReportName}, r); err != nil {
				return fmt.Errorf("report of %s: %w", ns, err)
			}
			if r.Summary.Fail != 1 || r.Summary.Pass != pods-1 {
				return fmt.Errorf("report of %s: %+v, want 1 fail, %d pass", ns, r.Summary, pods-1)
			}
		}
		return nil
	})
	// Each replica's last scan judged its own namespaces' Pods: both some, together all, once.
	eventually(t, 30*time.Second, func() error {
		total := 0
		for i, l := range f.logs {
			n, ok := lastScanObjects(l.Name())
			if !ok || n == 0 {
				return fmt.Errorf("replica %d judged no object in its last scan (log %s)", i, l.Name())
			}
			total += n
		}
		if total != namespaces*pods {
			return fmt.Errorf("the replicas' last scans judged %d objects together, want %d", total, namespaces*pods)
		}
		return nil
	})
	// The leader sums the reports into the policy's status.
	eventually(t, 45*time.Second, func() error {
		var p v1alpha1.ClusterPolicy
		if err := f.client.Get(ctx, client.ObjectKey{Name: "disallow-latest-tag"}, &p); err != nil {
			return err
		}
		if a := p.Status.Audit; a == nil || a.Fail != namespaces || a.Pass != namespaces*(pods-1) {
			return fmt.Errorf("status.audit %+v, want %d fail, %d pass", a, namespaces, namespaces*(pods-1))
		}
		return nil
	})
}

// lastScanObjects reads the objects of the last audit scan a replica's log reports.
func lastScanObjects(log string) (int, bool) {
	data, err := os.ReadFile(log)
	if err != nil {
		return 0, false
	}
	n, found := 0, false
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, `"audit scan done"`) {
			continue
		}
		var entry struct {
			Objects int `json:"objects"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil {
			n, found = entry.Objects, true
		}
	}
	return n, found
}
