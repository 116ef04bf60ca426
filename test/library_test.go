package test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/policytest"
)

const libraryDir = "../manifests/library"

// The library's conventions: the categories and severities its policies use.
var (
	libraryCategories = []string{"Pod Security", "Best Practices", "Supply Chain", "Multi-Tenancy", "Networking"}
	librarySeverities = []string{"low", "medium", "high"}
	// podControllerKinds are the kinds a suite judges to show a Pod policy covers pod controllers.
	podControllerKinds = []string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob"}
)

// TestLibrary holds the library to its conventions, and runs its test suites: every policy
// ships in Audit with a title, a category, a severity and a description, is listed in the
// kustomization, and has a suite (tests/<name>/portcullis-test.yaml) with pass and fail cases,
// and a pod controller case for a Pod policy; every expectation of every suite holds.
func TestLibrary(t *testing.T) {
	docs, err := manifest.Read([]string{libraryDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kustomization, err := os.ReadFile(filepath.Join(libraryDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) < 30 {
		t.Errorf("the library has %d policies, want 30 or more", len(docs))
	}
	c, err := policies.NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	runner := &policytest.Runner{Compiler: c, Now: time.Now}
	for _, doc := range docs {
		var p v1alpha1.ClusterPolicy
		if err := yaml.Unmarshal(doc.JSON, &p); err != nil {
			t.Fatal(err)
		}
		t.Run(p.Name, func(t *testing.T) {
			if p.Spec.Enforcement != v1alpha1.Audit {
				t.Errorf("library policies ship in Audit, got %q", p.Spec.Enforcement)
			}
			for _, key := range []string{"title", "category", "severity", "description"} {
				if v := p.Annotations["policies.portcullis.dev/"+key]; v == "" || strings.Contains(v, "\n") {
					t.Errorf("needs a one-line policies.portcullis.dev/%s annotation", key)
				}
			}
			if cat := p.Annotations[policies.CategoryAnnotation]; !slices.Contains(libraryCategories, cat) {
				t.Errorf("category %q: want one of %v", cat, libraryCategories)
			}
			if sev := p.Annotations[policies.SeverityAnnotation]; !slices.Contains(librarySeverities, sev) {
				t.Errorf("severity %q: want one of %v", sev, librarySeverities)
			}
			if !strings.Contains(string(kustomization), "- "+filepath.Base(doc.File)+"\n") {
				t.Errorf("%s is not listed in kustomization.yaml", doc.File)
			}
			file := filepath.Join(libraryDir, "tests", p.Name, policytest.FileName)
			res := runner.Run(t.Context(), file)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			outcomes := map[policies.Outcome]int{}
			controller := false
			for _, c := range res.Cases {
				if c.Expected.Policy != p.Name {
					continue
				}
				outcomes[c.Expected.Result]++
				controller = controller || slices.Contains(podControllerKinds, c.Expected.Resource.Kind)
				if !c.OK() {
					t.Errorf("%s: %s", c.Name(), strings.Join(c.Problems, "; "))
				}
			}
			if outcomes[policies.Pass] == 0 || outcomes[policies.Fail] == 0 {
				t.Errorf("%s: want pass and fail cases, got %v", file, outcomes)
			}
			if slices.Contains(p.Spec.Match.Kinds, "Pod") && !controller {
				t.Errorf("%s: a Pod policy needs a pod controller case (one of %v)", file, podControllerKinds)
			}
		})
	}
}
