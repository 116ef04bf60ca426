package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"gomodules.xyz/jsonpatch/v2"
	sigsyaml "sigs.k8s.io/yaml"
)

// errCannotEdit is a patch that EditYAML cannot apply to the text as a person would: the
// caller then writes the object anew.
var errCannotEdit = errors.New("the patch cannot be applied to the text in place")

// EditYAML applies JSON patches to a YAML document's text as a person would edit it: comments,
// key order, quoting, blank lines and the rest of the formatting stay, a field added is a block
// inserted after the last entry of its mapping (at that mapping's indentation), and a scalar
// replaced is replaced where it stands. It supports what mutating rules do: adding a member to
// a block mapping, and replacing a scalar. Any other patch returns an error wrapping
// errCannotEdit.
func EditYAML(doc []byte, patches []jsonpatch.JsonPatchOperation) ([]byte, error) {
	for _, p := range patches {
		var root yamlv3.Node
		if err := yamlv3.Unmarshal(doc, &root); err != nil {
			return nil, err
		}
		if root.Kind != yamlv3.DocumentNode || len(root.Content) != 1 {
			return nil, fmt.Errorf("%w: not one document", errCannotEdit)
		}
		var err error
		if doc, err = editOne(doc, root.Content[0], p); err != nil {
			return nil, fmt.Errorf("%s %s: %w", p.Operation, p.Path, err)
		}
	}
	return doc, nil
}

// editOne applies one patch to doc, whose parsed root is node.
func editOne(doc []byte, node *yamlv3.Node, p jsonpatch.JsonPatchOperation) ([]byte, error) {
	tokens := strings.Split(strings.TrimPrefix(p.Path, "/"), "/")
	for i := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(tokens[i], "~1", "/"), "~0", "~")
	}
	parent := node
	for _, t := range tokens[:len(tokens)-1] {
		next := child(parent, t)
		if next == nil {
			return nil, fmt.Errorf("%w: no %q", errCannotEdit, t)
		}
		parent = next
	}
	last := tokens[len(tokens)-1]
	lines := bytes.SplitAfter(doc, []byte("\n"))
	if existing := child(parent, last); existing != nil {
		if (p.Operation != "add" && p.Operation != "replace") || existing.Kind != yamlv3.ScalarNode {
			return nil, fmt.Errorf("%w: %s of a %s", errCannotEdit, p.Operation, kindName(existing))
		}
		return replaceScalar(lines, existing, parent.Style&yamlv3.FlowStyle != 0, p.Value)
	}
	if p.Operation != "add" || parent.Kind != yamlv3.MappingNode {
		return nil, fmt.Errorf("%w: %s into a %s", errCannotEdit, p.Operation, kindName(parent))
	}
	if parent.Style&yamlv3.FlowStyle != 0 {
		return addToFlow(doc, parent, last, p.Value)
	}
	if len(parent.Content) == 0 {
		return nil, fmt.Errorf("%w: into an empty mapping", errCannotEdit)
	}
	return addMember(lines, parent, last, p.Value)
}

// child is the member of a mapping, or the item of a sequence, that t names; nil if none.
func child(n *yamlv3.Node, t string) *yamlv3.Node {
	switch n.Kind {
	case yamlv3.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == t {
				return n.Content[i+1]
			}
		}
	case yamlv3.SequenceNode:
		if i, err := strconv.Atoi(t); err == nil && i >= 0 && i < len(n.Content) {
			return n.Content[i]
		}
	}
	return nil
}

func kindName(n *yamlv3.Node) string {
	switch {
	case n.Kind == yamlv3.MappingNode && n.Style&yamlv3.FlowStyle != 0:
		return "flow mapping"
	case n.Kind == yamlv3.MappingNode:
		return "mapping"
	case n.Kind == yamlv3.SequenceNode:
		return "sequence"
	case n.Kind == yamlv3.AliasNode:
		return "alias"
	}
	return "scalar"
}

// lastLine is the last line of a node's text: its own, or its last descendant's.
func lastLine(n *yamlv3.Node) int {
	line := n.Line
	for _, c := range n.Content {
		line = max(line, lastLine(c))
	}
	return line
}

// addMember inserts "key: value" after the mapping's last entry, at its keys' indentation.
func addMember(lines [][]byte, mapping *yamlv3.Node, key string, value any) ([]byte, error) {
	indent := strings.Repeat(" ", mapping.Content[0].Column-1)
	after := lastLine(mapping) // a block scalar's text may run past its node's line
	last := mapping.Content[len(mapping.Content)-1]
	if last.Kind == yamlv3.ScalarNode && (last.Style&(yamlv3.LiteralStyle|yamlv3.FoldedStyle)) != 0 {
		return nil, fmt.Errorf("%w: after a block scalar", errCannotEdit)
	}
	block, err := sigsyaml.Marshal(map[string]any{key: value})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for l := range strings.SplitSeq(strings.TrimRight(string(block), "\n"), "\n") {
		b.WriteString(indent + l + "\n")
	}
	if after > len(lines) {
		return nil, fmt.Errorf("%w: line %d past the end", errCannotEdit, after)
	}
	// A flow collection or a quoted scalar may span lines: insert after the line its last
	// token ends on, which is the last line before the next one indented as little.
	for after < len(lines) && continues(lines[after], len(indent)) {
		after++
	}
	out := make([][]byte, 0, len(lines)+1)
	out = append(out, lines[:after]...)
	if len(out) > 0 && !bytes.HasSuffix(out[len(out)-1], []byte("\n")) {
		out[len(out)-1] = append(bytes.Clone(out[len(out)-1]), '\n')
	}
	out = append(out, b.Bytes())
	out = append(out, lines[after:]...)
	return bytes.Join(out, nil), nil
}

