package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cli "github.com/portcullis-dev/portcullis/cmd/kubectl-portcullis/app"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/audit"
)

// auditPolicies are the library policies the audit test applies, in Audit, limited to its
// namespaces so that other tests' objects do not move its counts.
var auditPolicies = []string{"pod-security-baseline", "disallow-latest-tag", "require-requests-limits"}

// auditWorkload is a Pod or a Deployment: the even ones violate every audit policy, the odd
// ones none.
func auditWorkload(ns string, i int, deployment bool) client.Object {
	c := corev1.Container{Name: "app", Image: "registry.example/app:1.0", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")}}}
	if i%2 == 0 {
		c.Image, c.Resources = "registry.example/app:latest", corev1.ResourceRequirements{}
		c.SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
	}
	labels := map[string]string{"app": fmt.Sprintf("w%02d", i)}
	spec := corev1.PodSpec{Containers: []corev1.Container{c}}
	if !deployment {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%02d", i), Namespace: ns, Labels: labels}, Spec: spec}
	}
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("deploy-%02d", i), Namespace: ns},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}}}
}

// TestAuditReports: 300 Pods and Deployments exist in three namespaces before any policy. Once
// library policies in Audit match them, the server's background audit writes one Report per
// namespace: every violating object listed once per rule it fails, passes counted in the
// summary, and the counts are those of kubectl portcullis check on the same objects exported
// to files. A policy change is followed.
func TestAuditReports(t *testing.T) {
	ctx := t.Context()
	fast := fastClient(t)
	namespaces := []string{newNamespace(t, nil), newNamespace(t, nil), newNamespace(t, nil)}
	auditNamespaces = namespaces
	violating := map[types.UID]string{}
	for _, ns := range namespaces {
		for i := range 100 {
			obj := auditWorkload(ns, i/2, i%2 == 1)
			if err := fast.Create(ctx, obj); err != nil {
				t.Fatal(err)
			}
			if (i/2)%2 == 0 {
				violating[obj.GetUID()] = ns + "/" + obj.GetName()
			}
		}
	}
	for _, name := range auditPolicies {
		applyPolicy(t, auditLibraryPolicy(t, name, namespaces))
	}

	// Three rules on 100 objects a namespace: 150 failures (50 violating objects), 150 passes.
	reports := waitReports(t, namespaces, 60*time.Second, func(r *openreports.Report) error {
		if s := r.Summary; s.Fail != 150 || s.Pass != 150 || s.Warn+s.Error+s.Skip != 0 {
			return fmt.Errorf("report of %s: summary %+v, want 150 fail, 150 pass", r.Namespace, s)
		}
		return nil
	})
	checkListedOnce(t, reports, violating)
	checkScanThread(t)

	checkAuditStatus(t)

	// The CLI on the same objects, exported to files, counts the same.
	cliSummary := checkExported(t, namespaces)
	var pass, fail int
	for _, r := range reports {
		pass, fail = pass+r.Summary.Pass, fail+r.Summary.Fail
	}
	if cliSummary.Pass != pass || cliSummary.Fail != fail || cliSummary.Error != 0 || cliSummary.Skip != 0 {
		t.Errorf("check on the exported objects: %+v; the reports: %d pass, %d fail", cliSummary, pass, fail)
	}

	checkReportCommand(t)

	checkClusterPreview(t, namespaces, pass, fail)

	ns := namespaces[0]
	checkFreshness(t, ns)

	checkAuditMetrics(t)

	// A policy change: the reports follow within 60 s.
	if err := e2e.client.Delete(ctx, &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "audit-e2e-require-requests-limits"}}); err != nil {
		t.Fatal(err)
	}
	waitReports(t, namespaces, 60*time.Second, func(r *openreports.Report) error {
		fail, pass := 100, 100 // two rules on 100 objects, 50 of them violating
		if r.Namespace == ns {
			fail, pass = 98, 102 // 49 violating objects, 51 not
		}
		if s := r.Summary; s.Fail != fail || s.Pass != pass || len(r.Results) != fail {
			return fmt.Errorf("report of %s after a policy went: summary %+v, %d results; want %d fail, %d pass", r.Namespace, s, len(r.Results), fail, pass)
		}
		return nil
	})
}

