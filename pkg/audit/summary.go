package audit

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"k8s.io/apimachinery/pkg/types"
)

// Overview is what the reports say, by policy: how many resources would be denied were each
// policy enforced, by namespace. kubectl portcullis report prints it.
type Overview struct {
	Policies []PolicyOverview `json:"policies"`
	// Omitted counts the results the reports do not list, being full: the resources counted
	// here are then a lower bound, the reports' summaries exact.
	Omitted int `json:"omitted"`
}

// PolicyOverview is one policy's findings.
type PolicyOverview struct {
	Policy string `json:"policy"`
	// Resources counts the resources one of the policy's rules fails or warns on, over every
	// namespace; Violations counts those (resource, rule) results.
	Resources  int                 `json:"resources"`
	Violations int                 `json:"violations"`
	Namespaces []NamespaceOverview `json:"namespaces"`
}

// NamespaceOverview is one policy's findings in one namespace ("" for cluster-scoped objects).
type NamespaceOverview struct {
	Namespace  string `json:"namespace"`
	Resources  int    `json:"resources"`
	Violations int    `json:"violations"`
}

// Summarize gathers the listed failures and warnings of reports by policy and namespace.
func Summarize(reports []openreports.Report, cluster *openreports.ClusterReport) Overview {
	type key struct{ policy, namespace string }
	resources, violations := map[key]map[types.UID]bool{}, map[key]int{}
	var ov Overview
	add := func(ns string, results []openreports.ReportResult, annotations map[string]string) {
		var omitted int
		_, _ = fmt.Sscan(annotations[OmittedAnnotation], &omitted)
		ov.Omitted += omitted
		for _, r := range results {
			if r.Result != openreports.Result(Fail) && r.Result != openreports.Result(Warn) {
				continue
			}
			k := key{r.Policy, ns}
			if resources[k] == nil {
				resources[k] = map[types.UID]bool{}
			}
			for _, s := range r.Subjects {
				resources[k][s.UID] = true
			}
			violations[k]++
		}
	}
	for i := range reports {
		add(reports[i].Namespace, reports[i].Results, reports[i].Annotations)
	}
	if cluster != nil {
		add("", cluster.Results, cluster.Annotations)
	}
	byPolicy := map[string]*PolicyOverview{}
	for k, uids := range resources {
		p := byPolicy[k.policy]
		if p == nil {
			p = &PolicyOverview{Policy: k.policy}
			byPolicy[k.policy] = p
		}
		p.Namespaces = append(p.Namespaces, NamespaceOverview{Namespace: k.namespace, Resources: len(uids), Violations: violations[k]})
		p.Resources += len(uids)
		p.Violations += violations[k]
	}
	for _, p := range byPolicy {
		slices.SortFunc(p.Namespaces, func(a, b NamespaceOverview) int { return cmp.Compare(a.Namespace, b.Namespace) })
		ov.Policies = append(ov.Policies, *p)
	}
	slices.SortFunc(ov.Policies, func(a, b PolicyOverview) int { return cmp.Compare(a.Policy, b.Policy) })
	return ov
}

// Write writes the overview as text (a table) or JSON.
func (ov Overview) Write(w io.Writer, format string) error {
	if format == "json" {
		if ov.Policies == nil {
			ov.Policies = []PolicyOverview{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(ov)
	}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "POLICY\tNAMESPACE\tRESOURCES\tVIOLATIONS")
	for _, p := range ov.Policies {
		for _, n := range p.Namespaces {
			ns := n.Namespace
			if ns == "" {
				ns = "(cluster)"
			}
			_, _ = fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", p.Policy, ns, n.Resources, n.Violations)
		}
	}
	_ = tw.Flush()
	switch {
	case len(ov.Policies) == 0:
		b.Reset()
		b.WriteString("No violations in the reports.\n")
	case ov.Omitted > 0:
		fmt.Fprintf(&b, "\n%d results are not listed in full reports: the counts above are a lower bound; each report's summary is exact.\n", ov.Omitted)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