// addToFlow adds "key: value" to a flow mapping ("{name: web}"), before its closing brace,
// the value written as JSON (which is flow YAML).
func addToFlow(doc []byte, mapping *yamlv3.Node, key string, value any) ([]byte, error) {
	start := offsetOf(doc, mapping.Line, mapping.Column)
	if start < 0 || start >= len(doc) || doc[start] != '{' {
		return nil, fmt.Errorf("%w: the flow mapping's brace not found", errCannotEdit)
	}
	end := closingBracket(doc, start)
	if end < 0 {
		return nil, fmt.Errorf("%w: the flow mapping's end not found", errCannotEdit)
	}
	k, err := json.Marshal(key)
	if err != nil {
		return nil, err
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	member := string(k) + ": " + string(v)
	if len(mapping.Content) > 0 {
		member = ", " + member
	}
	return append(append(append([]byte{}, doc[:end]...), member...), doc[end:]...), nil
}

// offsetOf is the byte offset of a line and column (both from 1) in doc; -1 if none.
func offsetOf(doc []byte, line, column int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(doc[off:], '\n')
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	return off + column - 1
}

// closingBracket is the offset of the bracket that closes the one at start, skipping quoted
// strings and nested collections; -1 if none.
func closingBracket(doc []byte, start int) int {
	depth := 0
	for i := start; i < len(doc); i++ {
		switch doc[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i
			}
		case '"':
			for i++; i < len(doc) && doc[i] != '"'; i++ {
				if doc[i] == '\\' {
					i++
				}
			}
		case '\'':
			for i++; i < len(doc); i++ {
				if doc[i] == '\'' {
					if i+1 < len(doc) && doc[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
		case '#':
			if i > 0 && (doc[i-1] == ' ' || doc[i-1] == '\t') {
				for i < len(doc) && doc[i] != '\n' {
					i++
				}
			}
		}
	}
	return -1
}

// continues reports whether a line still belongs to the entry above it: indented deeper than
// the mapping's keys (a continuation), and not blank or a comment.
func continues(line []byte, indent int) bool {
	t := bytes.TrimLeft(line, " ")
	if len(bytes.TrimSpace(t)) == 0 || t[0] == '#' {
		return false
	}
	return len(line)-len(t) > indent
}

// replaceScalar replaces a scalar where it stands, keeping what follows it on its line.
func replaceScalar(lines [][]byte, n *yamlv3.Node, inFlow bool, value any) ([]byte, error) {
	if n.Style&(yamlv3.LiteralStyle|yamlv3.FoldedStyle) != 0 || n.Line < 1 || n.Line > len(lines) {
		return nil, fmt.Errorf("%w: a block scalar", errCannotEdit)
	}
	line := lines[n.Line-1]
	start := n.Column - 1
	if start >= len(line) {
		return nil, fmt.Errorf("%w: column past the line", errCannotEdit)
	}
	end, ok := scalarEnd(line, start, n.Style, inFlow)
	if !ok {
		return nil, fmt.Errorf("%w: a scalar over several lines", errCannotEdit)
	}
	text, err := sigsyaml.Marshal(value)
	if err != nil {
		return nil, err
	}
	rendered := strings.TrimRight(string(text), "\n")
	if strings.Contains(rendered, "\n") {
		return nil, fmt.Errorf("%w: the value is not a scalar", errCannotEdit)
	}
	edited := append(append(append([]byte{}, line[:start]...), rendered...), line[end:]...)
	out := append(append(append([][]byte{}, lines[:n.Line-1]...), edited), lines[n.Line:]...)
	return bytes.Join(out, nil), nil
}

// scalarEnd is where the scalar that starts at start ends on its line (inFlow: within a flow
// collection, where a comma or a closing bracket ends it); false when it does not end there.
func scalarEnd(line []byte, start int, style yamlv3.Style, inFlow bool) (int, bool) {
	switch {
	case style&yamlv3.DoubleQuotedStyle != 0:
		for i := start + 1; i < len(line); i++ {
			switch line[i] {
			case '\\':
				i++
			case '"':
				return i + 1, true
			}
		}
		return 0, false
	case style&yamlv3.SingleQuotedStyle != 0:
		for i := start + 1; i < len(line); i++ {
			if line[i] == '\'' {
				if i+1 < len(line) && line[i+1] == '\'' {
					i++
					continue
				}
				return i + 1, true
			}
		}
		return 0, false
	}
	end := len(bytes.TrimRight(line, "\r\n"))
	if i := bytes.Index(line[start:], []byte(" #")); i >= 0 {
		end = start + i
	}
	if inFlow {
		if i := bytes.IndexAny(line[start:end], ",}]"); i >= 0 {
			end = start + i
		}
	}
	return start + len(bytes.TrimRight(line[start:end], " \t")), true
}
