package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"encoding/json"

	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/internal/jsonscan"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Document is one Kubernetes object read from a file.
type Document struct {
	// File is the path as given (a file inside a given directory is joined to it); "-" is stdin.
	File string
	// Index is the position of the document in its file, from 1; items of a List are numbered
	// after it as Index.Item ("3.2").
	Index string
	// JSON is the object as JSON.
	JSON []byte
	// Line is the line of File where the document starts (its first line that is neither
	// blank nor a comment), from 1; 0 when not known.
	Line int
	// Raw is the document's YAML text as the file holds it, and Span where: the bytes
	// [Span[0], Span[1]) of File. Both are empty for the items of a List, which are not
	// documents of their own.
	Raw  []byte
	Span [2]int

	// apiVersion and kind, as reading found them (empty for a Document made otherwise).
	apiVersion, kind string
}

// Kind is the document's kind: read from its JSON, unless reading it found it already.
func (d Document) Kind() (schema.GroupVersionKind, error) {
	if d.apiVersion != "" && d.kind != "" {
		return policies.GroupVersionKind(d.apiVersion, d.kind)
	}
	return policies.TypeMeta(d.JSON)
}

// Where names the document in messages: "deploy/web.yaml" or "deploy/all.yaml (document 3)".
func (d Document) Where() string {
	if d.Index == "1" {
		return d.File
	}
	return fmt.Sprintf("%s (document %s)", d.File, d.Index)
}

// InputError is bad input: an unreadable file or a document that is not a Kubernetes object.
type InputError struct {
	Where string
	Err   error
}

func (e *InputError) Error() string { return e.Where + ": " + e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Options say how ReadWith reads.
type Options struct {
	// Exclude are globs (path.Match syntax) of paths to leave out of the directories read: a file
	// or directory is left out when its path, or its name, matches one.
	Exclude []string
}

// Skipped is a document left out of a kustomize tree, and why.
type Skipped struct {
	Where, Why string
}

// Read reads every path: a file, a directory (recursively, *.yaml, *.yml and *.json, in lexical
// order, kustomization files and test suites' directories skipped) or "-" for stdin. Empty
// documents are skipped. It returns all the problems it finds, not only the first.
func Read(paths []string, stdin io.Reader) ([]Document, error) {
	docs, _, err := ReadWith(paths, stdin, Options{})
	return docs, err
}

// ReadWith is Read with options. In a kustomize tree (below a directory that holds a
// kustomization file), a document that is not a Kubernetes object (a patch, a generator's
// configuration) is left out and returned as skipped, with the reason, rather than an error.
func ReadWith(paths []string, stdin io.Reader, o Options) ([]Document, []Skipped, error) {
	for _, g := range o.Exclude {
		if _, err := filepath.Match(g, ""); err != nil {
			return nil, nil, fmt.Errorf("--exclude %q: %w", g, err)
		}
	}
	var docs []Document
	var skipped []Skipped
	var errs []error
	for _, p := range paths {
		files, err := expand(p, o.Exclude)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			var data []byte
			if f.path == "-" {
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(f.path)
			}
			if err != nil {
				errs = append(errs, &InputError{Where: f.path, Err: err})
				continue
			}
			d, err := Split(f.path, data)
			docs = append(docs, d...)
			if f.kustomize {
				var s []Skipped
				s, err = skipNonObjects(err)
				skipped = append(skipped, s...)
			}
			errs = append(errs, err)
		}
	}
	return docs, skipped, errors.Join(errs...)
}

// skipNonObjects takes out of Split's errors those of documents that are not Kubernetes
// objects, as skipped documents; the others stay errors.
func skipNonObjects(err error) ([]Skipped, error) {
	if err == nil {
		return nil, nil
	}
	var all []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		all = joined.Unwrap()
	} else {
		all = []error{err}
	}
	var skipped []Skipped
	var kept []error
	for _, e := range all {
		var ie *InputError
		var no *notObjectError
		if errors.As(e, &ie) && errors.As(e, &no) {
			skipped = append(skipped, Skipped{Where: ie.Where, Why: no.Error() + ", in a kustomize tree (a patch or a generator's input?)"})
			continue
		}
		kept = append(kept, e)
	}
	return skipped, errors.Join(kept...)
}

// file is a file to read, and whether it sits in a kustomize tree.
type file struct {
	path      string
	kustomize bool
}

