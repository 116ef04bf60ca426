package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

const libraryDir = "../manifests/library"

// TestLibrary runs every library policy through the engine on its fixtures under
// testdata/library/<policy>/{pass,fail}: on a pass fixture every rule of the policy passes, on a
// fail fixture at least one fails (for a mutating policy in Audit: it would change the object).
func TestLibrary(t *testing.T) {
	docs, err := manifest.Read([]string{libraryDir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	engine, err := manifest.LoadEngine([]string{libraryDir}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	names := libraryPolicies(t, docs)
	decoder := policies.NewDecoder(true)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			for _, verdict := range []string{"pass", "fail"} {
				files, _ := filepath.Glob(filepath.Join("testdata", "library", name, verdict, "*.yaml"))
				if len(files) == 0 {
					t.Fatalf("no %s fixtures for %s", verdict, name)
				}
				inputs, err := manifest.Read(files, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, doc := range inputs {
					res, err := decoder.Decode(doc.JSON, nil)
					if err != nil {
						t.Fatalf("%s: %v", doc.Where(), err)
					}
					res.Meta.SetNamespace("default")
					req := &policies.Request{Operation: v1alpha1.Create, Object: res}
					mutation, err := engine.Mutate(t.Context(), req)
					if err != nil {
						t.Fatal(err)
					}
					var mine []policies.Result
					for _, r := range append(mutation.Results, engine.Evaluate(t.Context(), req)...) {
						if r.Policy == name {
							mine = append(mine, r)
						}
					}
					if len(mine) == 0 {
						t.Errorf("%s: %s does not match the fixture", doc.Where(), name)
						continue
					}
					failed := 0
					for _, r := range mine {
						if r.Result == policies.Fail {
							failed++
						} else if r.Result != policies.Pass {
							t.Errorf("%s: %s", doc.Where(), r)
						}
					}
					switch {
					case verdict == "pass" && failed > 0:
						t.Errorf("%s: want pass, got %v", doc.Where(), mine)
					case verdict == "fail" && failed == 0:
						t.Errorf("%s: want a failure, every rule passed", doc.Where())
					}
				}
			}
		})
	}
}

// libraryPolicies checks the conventions of the library (Audit, a one-line description, listed in
// the kustomization) and returns the policy names.
func libraryPolicies(t *testing.T, docs []manifest.Document) []string {
	t.Helper()
	kustomization, err := os.ReadFile(filepath.Join(libraryDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, doc := range docs {
		var p v1alpha1.ClusterPolicy
		if err := yaml.Unmarshal(doc.JSON, &p); err != nil {
			t.Fatal(err)
		}
		names = append(names, p.Name)
		if p.Spec.Enforcement != v1alpha1.Audit {
			t.Errorf("%s: library policies ship in Audit, got %q", p.Name, p.Spec.Enforcement)
		}
		if d := p.Annotations["portcullis.dev/description"]; d == "" || strings.Contains(d, "\n") {
			t.Errorf("%s: needs a one-line portcullis.dev/description annotation", p.Name)
		}
		if !strings.Contains(string(kustomization), filepath.Base(doc.File)) {
			t.Errorf("%s is not listed in kustomization.yaml", doc.File)
		}
	}
	want := []string{"pod-security-baseline", "pod-security-restricted", "require-requests-limits", "require-labels", "disallow-latest-tag", "disallow-host-ports-and-namespaces", "default-probes"}
	for _, w := range want {
		found := false
		for _, n := range names {
			found = found || n == w
		}
		if !found {
			t.Errorf("library policy %s is missing", w)
		}
	}
	return names
}
