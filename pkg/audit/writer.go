package audit

import (
	"context"
	"fmt"
	"sync"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldOwner is the field manager of the reports' server-side applies.
const FieldOwner = "portcullis-audit"

// Writer writes reports with server-side apply, and only those whose content changed: what is
// in place is known from the content digest each report carries.
type Writer struct {
	Client client.Client
	// Reader reads the reports in place, metadata only; never a cache, which would hold every
	// report whole.
	Reader client.Reader

	mu      sync.Mutex
	written map[string]string // namespace ("" for the ClusterReport) -> content digest in place
}

// Load reads the reports in place, so that what they say already is not written again, and
// returns their namespaces ("" for the ClusterReport).
func (w *Writer) Load(ctx context.Context) ([]string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written = map[string]string{}
	var namespaces []string
	err := eachReportMeta(ctx, w.Reader, func(r *metav1.PartialObjectMetadata) {
		if r.Name == ReportName {
			w.written[r.Namespace] = ContentHash(r)
			namespaces = append(namespaces, r.Namespace)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing the reports in place: %w", err)
	}
	return namespaces, nil
}

// Write applies report unless the same content is in place. It reports whether it wrote.
func (w *Writer) Write(ctx context.Context, report client.Object) (bool, error) {
	ns, digest := report.GetNamespace(), ContentHash(report)
	w.mu.Lock()
	same := w.written != nil && w.written[ns] == digest
	w.mu.Unlock()
	if same {
		return false, nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(report)
	if err != nil {
		return false, err
	}
	obj := client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u})
	if err := w.Client.Apply(ctx, obj, client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("writing the report of %s: %w", where(ns), err)
	}
	w.mu.Lock()
	if w.written == nil {
		w.written = map[string]string{}
	}
	w.written[ns] = digest
	w.mu.Unlock()
	return true, nil
}

// Delete removes the report of namespace ns ("" for the ClusterReport).
func (w *Writer) Delete(ctx context.Context, ns string) error {
	var obj client.Object = &openreports.Report{}
	if ns == "" {
		obj = &openreports.ClusterReport{}
	}
	obj.SetName(ReportName)
	obj.SetNamespace(ns)
	if err := w.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the report of %s: %w", where(ns), err)
	}
	w.mu.Lock()
	delete(w.written, ns)
	w.mu.Unlock()
	return nil
}

func where(ns string) string {
	if ns == "" {
		return "cluster-scoped objects"
	}
	return "namespace " + ns
}

// eachReportMeta calls fn with the metadata of every report Portcullis wrote, Reports and the
// ClusterReport, read a page at a time: never the reports whole.
func eachReportMeta(ctx context.Context, r client.Reader, fn func(*metav1.PartialObjectMetadata)) error {
	for _, kind := range []string{"ReportList", "ClusterReportList"} {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(openreports.SchemeGroupVersion.WithKind(kind))
		opts := []client.ListOption{client.MatchingLabels{ManagedByLabel: ManagedBy}, client.Limit(500)}
		for {
			if err := r.List(ctx, list, opts...); err != nil {
				return err
			}
			for i := range list.Items {
				fn(&list.Items[i])
			}
			if list.Continue == "" {
				break
			}
			opts = append(opts[:2], client.Continue(list.Continue))
		}
	}
	return nil
}

// Findings reads the report in place of namespace ns ("" for the ClusterReport) and returns
// when each of its findings was first seen.
func (w *Writer) Findings(ctx context.Context, ns string) (map[Finding]int64, error) {
	var results []openreports.ReportResult
	if ns == "" {
		var r openreports.ClusterReport
		if err := w.Reader.Get(ctx, client.ObjectKey{Name: ReportName}, &r); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		results = r.Results
	} else {
		var r openreports.Report
		if err := w.Reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: ReportName}, &r); err != nil {
			return nil, client.IgnoreNotFound(err)
		}
		results = r.Results
	}
	out := make(map[Finding]int64, len(results))
	for _, r := range results {
		for _, s := range r.Subjects {
			out[Finding{UID: s.UID, Policy: r.Policy, Rule: r.Rule, Outcome: Outcome(r.Result)}] = r.Timestamp.Seconds
		}
	}
	return out, nil
}