func expand(p string, exclude []string) ([]file, error) {
	if p == "-" {
		return []file{{path: p}}, nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, &InputError{Where: p, Err: WithoutPath(err)}
	}
	if !st.IsDir() {
		return []file{{path: p}}, nil
	}
	var files []file
	kustomized := map[string]bool{} // directories at or below a kustomization
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return &InputError{Where: path, Err: WithoutPath(err)}
		}
		if path != p && excluded(path, exclude) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if path != p && isSuiteDir(path) {
				return filepath.SkipDir // a test suite's fixtures, not manifests of this tree
			}
			kustomized[path] = kustomized[filepath.Dir(path)] || hasKustomization(path)
			return nil
		}
		if isKustomization(d.Name()) {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			files = append(files, file{path: path, kustomize: kustomized[filepath.Dir(path)]})
		}
		return nil
	})
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	return files, err
}

// excluded reports whether a path, or its name, matches one of the globs.
func excluded(path string, globs []string) bool {
	for _, g := range globs {
		if ok, _ := filepath.Match(g, path); ok {
			return true
		}
		if ok, _ := filepath.Match(g, filepath.Base(path)); ok {
			return true
		}
	}
	return false
}

// kustomizationFiles are the names kustomize reads a kustomization from.
var kustomizationFiles = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

func hasKustomization(dir string) bool {
	for _, name := range kustomizationFiles {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// TestSuiteFile names a policy test suite's file (kubectl portcullis test). A directory that
// holds one, below a directory being read, is skipped: its objects are the suite's fixtures.
const TestSuiteFile = "portcullis-test.yaml"

func isSuiteDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, TestSuiteFile))
	return err == nil
}

// WithoutPath is a file error without the path the caller names anyway: "no such file or
// directory" rather than "open x.yaml: no such file or directory".
func WithoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func isKustomization(name string) bool { return slices.Contains(kustomizationFiles, name) }

// Split splits a file's content into documents, expanding List objects.
func Split(file string, data []byte) ([]Document, error) {
	chunks, splitErr := splitYAML(data)
	type split struct {
		docs []Document
		err  error
	}
	// Converting each document to JSON is most of reading: on every CPU, in file order.
	results := parallel(len(chunks), func() struct{} { return struct{}{} }, func(_ struct{}, i int) split {
		c, n := chunks[i], i+1
		where := Document{File: file, Index: fmt.Sprint(n)}.Where()
		if isEmptyDocument(c.raw) {
			return split{}
		}
		js, err := toJSON(c)
		if err != nil {
			return split{err: &InputError{Where: where, Err: fmt.Errorf("invalid YAML: %w", fileLines(err, c))}}
		}
		d, err := objects(file, fmt.Sprint(n), js)
		if err != nil {
			return split{err: &InputError{Where: where, Err: err}}
		}
		for j := range d {
			d[j].Line = c.line
			if len(d) == 1 && d[j].Index == fmt.Sprint(n) {
				d[j].Raw, d[j].Span = c.raw, [2]int{c.offset, c.offset + len(c.raw)}
			}
		}
		return split{docs: d}
	})
	var docs []Document
	var errs []error
	for _, r := range results {
		docs = append(docs, r.docs...)
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if splitErr != nil {
		errs = append(errs, &InputError{Where: fmt.Sprintf("%s (document %d)", file, len(chunks)+1), Err: splitErr})
	}
	return docs, errors.Join(errs...)
}

// toJSON converts a document to JSON. A document that is JSON already (a .json file, a List
// from kubectl get -o json) is checked (jsonscan.Valid) and kept as it is: the YAML route would
// parse it as YAML, build generic maps and write them again, for the same bytes. Block YAML as
// manifests are written is converted in one pass (blockYAMLToJSON); the rest the general way.
func toJSON(c chunk) ([]byte, error) {
	if t := bytes.TrimSpace(c.raw); len(t) > 0 && t[0] == '{' && jsonscan.Valid(t) {
		return t, nil
	}
	if js, ok := blockYAMLToJSON(c.raw); ok {
		return js, nil
	}
	return sigsyaml.YAMLToJSONStrict(c.raw)
}

// chunk is one YAML document of a file, the line it starts on and the line its content starts
// on.
type chunk struct {
	raw         []byte
	start, line int
	offset      int // of raw in the file
}

// yamlLine finds the line of a YAML error: "yaml: line 3: ...".
var yamlLine = regexp.MustCompile(`\bline (\d+)\b`)

// fileLines rewrites the line of a YAML error as a line of the file: the parser counts from the
// document's first line, and its parser errors (not its scanner errors) count from 0. A fault
// found at the end of the document is on its last line.
func fileLines(err error, c chunk) error {
	msg := err.Error()
	m := yamlLine.FindStringSubmatchIndex(msg)
	if m == nil {
		return err
	}
	n, _ := strconv.Atoi(msg[m[2]:m[3]])
	if strings.Contains(msg, "did not find expected") {
		n++
	}
	last := bytes.Count(bytes.TrimRight(c.raw, "\n"), []byte("\n")) + 1
	n = min(max(n, 1), last)
	return errors.New(msg[:m[2]] + strconv.Itoa(c.start+n-1) + msg[m[3]:])
}

// splitYAML splits a file into its YAML documents at "---" lines, as the API machinery's
// YAMLReader does (a separator may be followed by a comment only), keeping the line each
// document's content starts on: its first line that is neither blank nor a comment.
func splitYAML(data []byte) ([]chunk, error) {
	var chunks []chunk
	cur := chunk{offset: -1}
	flush := func(end int) {
		if cur.offset >= 0 {
			cur.raw = data[cur.offset:end:end] // a document is the lines between separators
			chunks = append(chunks, cur)
		}
		cur = chunk{offset: -1}
	}
	offset := 0
	for n := 0; offset < len(data); n++ {
		at := offset
		line := data[at:]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		offset += len(line)
		if bytes.HasPrefix(line, []byte("---")) {
			rest := bytes.TrimSpace(line[3:])
			flush(at)
			if len(rest) > 0 && rest[0] != '#' {
				return chunks, fmt.Errorf("invalid YAML document separator: %s", rest)
			}
			continue
		}
		if cur.offset < 0 {
			cur.start, cur.offset = n+1, at
		}
		if t := bytes.TrimSpace(line); cur.line == 0 && len(t) > 0 && t[0] != '#' {
			cur.line = n + 1
		}
	}
	flush(len(data))
	return chunks, nil
}

func isEmptyDocument(raw []byte) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && !bytes.Equal(line, []byte("---")) {
			return false
		}
	}
	return true
}

