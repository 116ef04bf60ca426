package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	sigsyaml "sigs.k8s.io/yaml"
)

// TestEditYAML: a member added is a block after the mapping's last entry, at its indentation,
// with comments, blank lines and quoting kept; a scalar is replaced where it stands; what
// cannot be done in place says so.
func TestEditYAML(t *testing.T) {
	doc := `# a comment
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # the name

  labels: {app: web}
spec:
  template:
    spec:
      containers:
      - name: web
        image: "nginx:1.27"  # pinned later
        ports: [{name: http,
                 containerPort: 8080}]

      - name: side
        image: busybox:1.37
`
	for _, tt := range []struct {
		name  string
		patch jsonpatch.JsonPatchOperation
		want  string // the edited document; "" when it cannot be edited in place
	}{
		{"a member of a block mapping", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/annotations", Value: map[string]string{"a/b": "c"}},
			strings.Replace(doc, "  labels: {app: web}\n", "  labels: {app: web}\n  annotations:\n    a/b: c\n", 1)},
		{"a member of a sequence item, after a value over two lines", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec/template/spec/containers/0/readinessProbe", Value: map[string]any{"tcpSocket": map[string]any{"port": "http"}}},
			strings.Replace(doc, "                 containerPort: 8080}]\n", "                 containerPort: 8080}]\n        readinessProbe:\n          tcpSocket:\n            port: http\n", 1)},
		{"a quoted scalar, its comment kept", jsonpatch.JsonPatchOperation{Operation: "replace", Path: "/spec/template/spec/containers/0/image", Value: "nginx:1.27@sha256:abc"},
			strings.Replace(doc, `image: "nginx:1.27"  # pinned later`, `image: nginx:1.27@sha256:abc  # pinned later`, 1)},
		{"a plain scalar", jsonpatch.JsonPatchOperation{Operation: "replace", Path: "/spec/template/spec/containers/1/image", Value: "busybox:1.37@sha256:def"},
			strings.Replace(doc, "image: busybox:1.37\n", "image: busybox:1.37@sha256:def\n", 1)},
		{"a member of a flow mapping", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/labels/team", Value: "a"},
			strings.Replace(doc, "labels: {app: web}", `labels: {app: web, "team": "a"}`, 1)},
		{"a member of a flow mapping over two lines", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec/template/spec/containers/0/ports/0/protocol", Value: "TCP"},
			strings.Replace(doc, "containerPort: 8080}]", `containerPort: 8080, "protocol": "TCP"}]`, 1)},
		{"into a sequence", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec/template/spec/containers/2", Value: map[string]string{"name": "x"}}, ""},
		{"a missing parent", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/status/phase", Value: "x"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EditYAML([]byte(doc), []jsonpatch.JsonPatchOperation{tt.patch})
			switch {
			case tt.want == "":
				if !errors.Is(err, errCannotEdit) {
					t.Errorf("got %v, want errCannotEdit\n%s", err, got)
				}
			case err != nil:
				t.Fatal(err)
			case string(got) != tt.want:
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestEditYAMLRoundTrip: over every YAML fixture of the repository, the enforced probes
// mutation edited into the text gives the very object the patches give, and the edit only adds:
// every line of the input is in the output, in order, as it was or (a flow mapping that gained a
// member) with text inserted.
func TestEditYAMLRoundTrip(t *testing.T) {
	policy := "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterPolicy\nmetadata: {name: probes}\nspec:\n  enforcement: Deny\n  rules: [{name: p, defaultProbes: {readiness: {path: /ready}, startup: {}}}]\n"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	engine, err := LoadEngine([]string{dir}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, glob := range []string{"../../examples/workloads/*.yaml", "../../manifests/library/tests/*/*.yaml", "../../manifests/library/tests/*/*/*.yaml", "../../cmd/kubectl-portcullis/app/testdata/mutate/*.yaml"} {
		m, _ := filepath.Glob(glob)
		files = append(files, m...)
	}
	edits, anew := 0, 0
	for _, f := range files {
		docs, err := Read([]string{f}, nil)
		if err != nil {
			continue // a policy, a suite: not workloads
		}
		inputs, err := Inputs(docs, "default")
		if err != nil {
			continue
		}
		admitted, err := Admit(t.Context(), engine, inputs, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range admitted {
			if len(a.Patches) == 0 || a.Doc.Raw == nil {
				continue
			}
			out, err := EditYAML(a.Doc.Raw, a.Patches)
			if errors.Is(err, errCannotEdit) {
				anew++
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", a.Doc.Where(), err)
			}
			edits++
			var got, want any
			js, err := sigsyaml.YAMLToJSON(out)
			if err != nil {
				t.Fatalf("%s: the edit is not YAML: %v\n%s", a.Doc.Where(), err, out)
			}
			if err := json.Unmarshal(js, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(a.JSON, &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: the edited text is not the mutated object:\n%s", a.Doc.Where(), out)
			}
			if missing := notIn(string(a.Doc.Raw), string(out)); missing != "" {
				t.Errorf("%s: the edit removed or changed the line %q:\n%s", a.Doc.Where(), missing, out)
			}
		}
	}
	if edits < 8 {
		t.Errorf("%d documents edited in place (%d written anew): the corpus is too small", edits, anew)
	}
	t.Logf("%d documents edited in place, %d written anew", edits, anew)
}

// notIn returns the first line of in that out does not hold in order, as it was or with text
// inserted in it, or "".
func notIn(in, out string) string {
	outLines := strings.Split(out, "\n")
	j := 0
	for l := range strings.SplitSeq(in, "\n") {
		for j < len(outLines) && !insertedInto(l, outLines[j]) {
			j++
		}
		if j == len(outLines) {
			return l
		}
		j++
	}
	return ""
}

// insertedInto reports whether out is line with text inserted at one place (or line itself).
func insertedInto(line, out string) bool {
	if len(out) < len(line) {
		return false
	}
	p := 0
	for p < len(line) && line[p] == out[p] {
		p++
	}
	return strings.HasSuffix(out, line[p:])
}
