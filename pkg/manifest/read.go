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

	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
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

// Read reads every path: a file, a directory (recursively, *.yaml, *.yml and *.json, in lexical
// order, kustomization files and test suites' directories skipped) or "-" for stdin. Empty documents are skipped. It returns
// all the problems it finds, not only the first.
func Read(paths []string, stdin io.Reader) ([]Document, error) {
	var docs []Document
	var errs []error
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			var data []byte
			if f == "-" {
				data, err = io.ReadAll(stdin)
			} else {
				data, err = os.ReadFile(f)
			}
			if err != nil {
				errs = append(errs, &InputError{Where: f, Err: err})
				continue
			}
			d, err := Split(f, data)
			docs = append(docs, d...)
			errs = append(errs, err)
		}
	}
	return docs, errors.Join(errs...)
}

func expand(p string) ([]string, error) {
	if p == "-" {
		return []string{p}, nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return nil, &InputError{Where: p, Err: unwrapPathError(err)}
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return &InputError{Where: path, Err: unwrapPathError(err)}
		}
		if d.IsDir() {
			if path != p && isSuiteDir(path) {
				return filepath.SkipDir // a test suite's fixtures, not manifests of this tree
			}
			return nil
		}
		if isKustomization(d.Name()) {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			files = append(files, path)
		}
		return nil
	})
	slices.Sort(files)
	return files, err
}

// TestSuiteFile names a policy test suite's file (kubectl portcullis test). A directory that
// holds one, below a directory being read, is skipped: its objects are the suite's fixtures.
const TestSuiteFile = "portcullis-test.yaml"

func isSuiteDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, TestSuiteFile))
	return err == nil
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func isKustomization(name string) bool {
	switch name {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		return true
	}
	return false
}

// Split splits a file's content into documents, expanding List objects.
func Split(file string, data []byte) ([]Document, error) {
	var docs []Document
	var errs []error
	chunks, err := splitYAML(data)
	for i, c := range chunks {
		n := i + 1
		where := Document{File: file, Index: fmt.Sprint(n)}.Where()
		if isEmptyDocument(c.raw) {
			continue
		}
		js, err := sigsyaml.YAMLToJSONStrict(c.raw)
		if err != nil {
			errs = append(errs, &InputError{Where: where, Err: fmt.Errorf("invalid YAML: %w", fileLines(err, c))})
			continue
		}
		d, err := objects(file, fmt.Sprint(n), js)
		if err != nil {
			errs = append(errs, &InputError{Where: where, Err: err})
			continue
		}
		for j := range d {
			d[j].Line = c.line
		}
		docs = append(docs, d...)
	}
	if err != nil {
		errs = append(errs, &InputError{Where: fmt.Sprintf("%s (document %d)", file, len(chunks)+1), Err: err})
	}
	return docs, errors.Join(errs...)
}

// chunk is one YAML document of a file, the line it starts on and the line its content starts
// on.
type chunk struct {
	raw         []byte
	start, line int
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
	var cur chunk
	flush := func() {
		if len(cur.raw) > 0 {
			chunks = append(chunks, cur)
		}
		cur = chunk{}
	}
	for n, line := range bytes.SplitAfter(data, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("---")) {
			rest := bytes.TrimSpace(line[3:])
			if len(rest) > 0 && rest[0] != '#' {
				flush()
				return chunks, fmt.Errorf("invalid YAML document separator: %s", rest)
			}
			flush()
			continue
		}
		if len(cur.raw) == 0 {
			cur.start = n + 1
		}
		if t := bytes.TrimSpace(line); cur.line == 0 && len(t) > 0 && t[0] != '#' {
			cur.line = n + 1
		}
		cur.raw = append(cur.raw, line...)
	}
	flush()
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
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
		if s := bytes.TrimSpace(js); len(s) > 0 && s[0] == '{' {
			return nil, fmt.Errorf("not a Kubernetes object: %w", err)
		}
		return nil, fmt.Errorf("not a Kubernetes object: %s", describeJSON(js))
	}
	if head.APIVersion == "" || head.Kind == "" {
		var missing []string
		if head.APIVersion == "" {
			missing = append(missing, "apiVersion")
		}
		if head.Kind == "" {
			missing = append(missing, "kind")
		}
		return nil, fmt.Errorf("not a Kubernetes object: %s not set", strings.Join(missing, " and "))
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
	return []Document{{File: file, Index: index, JSON: js}}, nil
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