// notObjectError is a document that is not a Kubernetes object.
type notObjectError struct{ why string }

func (e *notObjectError) Error() string { return "not a Kubernetes object: " + e.why }

// objects checks that js is an object with apiVersion and kind and expands a List.
func objects(file, index string, js []byte) ([]Document, error) {
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, nil
	}
	var head struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if !readHead(js, &head.APIVersion, &head.Kind, &head.Items) {
		head.APIVersion, head.Kind, head.Items = "", "", nil
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
			if s := bytes.TrimSpace(js); len(s) > 0 && s[0] == '{' {
				return nil, &notObjectError{err.Error()}
			}
			return nil, &notObjectError{describeJSON(js)}
		}
	}
	if head.APIVersion == "" || head.Kind == "" {
		var missing []string
		if head.APIVersion == "" {
			missing = append(missing, "apiVersion")
		}
		if head.Kind == "" {
			missing = append(missing, "kind")
		}
		return nil, &notObjectError{strings.Join(missing, " and ") + " not set"}
	}
	if err := removed(head.APIVersion, head.Kind); err != nil {
		return nil, err
	}
	if strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		var docs []Document
		var errs []error
		for i, item := range head.Items {
			idx := fmt.Sprintf("%s.%d", index, i+1)
			d, err := objects(file, idx, item)
			if err != nil {
				errs = append(errs, fmt.Errorf("items[%d]: %w", i, err))
				continue
			}
			docs = append(docs, d...)
		}
		return docs, errors.Join(errs...)
	}
	return []Document{{File: file, Index: index, JSON: js, apiVersion: head.APIVersion, kind: head.Kind}}, nil
}

// readHead reads an object's apiVersion, kind and items from its top level only. It returns false
// where decoding is needed: not an object, escapes, values of other types (the decoder names the
// fault).
func readHead(js []byte, apiVersion, kind *string, items *[]json.RawMessage) bool {
	plain := true
	object := jsonscan.Members(js, func(key, value []byte) {
		var ok bool
		switch string(key) {
		case "apiVersion":
			*apiVersion, ok = jsonscan.String(value)
		case "kind":
			*kind, ok = jsonscan.String(value)
		case "items":
			if *items = nil; string(value) == "null" {
				return
			}
			*items = []json.RawMessage{} // a List of no items is one still
			ok = jsonscan.Elements(value, func(v []byte) { *items = append(*items, v) })
		default:
			return
		}
		plain = plain && ok
	})
	return object && plain
}

func describeJSON(js []byte) string {
	s := bytes.TrimSpace(js)
	if len(s) == 0 {
		return "empty"
	}
	switch s[0] {
	case '[':
		return "a list, want an object"
	case '"':
		return "a string, want an object"
	}
	return "a scalar, want an object"
}