// checkListedOnce: every violating object is listed once per rule it fails, nothing else is.
func checkListedOnce(t *testing.T, reports []*openreports.Report, violating map[types.UID]string) {
	t.Helper()
	seen := map[string]bool{}
	listedObjects := map[types.UID]bool{}
	for _, r := range reports {
		if r.Source != audit.Source || r.Labels[audit.ManagedByLabel] != audit.ManagedBy || len(r.Results) != 150 {
			t.Errorf("report of %s: source %q, labels %v, %d results; want 150", r.Namespace, r.Source, r.Labels, len(r.Results))
		}
		for _, res := range r.Results {
			if len(res.Subjects) != 1 || res.Result != "fail" || res.Properties["action"] != "Audit" || res.Category == "" || res.Severity == "" || res.Description == "" {
				t.Errorf("result %+v", res)
				continue
			}
			s := res.Subjects[0]
			key := string(s.UID) + "/" + res.Policy + "/" + res.Rule
			if seen[key] {
				t.Errorf("%s/%s listed twice for %s/%s", s.Namespace, s.Name, res.Policy, res.Rule)
			}
			seen[key], listedObjects[s.UID] = true, true
			if violating[s.UID] == "" {
				t.Errorf("%s/%s is listed, yet it violates nothing", s.Namespace, s.Name)
			}
		}
	}
	if len(listedObjects) != len(violating) {
		t.Errorf("%d objects listed, want the %d violating ones", len(listedObjects), len(violating))
	}
}

// checkAuditStatus: the policies' status says what the reports say, and kubectl get shows the
// violations at a glance.
func checkAuditStatus(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	eventually(t, 20*time.Second, func() error {
		var p v1alpha1.ClusterPolicy
		if err := e2e.client.Get(ctx, client.ObjectKey{Name: "audit-e2e-pod-security-baseline"}, &p); err != nil {
			return err
		}
		if a := p.Status.Audit; a == nil || a.Fail != 150 || a.Pass != 150 || a.Violations != 150 || a.LastScanTime == nil {
			return fmt.Errorf("status.audit %+v, want 150 fail, 150 pass, 150 violations, a scan time", a)
		}
		return nil
	})
	// Each policy's status is patched on its own: another policy's may come a moment later.
	eventually(t, 20*time.Second, func() error {
		out, _, err := kubectl(t, "", "get", "clusterpolicy", "audit-e2e-disallow-latest-tag")
		if err != nil {
			return fmt.Errorf("kubectl get clusterpolicy: %w", err)
		}
		if lines := strings.Split(out, "\n"); !strings.Contains(out, "VIOLATIONS") || len(lines) < 2 || len(strings.Fields(lines[1])) < 4 || !strings.Contains(strings.Fields(lines[1])[3], "150") {
			return fmt.Errorf("kubectl get clusterpolicy: no 150 violations\n%s", out)
		}
		return nil
	})
}

// checkReportCommand: kubectl portcullis report gives, per policy and namespace, the resources
// that would be denied.
func checkReportCommand(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	var repOut, repErr bytes.Buffer
	if code := cli.Main(ctx, []string{"report", "-A", "--kubeconfig", e2e.cluster.Kubeconfig, "-o", "json"}, nil, &repOut, &repErr); code != 0 {
		t.Fatalf("report: exit %d: %s", code, repErr.String())
	}
	var overview audit.Overview
	if err := json.Unmarshal(repOut.Bytes(), &overview); err != nil {
		t.Fatal(err)
	}
	for _, p := range overview.Policies {
		if p.Policy == "audit-e2e-disallow-latest-tag" && (p.Resources != 150 || len(p.Namespaces) != 3 || p.Namespaces[0].Resources != 50) {
			t.Errorf("report: %+v, want 150 resources, 50 in each of 3 namespaces", p)
		}
	}
	if !slices.ContainsFunc(overview.Policies, func(p audit.PolicyOverview) bool { return p.Policy == "audit-e2e-disallow-latest-tag" }) {
		t.Errorf("report: no audit-e2e-disallow-latest-tag in %s", repOut.String())
	}
}

