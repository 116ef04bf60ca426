package manifest

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"
)

// agreesWithGeneral converts doc both ways and reports whether the one-pass conversion took it;
// where it did, the general way must take it too, to the same values.
func agreesWithGeneral(t *testing.T, doc []byte) bool {
	t.Helper()
	fast, ok := blockYAMLToJSON(doc)
	if !ok {
		return false
	}
	general, err := sigsyaml.YAMLToJSONStrict(doc)
	if err != nil {
		t.Errorf("the one-pass conversion took a document the general way refuses (%v):\n%s\n=> %s", err, doc, fast)
		return true
	}
	if a, b := jsonValue(t, fast), jsonValue(t, general); !reflect.DeepEqual(a, b) {
		t.Errorf("conversions differ for\n%s\none pass: %s\ngeneral:  %s", doc, fast, general)
	}
	return true
}

func jsonValue(t *testing.T, js []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("invalid JSON %s: %v", js, err)
	}
	return v
}

func TestBlockYAMLToJSON(t *testing.T) {
	for _, c := range []struct {
		doc  string
		took bool // whether the one-pass conversion takes it (and then agrees)
	}{
		{"a: 1\nb: x\n", true},
		{"apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {app: web, tier: \"1\"}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.25\n    args: [\"--port=80\", -v, 'it''s']\n    ports:\n      - containerPort: 80\n", true},
		{"a:\n- b\n- c: 1\n  d: [x, [y, {z: 2}]]\ne: ~\nf:\ng: {}\nh: []\n", true},
		{"- - a\n  - b\n- c\n", true},
		{"v: [yes, No, on, OFF, y, n, true, False, null, Null, NULL, ~]\n", true},
		{"v: [0x1F, 0o17, 017, 1_000, -5, +7, 0b101, -0b11, 9223372036854775807, 18446744073709551615, 99999999999999999999]\n", true},
		{"v: [1.5, -2.25e3, 1e21, 1e-7, 0.0000001, 3., +1.0, 1.0]\n", true},
		{"v: [2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10, 1.2.3, -c, --port=80, +x, 1e999]\n", true},
		{"v: \"tab\\there \\\"q\\\" \\\\ \\u00e9 \\u263a\"\nw: 'single ''q'' # not a comment'\nx: a#b # a comment\n", true},
		{"url: http://example.org:8080/x?y=1#frag\ncolon: a:b\n", true},
		{"  a: 1\n  b:\n    c: 2\n", true},
		{"\"quoted key\": 1\n'other': 2\n", true},
		{"a: {b: [1, 2], \"c\": 'd'}\n", true},
		{"é: ünïcödé ☺\n", true},
		{"a: 1 # c\n# comment\nb:   # c\n  - x   # c\n", true},
		{"-\n  a: 1\n-\n- b\n", true},
		// Left to the general way, which reads or refuses them itself.
		{"a: |\n  text\n", false},
		{"a: >-\n  text\n", false},
		{"a: multi\n  line\n", false},
		{"a: \"multi\n  line\"\n", false},
		{"a: [1,\n  2]\n", false},
		{"a: &x 1\nb: *x\n", false},
		{"a: !!str 1\n", false},
		{"? a\n: 1\n", false},
		{"a: 1\na: 2\n", false},
		{"a: 1\n\"a\": 2\n", false},
		{"a: {b: 1, b: 2}\n", false},
		{"a:\tb\n", false},
		{"a: b\r\n", false},
		{"1: a\n", false},
		{"yes: a\n", false},
		{"~: a\n", false},
		{"a: .inf\n", false},
		{"<<: {a: 1}\n", false},
		{"a: b: c\n", false},
		{"a: 1\n  b: 2\n", false},
		{"a:\n    b: 1\n  c: 2\n", false},
		{"a: 1\n- b\n", false},
		{"a: [1, ]\n", false},
		{"a: {b}\n", false},
		{"a: [b: c]\n", false},
		{"a: \"\\x41\"\n", false},
		{"a: \"\\/\"\n", false},
		{"a: \"\\ud800\"\n", false},
		{"%YAML 1.1\n---\na: 1\n", false},
		{"a: 1\n...\n", false},
		{"a: \u0085\n", false},
		{"a: \xff\n", false},
		{"\ufeffa: 1\n", false},
		{"a: 'unclosed\n", false},
		{"a: `b`\n", false},
		{"a: @b\n", false},
		{"a: %b\n", false},
	} {
		if took := agreesWithGeneral(t, []byte(c.doc)); took != c.took {
			t.Errorf("one-pass conversion took %q: %v, want %v", c.doc, took, c.took)
		}
	}
}

// TestBlockYAMLToJSONOnTheRepository converts every YAML document of the repository both ways:
// the manifests, the policy library, the examples and every test's data.
func TestBlockYAMLToJSONOnTheRepository(t *testing.T) {
	var docs, took int
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			return nil
		}
		data, err := os.ReadFile(path) //nolint:gosec // the repository's own files
		if err != nil {
			return err
		}
		chunks, _ := splitYAML(data)
		for _, c := range chunks {
			if isEmptyDocument(c.raw) {
				continue
			}
			docs++
			if agreesWithGeneral(t, c.raw) {
				took++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d of %d documents converted in one pass", took, docs)
	if docs == 0 || took < docs/3 {
		t.Errorf("%d of %d documents converted in one pass, want at least a third", took, docs)
	}
}

func FuzzBlockYAMLToJSON(f *testing.F) {
	for _, s := range []string{
		"a: 1\nb: [x, 'y', \"z\"]\nc:\n- d: {e: f}\n  g: ~\n",
		"- - a\n  - b\n- -c\n",
		"v: [yes, 0x1F, 1_000, 1.5e3, 2001-12-14, -0b11]\n",
		"a: \"\\u00e9\\n\" # c\n'b''': a#b\n",
	} {
		f.Add([]byte(s))
	}
	// And the examples' documents, as manifests are written.
	files, _ := filepath.Glob("../../examples/*/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file) //nolint:gosec // the repository's own files
		if err != nil {
			f.Fatal(err)
		}
		chunks, _ := splitYAML(data)
		for _, c := range chunks {
			f.Add(c.raw)
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		agreesWithGeneral(t, doc)
	})
}

// BenchmarkYAMLToJSON converts the ~7 KB benchmark Pod, as YAML, both ways.
func BenchmarkYAMLToJSON(b *testing.B) {
	raw, err := os.ReadFile("../policies/testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	doc, err := sigsyaml.JSONToYAML(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("one-pass", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if _, ok := blockYAMLToJSON(doc); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if _, err := sigsyaml.YAMLToJSONStrict(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
