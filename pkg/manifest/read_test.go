package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sigsjson "sigs.k8s.io/json"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func where(docs []Document) []string {
	out := make([]string, len(docs))
	for i, d := range docs {
		out[i] = d.Where()
	}
	return out
}

func TestRead(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.yaml":                 "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\n",
		"sub/c.json":             `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c1"}},{"apiVersion":"v1","kind":"Pod","metadata":{"name":"c2"}}]}`,
		"sub/deep/d.yml":         "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- {apiVersion: apps/v1, kind: Deployment, metadata: {name: d}}\n",
		"sub/kustomization.yaml": "resources: [c.json]\n",
		"notes.txt":              "not a manifest",
		"empty.yaml":             "",
		// A test suite's directory: its fixtures are not the tree's manifests.
		"tests/t/" + TestSuiteFile: "apiVersion: portcullis.dev/v1alpha1\nkind: Test\n",
		"tests/t/bad-pod.yaml":     "apiVersion: v1\nkind: Pod\nmetadata: {name: fixture}\n",
	})
	docs, err := Read([]string{dir, "-"}, strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stdin}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(dir, "a.yaml"),
		filepath.Join(dir, "a.yaml") + " (document 3)",
		filepath.Join(dir, "sub/c.json") + " (document 1.1)",
		filepath.Join(dir, "sub/c.json") + " (document 1.2)",
		filepath.Join(dir, "sub/deep/d.yml") + " (document 1.1)",
		"-",
	}
	if got := where(docs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"broken.yaml":   "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n",
		"list.yaml":     "- a\n- b\n",
		"scalar.yaml":   "hello\n",
		"nokind.yaml":   "apiVersion: v1\nmetadata: {name: x}\n",
		"second.yaml":   "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: [}\n",
		"dupkey.yaml":   "apiVersion: v1\nkind: Pod\nkind: Service\n",
		"baditems.json": `{"apiVersion":"v1","kind":"List","items":[{"kind":"Pod"}]}`,
		// Versions no API server of this release serves: refused, never evaluated as passing.
		"beta2.yaml":   "apiVersion: apps/v1beta2\nkind: Deployment\nmetadata: {name: x}\n",
		"cronjob.yaml": "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: x}\n",
		"psp.yaml":     "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata: {name: x}\n",
		"inlist.yaml":  "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: extensions/v1beta1, kind: Deployment, metadata: {name: x}}\n",
	})
	_, err := Read([]string{dir, filepath.Join(dir, "missing.yaml")}, nil)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"broken.yaml: invalid YAML: yaml: line 3",
		"list.yaml: not a Kubernetes object: a list, want an object",
		"scalar.yaml: not a Kubernetes object: a string, want an object",
		"nokind.yaml: not a Kubernetes object: kind not set",
		"second.yaml (document 2): invalid YAML",
		`dupkey.yaml: invalid YAML`,
		"baditems.json: items[0]: not a Kubernetes object: apiVersion not set",
		"missing.yaml: no such file or directory",
		"beta2.yaml: apiVersion apps/v1beta2 of kind Deployment was removed in Kubernetes 1.16: use apiVersion apps/v1",
		"cronjob.yaml: apiVersion batch/v1beta1 of kind CronJob was removed in Kubernetes 1.25: use apiVersion batch/v1",
		"psp.yaml: apiVersion policy/v1beta1 of kind PodSecurityPolicy was removed in Kubernetes 1.25, and the kind with it",
		"inlist.yaml: items[0]: apiVersion extensions/v1beta1 of kind Deployment was removed in Kubernetes 1.16: use apiVersion apps/v1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

// FuzzRead feeds arbitrary bytes to the manifest reader: it must return documents or an error,
// never panic, and every document it returns must be a JSON object with apiVersion and kind.
func FuzzRead(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n",
		"---\n---\n",
		`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod"}]}`,
		"- a\n",
		"a: [\n",
		"apiVersion: v1\nkind: Pod\n---\nkind: x\n",
		"\xff\xfe",
		"apiVersion: v1\nkind: List\nitems: 3\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, _ := Split("fuzz.yaml", data)
		for _, d := range docs {
			if len(d.JSON) == 0 || d.JSON[0] != '{' {
				t.Fatalf("document %s is not a JSON object: %q", d.Index, d.JSON)
			}
		}
	})
}

// TestDocumentLines: each document knows the line its content starts on (after separators,
// blank lines and comments); the items of a List, the List's.
func TestDocumentLines(t *testing.T) {
	data := "---\n# the first\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---   # a comment\n\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n- {apiVersion: v1, kind: Pod, metadata: {name: c}}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: d}\n"
	docs, err := Split("f.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, fmt.Sprintf("%s:%d", d.Index, d.Line))
	}
	if want := "1:3 2.1:8 2.2:8 3:15"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
	if _, err := Split("f.yaml", []byte("apiVersion: v1\n--- kind: Pod\n")); err == nil || !strings.Contains(err.Error(), "invalid YAML document separator: kind: Pod") {
		t.Errorf("a separator followed by content: %v", err)
	}
}

// TestYAMLErrorLines: a YAML error names the line of the file where the fault is, in any
// document of the file.
func TestYAMLErrorLines(t *testing.T) {
	for _, tt := range []struct{ data, want string }{
		{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n labels: {a: b}\nspec: {}\n", "line 5: did not find expected key"},
		{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n\tlabels: {}\n", "line 5: found a tab character that violates indentation"},
		{"apiVersion: v1\nkind: Pod\nmetadata: {name: x\n", "line 3: did not find expected ',' or '}'"},
		{"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n# b\napiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n labels: {}\n", "(document 2): invalid YAML: yaml: line 10: did not find expected key"},
	} {
		_, err := Split("f.yaml", []byte(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want %q", tt.data, err, tt.want)
		}
	}
}

// FuzzReadHead holds readHead, which reads an object's apiVersion, kind and items from its top
// level, to the decoder it stands in for: where it reads a valid document, decoding agrees.
func FuzzReadHead(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod"},{"a":[1,"]"]}]}`,
		`{"apiVersion":"v1","kind":"PodList","items":[]}`,
		`{"apiVersion":"v1","kind":"Pod","items":null,"spec":{"kind":"x"}}`,
		`{"kind":1}`,
	} {
		f.Add([]byte(s))
	}
	type head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		var fast head
		if !readHead(js, &fast.APIVersion, &fast.Kind, &fast.Items) || !json.Valid(js) {
			return
		}
		var want head
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &want); err != nil {
			t.Fatalf("readHead read %s, which does not decode: %v", js, err)
		}
		if fast.APIVersion != want.APIVersion || fast.Kind != want.Kind || (fast.Items == nil) != (want.Items == nil) || len(fast.Items) != len(want.Items) {
			t.Fatalf("readHead(%s) = %+v, want %+v", js, fast, want)
		}
		for i := range fast.Items {
			if !bytes.Equal(bytes.TrimSpace(fast.Items[i]), bytes.TrimSpace(want.Items[i])) {
				t.Fatalf("readHead(%s) item %d = %s, want %s", js, i, fast.Items[i], want.Items[i])
			}
		}
	})
}