// checkClusterPreview: check --cluster, as a user who may only read, finds what the reports say
// (pass and fail), without installing anything; as one who may list Pods only, it names what it
// could not list.
func checkClusterPreview(t *testing.T, namespaces []string, pass, fail int) {
	t.Helper()
	viewer := readOnlyKubeconfig(t, "auditor", func(user string) {
		// The shipped role the audit reads with: get, list and watch of the workload kinds
		// (envtest runs no controller that fills aggregated roles such as view).
		bind(t, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-auditor"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "portcullis-audit-workloads"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}})
	})
	live, stderr := checkCluster(t, viewer, "-A")
	if live.Pass != pass || live.Fail != fail || live.Error != 0 {
		t.Errorf("check --cluster -A: %+v (stderr %q); the reports: %d pass, %d fail", live, stderr, pass, fail)
	}
	podReader := readOnlyKubeconfig(t, "pod-reader", func(user string) {
		bind(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "e2e-pod-reader", Namespace: namespaces[1]},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"get", "list"}}}})
		bind(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "e2e-pod-reader", Namespace: namespaces[1]},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "e2e-pod-reader"},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}})
	})
	live, stderr = checkCluster(t, podReader, "-n", namespaces[1])
	if live.Fail != 75 || live.Pass != 75 || !strings.Contains(stderr, "listing deployments.apps: forbidden (HTTP 403)") {
		t.Errorf("check --cluster -n %s as a reader of Pods only: %+v, stderr:\n%s\nwant the Pods' 75 fail, 75 pass, and deployments named as not listed", namespaces[1], live, stderr)
	}
}

// checkFreshness: between scans, within 30 s, a fixed object's results go, a deleted object's
// go, a new violating object's come (in namespace ns).
func checkFreshness(t *testing.T, ns string) {
	t.Helper()
	ctx := t.Context()
	var fixed appsv1.Deployment
	if err := e2e.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "deploy-00"}, &fixed); err != nil {
		t.Fatal(err)
	}
	fixed.Spec.Template.Spec = auditWorkload(ns, 1, true).(*appsv1.Deployment).Spec.Template.Spec
	if err := e2e.client.Update(ctx, &fixed); err != nil {
		t.Fatal(err)
	}
	if err := e2e.client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pod-02"}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	added := auditWorkload(ns, 60, false)
	if err := e2e.client.Create(ctx, added); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitReports(t, []string{ns}, 30*time.Second, func(r *openreports.Report) error {
		listed := map[string]int{}
		for _, res := range r.Results {
			listed[res.Subjects[0].Name]++
		}
		// Of 50 violating objects one is fixed, one deleted, one added: 49 fail 3 rules each; the
		// 51 others pass them.
		if s := r.Summary; listed["deploy-00"] != 0 || listed["pod-02"] != 0 || listed["pod-60"] != 3 || s.Fail != 147 || s.Pass != 153 {
			return fmt.Errorf("after a fix, a deletion and a creation: deploy-00 listed %d times, pod-02 %d, pod-60 %d; summary %+v (want 147 fail, 153 pass)",
				listed["deploy-00"], listed["pod-02"], listed["pod-60"], s)
		}
		return nil
	})
	t.Logf("a fix, a deletion and a creation in the report after %s", time.Since(start).Round(100*time.Millisecond))
}

// checkAuditMetrics: real Prometheus metrics, from the replica that leads: the violations by
// ClusterPolicy, and the scans.
func checkAuditMetrics(t *testing.T) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		m := scrapeMetrics(t)
		if !strings.Contains(m, "portcullis_audit_violations{") {
			m = scrapePlain(t, e2e.secondMetricsURL) // the second server leads
		}
		for _, want := range []string{
			`portcullis_audit_violations{policy="audit-e2e-pod-security-baseline",result="fail"} 149`,
			`portcullis_audit_scan_duration_seconds_count{scan="partial"}`,
			`portcullis_audit_objects_scanned_total`,
		} {
			if !strings.Contains(m, want) {
				var audit []string
				for _, l := range strings.Split(m, "\n") {
					if strings.HasPrefix(l, "portcullis_audit_violations") {
						audit = append(audit, l)
					}
				}
				return fmt.Errorf("metrics lack %s; the audit violations are:\n%s", want, strings.Join(audit, "\n"))
			}
		}
		return nil
	})
}
