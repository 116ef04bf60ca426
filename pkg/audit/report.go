package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// What the reports are named and marked with.
const (
	// ReportName is the name of every namespace's Report and of the ClusterReport.
	ReportName = "portcullis"
	// Source is the reports' source.
	Source = "portcullis"
	// ManagedByLabel marks the reports Portcullis writes, with the value ManagedBy.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "portcullis"
	// ContentHashAnnotation holds a digest of the report's content: a report is written only
	// when its content changes, and a restart does not write again what is in place.
	ContentHashAnnotation = "portcullis.dev/content-hash"
	// OmittedAnnotation counts the results a full report does not list (the summary counts them).
	OmittedAnnotation = "portcullis.dev/results-omitted"
	// PolicyCountsAnnotation holds the report's results counted by policy (JSON: policy ->
	// outcome -> count): what the policies' status.audit sums, over every report, when replicas
	// share the audit.
	PolicyCountsAnnotation = "portcullis.dev/policy-counts"
	// MaxReportBytes bounds the listed results' size, well under etcd's 1.5 MiB object limit.
	MaxReportBytes = 1 << 20
	// resultOverhead is what a listed result takes beyond its strings, JSON keys and
	// reference included.
	resultOverhead = 320
)

// Describer tells a policy's category and severity, as its annotations give them.
type Describer func(policy string) (category, severity string)

// DescriberOf describes the policies of engine e.
func DescriberOf(e *policies.Engine) Describer {
	m := map[string][2]string{}
	for p := range e.Policies() {
		m[p.Name] = [2]string{p.Category, p.Severity}
	}
	return func(policy string) (string, string) { d := m[policy]; return d[0], d[1] }
}

// Build returns the report of content: a Report in its namespace, or the ClusterReport for
// cluster-scoped objects (Namespace ""). It lists at most maxResults results and at most
// MaxReportBytes of them; the summary counts everything.
func Build(c Content, maxResults int, keep []Outcome, describe Describer) client.Object {
	results, omitted := c.Results, c.Omitted
	size := 0
	for i, r := range results {
		size += resultOverhead + len(r.Message) + len(r.Policy) + len(r.Rule) + len(r.Object.Name) + len(r.Object.Namespace) + len(r.Object.APIVersion) + len(r.Object.Kind)
		if i == maxResults || size > MaxReportBytes {
			omitted += len(results) - i
			results = results[:i]
			break
		}
	}
	listed := make([]openreports.ReportResult, len(results))
	for i, r := range results {
		category, severity := describe(r.Policy)
		listed[i] = openreports.ReportResult{
			Policy: r.Policy, Rule: r.Rule, Result: openreports.Result(r.Outcome), Description: r.Message,
			Category: category, Severity: openreports.ResultSeverity(severity), Scored: true,
			Timestamp:  metav1.Timestamp{Seconds: r.Since.Unix()},
			Subjects:   []corev1.ObjectReference{r.Object},
			Properties: map[string]string{"action": string(r.Action)},
		}
	}
	filter := make([]openreports.StatusFilter, len(keep))
	for i, o := range keep {
		filter[i] = openreports.StatusFilter(o)
	}
	summary := openreports.ReportSummary{Pass: c.Summary[Pass], Fail: c.Summary[Fail], Warn: c.Summary[Warn], Error: c.Summary[Error], Skip: c.Summary[Skip]}
	config := &openreports.ReportConfiguration{Limits: openreports.Limits{MaxResults: maxResults, StatusFilter: filter}}
	meta := metav1.ObjectMeta{Name: ReportName, Namespace: c.Namespace, Labels: map[string]string{ManagedByLabel: ManagedBy},
		Annotations: map[string]string{OmittedAnnotation: strconv.Itoa(omitted)}}
	byPolicy, err := json.Marshal(c.ByPolicy)
	if err != nil {
		byPolicy = []byte("{}") // plain maps of counts: cannot fail
	}
	meta.Annotations[PolicyCountsAnnotation] = string(byPolicy)
	meta.Annotations[ContentHashAnnotation] = hashOf(summary, listed, config, omitted, meta.Annotations[PolicyCountsAnnotation])
	if c.Namespace == "" {
		return &openreports.ClusterReport{TypeMeta: metav1.TypeMeta{APIVersion: openreports.SchemeGroupVersion.String(), Kind: "ClusterReport"},
			ObjectMeta: meta, Source: Source, Configuration: config, Summary: summary, Results: listed}
	}
	return &openreports.Report{TypeMeta: metav1.TypeMeta{APIVersion: openreports.SchemeGroupVersion.String(), Kind: "Report"},
		ObjectMeta: meta, Source: Source, Configuration: config, Summary: summary, Results: listed}
}

// hashOf digests what a report says.
func hashOf(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		_ = enc.Encode(p) // plain structs: cannot fail
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// ContentHash is the content digest a report carries.
func ContentHash(obj client.Object) string { return obj.GetAnnotations()[ContentHashAnnotation] }
