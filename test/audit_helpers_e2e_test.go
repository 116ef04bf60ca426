package test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	cli "github.com/portcullis-dev/portcullis/cmd/kubectl-portcullis/app"
	"github.com/portcullis-dev/portcullis/internal/threads"
	"github.com/portcullis-dev/portcullis/pkg/audit"
	"github.com/portcullis-dev/portcullis/pkg/report"
)

// auditLibraryPolicy is a library policy renamed for the audit test, in Audit, on namespaces.
func auditLibraryPolicy(t *testing.T, name string, namespaces []string) string {
	doc := libraryPolicy(t, name, "  enforcement: Audit # the audit test\n")
	doc = strings.Replace(doc, "  name: "+name+"\n", "  name: audit-e2e-"+name+"\n", 1)
	return strings.Replace(doc, "  match:\n", "  match:\n    namespaces: ["+strings.Join(namespaces, ", ")+"]\n", 1)
}

// waitReports waits until every namespace's Report passes check, and returns them.
func waitReports(t *testing.T, namespaces []string, timeout time.Duration, check func(*openreports.Report) error) []*openreports.Report {
	t.Helper()
	var out []*openreports.Report
	eventually(t, timeout, func() error {
		out = out[:0]
		for _, ns := range namespaces {
			r := &openreports.Report{}
			if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: audit.ReportName}, r); err != nil {
				return err
			}
			if err := check(r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out
}

// auditNamespaces are the audit test's namespaces, which its policies match.
var auditNamespaces []string

// auditPolicyDir writes the audit test's policies to a file for the CLI.
func auditPolicyDir(t *testing.T) string {
	t.Helper()
	var docs []string
	for _, name := range auditPolicies {
		docs = append(docs, auditLibraryPolicy(t, name, auditNamespaces))
	}
	path := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkExported exports the namespaces' Pods and Deployments to a file and runs kubectl
// portcullis check on it with the audit test's policies.
func checkExported(t *testing.T, namespaces []string) report.Summary {
	t.Helper()
	dir := t.TempDir()
	var docs []string
	for _, ns := range namespaces {
		var pods corev1.PodList
		var deployments appsv1.DeploymentList
		for _, list := range []client.ObjectList{&pods, &deployments} {
			if err := e2e.client.List(t.Context(), list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
		}
		var objs []any
		for i := range pods.Items {
			pods.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
			objs = append(objs, &pods.Items[i])
		}
		for i := range deployments.Items {
			deployments.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}
			objs = append(objs, &deployments.Items[i])
		}
		for _, obj := range objs {
			js, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(js))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "exported.yaml"), []byte(strings.Join(docs, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := cli.Main(t.Context(), []string{"check", "-f", filepath.Join(dir, "exported.yaml"), "--policies", auditPolicyDir(t), "-o", "json"}, nil, &out, &errb)
	if code > 1 {
		t.Fatalf("check: exit %d: %s", code, errb.String())
	}
	var rep report.Report
	if err := yaml.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	return rep.Summary
}

// scrapePlain reads a metrics endpoint served over plain HTTP.
func scrapePlain(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // the test's own server on loopback
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// bind creates an RBAC object for the test, deleted after it.
func bind(t *testing.T, obj client.Object) {
	t.Helper()
	if err := e2e.client.Create(t.Context(), obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), obj) })
}

// readOnlyKubeconfig writes a kubeconfig that acts as user, after grant has given it its rights.
func readOnlyKubeconfig(t *testing.T, user string, grant func(user string)) string {
	t.Helper()
	grant(user)
	cfg, err := clientcmd.LoadFromFile(e2e.cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate, a.ImpersonateGroups = user, []string{"system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkCluster runs kubectl portcullis check --cluster with the audit test's policies.
func checkCluster(t *testing.T, kubeconfig string, args ...string) (report.Summary, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(t.Context(), append([]string{"check", "--cluster", "--kubeconfig", kubeconfig, "--policies", auditPolicyDir(t), "-o", "json"}, args...), nil, &out, &errb)
	if code > 1 {
		t.Fatalf("check --cluster: exit %d: %s", code, errb.String())
	}
	var rep report.Report
	if err := yaml.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.File != report.ClusterFile {
			t.Fatalf("check --cluster: a result of file %q", r.File)
		}
	}
	return rep.Summary, errb.String()
}

// fastClient is a client of the test cluster without client-side rate limits, to create many
// objects quickly.
func fastClient(t *testing.T) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(e2e.cluster.Config)
	cfg.QPS, cfg.Burst = 1000, 1000
	c, err := client.New(cfg, client.Options{Scheme: e2e.client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkScanThread: the server (in this process) scans on a thread of its own at nice 19, and
// nothing else runs below normal priority.
func checkScanThread(t *testing.T) {
	t.Helper()
	if runtime.GOMAXPROCS(0) < 2 {
		t.Errorf("GOMAXPROCS %d: the e2e tests need two processors for the scan's thread to be lowered", runtime.GOMAXPROCS(0))
		return
	}
	niced, err := threads.Niced(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	scans := 0
	for _, nice := range niced {
		if nice != 19 {
			t.Errorf("threads below normal priority: %v (thread: nice); only the scans' should be, at 19", niced)
			return
		}
		scans++
	}
	if scans == 0 {
		t.Errorf("no thread at nice 19: the audit does not scan on a lowered thread")
	}
}
