package manifest

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// blockYAMLToJSON converts a YAML document to JSON in one pass over its lines, for the YAML that
// manifests are written in: block mappings and sequences, plain, single- and double-quoted
// scalars on one line, one-line flow collections, and comments. It produces what
// sigsyaml.YAMLToJSONStrict does (the same values, resolved by the same YAML 1.1 rules: yes is
// true, 0x1F is 31, 2001-12-14 is a string), with the keys in the document's order instead of
// sorted. Whatever it does not handle, it refuses (ok is false) and the caller converts the
// document the general way: block scalars (| and >), multi-line scalars and flow collections,
// anchors, aliases, tags, complex keys, duplicate keys, tabs, carriage returns, and any document
// that is not valid YAML. FuzzBlockYAMLToJSON holds the two conversions to the same values.
//
// The general way parses into generic maps and marshals them again; this is several times
// faster and allocates little, which is most of check's time on YAML input.
func blockYAMLToJSON(doc []byte) (js []byte, ok bool) {
	// The JSON is about as long as the YAML, and there is at most a line each.
	c := yconv{out: make([]byte, 0, len(doc)+len(doc)/4), ls: make([]yline, 0, bytes.Count(doc, []byte{'\n'})+1)}
	if !c.lines(doc) || len(c.ls) == 0 {
		return nil, false
	}
	if !c.node(c.ls[0].indent, 0) || c.pos != len(c.ls) {
		return nil, false
	}
	return c.out, true
}

// yline is a line that holds something: its indentation in spaces and its text after it.
type yline struct {
	indent int
	text   []byte
}

type yconv struct {
	ls   []yline
	pos  int
	out  []byte
	keys [][]byte // the keys of the open mappings, for the duplicate check
}

// maxYAMLDepth is the deepest nesting converted here, and maxYAMLKeys the most keys of one
// mapping (the duplicate check compares each key with those before it); larger documents go the
// general way. maxYAMLKeyLen is the longest key taken here: YAML refuses keys of more than 1024
// characters written on the key's line.
const (
	maxYAMLDepth  = 64
	maxYAMLKeys   = 256
	maxYAMLKeyLen = 1000
)

// lines splits doc into the lines that hold something (neither blank nor only a comment), and
// refuses characters this conversion leaves to the general one: tabs, carriage returns, control
// characters, invalid UTF-8, and the Unicode characters YAML takes as line breaks or refuses.
func (c *yconv) lines(doc []byte) bool {
	for len(doc) > 0 {
		line := doc
		if i := bytes.IndexByte(doc, '\n'); i >= 0 {
			line, doc = doc[:i], doc[i+1:]
		} else {
			doc = nil
		}
		if !printable(line) {
			return false
		}
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		text := bytes.TrimRight(line[indent:], " ")
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		if indent == 0 && (text[0] == '%' || bytes.HasPrefix(text, []byte("---")) || bytes.HasPrefix(text, []byte("..."))) {
			return false // directives and document markers
		}
		c.ls = append(c.ls, yline{indent: indent, text: text})
	}
	return true
}

// printable is whether line holds only characters this conversion takes as they are.
func printable(line []byte) bool {
	for i := 0; i < len(line); {
		b := line[i]
		if b < utf8.RuneSelf {
			if b < 0x20 || b == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(line[i:])
		switch {
		case r == utf8.RuneError && n <= 1,
			r < 0xa0, // C1 controls and NEL, a line break in YAML 1.1
			r == 0x2028 || r == 0x2029 || r == 0xfeff,
			r == 0xfffe || r == 0xffff:
			return false
		}
		i += n
	}
	return true
}

func (c *yconv) peek() (yline, bool) {
	if c.pos < len(c.ls) {
		return c.ls[c.pos], true
	}
	return yline{}, false
}

func isEntry(text []byte) bool { return text[0] == '-' && (len(text) == 1 || text[1] == ' ') }

// node converts the node that starts on the current line, indented by indent.
func (c *yconv) node(indent, depth int) bool {
	if depth > maxYAMLDepth {
		return false
	}
	l := c.ls[c.pos]
	if isEntry(l.text) {
		return c.sequence(indent, depth)
	}
	if _, _, isKey, ok := splitKey(l.text); !ok {
		return false
	} else if isKey {
		return c.mapping(indent, depth)
	}
	// A scalar or flow collection alone on its line; a more indented line after it would
	// continue it.
	c.pos++
	var ok bool
	c.out, ok = inlineValue(c.out, l.text, depth)
	return ok
}

// sequence converts the block sequence whose entries are indented by indent.
func (c *yconv) sequence(indent, depth int) bool {
	c.out = append(c.out, '[')
	for first := true; ; first = false {
		l, more := c.peek()
		if !more || l.indent != indent || !isEntry(l.text) {
			break
		}
		if !first {
			c.out = append(c.out, ',')
		}
		rest := l.text[1:]
		col := indent + 1
		for len(rest) > 0 && rest[0] == ' ' {
			rest, col = rest[1:], col+1
		}
		if len(rest) == 0 || rest[0] == '#' {
			c.pos++
			if !c.nested(indent, false, depth) {
				return false
			}
		} else {
			// The entry's content is a node of its own, as if its line began at col.
			c.ls[c.pos] = yline{indent: col, text: rest}
			if !c.node(col, depth+1) {
				return false
			}
		}
		if l, more := c.peek(); more && l.indent > indent {
			return false
		}
	}
	c.out = append(c.out, ']')
	return true
}

// nested converts the value of an entry or key whose line ends after it: the more indented
// lines that follow, a sequence at the key's own indentation (compact), or null.
func (c *yconv) nested(indent int, compact bool, depth int) bool {
	l, more := c.peek()
	switch {
	case more && l.indent > indent:
		return c.node(l.indent, depth+1)
	case more && compact && l.indent == indent && isEntry(l.text):
		return c.sequence(indent, depth+1)
	}
	c.out = append(c.out, "null"...)
	return true
}

// mapping converts the block mapping whose keys are indented by indent.
func (c *yconv) mapping(indent, depth int) bool {
	c.out = append(c.out, '{')
	open := len(c.keys)
	defer func() { c.keys = c.keys[:open] }()
	for first := true; ; first = false {
		l, more := c.peek()
		if !more || l.indent != indent || isEntry(l.text) {
			break
		}
		key, rest, isKey, ok := splitKey(l.text)
		if !ok || !isKey {
			return false
		}
		if !newKey(c.keys[open:], key) {
			return false
		}
		c.keys = append(c.keys, key)
		if !first {
			c.out = append(c.out, ',')
		}
		c.out = appendJSONString(c.out, key)
		c.out = append(c.out, ':')
		c.pos++
		if len(rest) == 0 || rest[0] == '#' {
			if !c.nested(indent, true, depth) {
				return false
			}
		} else if c.out, ok = inlineValue(c.out, rest, depth); !ok {
			return false
		}
		if l, more := c.peek(); more && l.indent > indent {
			return false
		}
	}
	c.out = append(c.out, '}')
	return true
}

// splitKey reads text as "key: rest". isKey is false for a line that holds a value only; ok is
// false for what this conversion does not handle. The key is unquoted and unescaped.
func splitKey(text []byte) (key, rest []byte, isKey, ok bool) {
	switch text[0] {
	case '"', '\'':
		s, n, ok := quoted(text)
		if !ok || n > maxYAMLKeyLen {
			return nil, nil, false, false
		}
		after := bytes.TrimLeft(text[n:], " ")
		if len(after) == 0 || after[0] == '#' && len(after) < len(text[n:]) {
			return nil, nil, false, true // a quoted value
		}
		if after[0] != ':' || len(after) > 1 && after[1] != ' ' {
			return nil, nil, false, false
		}
		return s, bytes.TrimLeft(after[1:], " "), true, true
	case '[', '{':
		return nil, nil, false, true // a flow value; a flow key is refused by inlineValue
	}
	if !plainStart(text, false) {
		return nil, nil, false, false
	}
	for i := 1; i < len(text); i++ {
		switch {
		case text[i] == '#' && text[i-1] == ' ':
			return nil, nil, false, true // a plain value and a comment
		case text[i] == ':' && (i+1 == len(text) || text[i+1] == ' '):
			if i > maxYAMLKeyLen {
				return nil, nil, false, false
			}
			if key = bytes.TrimRight(text[:i], " "); !isStringKey(key) {
				return nil, nil, false, false
			}
			return key, bytes.TrimLeft(text[i+1:], " "), true, true
		}
	}
	return nil, nil, false, true
}

// newKey is whether key may follow keys in a mapping: not a duplicate (the general way names
// it), and not past maxYAMLKeys.
func newKey(keys [][]byte, key []byte) bool {
	if len(keys) == maxYAMLKeys {
		return false
	}
	for _, k := range keys {
		if bytes.Equal(k, key) {
			return false
		}
	}
	return true
}

// isStringKey is whether the plain scalar key is a string, as JSON's keys are; true, 1 and null
// are not.
func isStringKey(key []byte) bool {
	_, isString := resolvePlain(nil, key)
	return isString
}

// plainStart is whether text may start a plain scalar: not with an indicator; "-" only when a
// character that is not a space (nor, in a flow, a flow indicator) follows; "?" and ":" the same,
// and only outside flows.
func plainStart(text []byte, flow bool) bool {
	switch text[0] {
	case '?', ':':
		if flow {
			return false
		}
		fallthrough
	case '-':
		return len(text) > 1 && text[1] != ' ' && (!flow || !isFlowIndicator(text[1]))
	case ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
		return false
	}
	return true
}

func isFlowIndicator(b byte) bool { return b == ',' || b == '[' || b == ']' || b == '{' || b == '}' }

// inlineValue appends the JSON of the value that is the whole of text (a trailing comment
// aside): a scalar or a flow collection.
func inlineValue(out, text []byte, depth int) ([]byte, bool) {
	var n int
	var ok bool
	switch text[0] {
	case '"', '\'':
		var s []byte
		if s, n, ok = quoted(text); !ok {
			return out, false
		}
		out = appendJSONString(out, s)
	case '[', '{':
		if out, n, ok = flow(out, text, depth+1); !ok {
			return out, false
		}
	default:
		if !plainStart(text, false) {
			return out, false
		}
		for n = 1; n < len(text); n++ {
			if text[n] == '#' && text[n-1] == ' ' {
				break
			}
			if text[n] == ':' && (n+1 == len(text) || text[n+1] == ' ') {
				return out, false // "a: b: c" is not YAML
			}
		}
		return appendPlain(out, bytes.TrimRight(text[:n], " "))
	}
	after := text[n:]
	trimmed := bytes.TrimLeft(after, " ")
	if len(trimmed) > 0 && (trimmed[0] != '#' || len(trimmed) == len(after)) {
		return out, false
	}
	return out, true
}

// flow appends the JSON of the flow collection text starts with, and how many bytes it took.
// The collection must close on its line.
func flow(out, text []byte, depth int) ([]byte, int, bool) {
	if depth > maxYAMLDepth {
		return out, 0, false
	}
	closing, isMap := byte(']'), text[0] == '{'
	if isMap {
		closing = '}'
	}
	out = append(out, text[0])
	i := skipSpaces(text, 1)
	if i < len(text) && text[i] == closing {
		return append(out, closing), i + 1, true
	}
	var keys [][]byte
	for first := true; ; first = false {
		if !first {
			out = append(out, ',')
		}
		var ok bool
		if isMap {
			var key []byte
			if key, i, ok = flowKey(text, i); !ok {
				return out, 0, false
			}
			if !newKey(keys, key) {
				return out, 0, false
			}
			keys = append(keys, key)
			out = appendJSONString(out, key)
			out = append(out, ':')
			i = skipSpaces(text, i)
		}
		if out, i, ok = flowValue(out, text, i, depth); !ok {
			return out, 0, false
		}
		i = skipSpaces(text, i)
		if i == len(text) {
			return out, 0, false // continues on the next line
		}
		switch text[i] {
		case closing:
			return append(out, closing), i + 1, true
		case ',':
			i = skipSpaces(text, i+1)
			if i < len(text) && text[i] == closing {
				return out, 0, false // a trailing comma
			}
		default:
			return out, 0, false
		}
	}
}

func skipSpaces(text []byte, i int) int {
	for i < len(text) && text[i] == ' ' {
		i++
	}
	return i
}

// flowKey reads the key of a flow mapping's entry at text[i:] and its ":"; it returns the index
// after the ":".
func flowKey(text []byte, i int) ([]byte, int, bool) {
	if i == len(text) {
		return nil, 0, false
	}
	var key []byte
	switch text[i] {
	case '"', '\'':
		s, n, ok := quoted(text[i:])
		if !ok || n > maxYAMLKeyLen {
			return nil, 0, false
		}
		key, i = s, skipSpaces(text, i+n)
		if i == len(text) || text[i] != ':' {
			return nil, 0, false
		}
		return key, i + 1, true
	}
	n := plainFlowEnd(text[i:])
	if n == 0 || n > maxYAMLKeyLen || i+n == len(text) || text[i+n] != ':' {
		return nil, 0, false // {a} and {a, b: c} hold keys without values: the general way
	}
	if key = bytes.TrimRight(text[i:i+n], " "); !isStringKey(key) {
		return nil, 0, false
	}
	return key, i + n + 1, true
}

// flowValue appends the JSON of the flow node at text[i:] and returns the index after it.
func flowValue(out, text []byte, i, depth int) ([]byte, int, bool) {
	if i == len(text) {
		return out, 0, false
	}
	switch text[i] {
	case '"', '\'':
		s, n, ok := quoted(text[i:])
		if !ok {
			return out, 0, false
		}
		return appendJSONString(out, s), i + n, true
	case '[', '{':
		out, n, ok := flow(out, text[i:], depth+1)
		return out, i + n, ok
	}
	n := plainFlowEnd(text[i:])
	if n == 0 || i+n < len(text) && text[i+n] == ':' {
		return out, 0, false // an empty value, or a single-pair mapping ([a: b])
	}
	out, ok := appendPlain(out, bytes.TrimRight(text[i:i+n], " "))
	return out, i + n, ok
}

// plainFlowEnd is the length of the plain scalar text starts with, in a flow: up to a flow
// indicator, a ": " or a comment. It is 0 where no plain scalar may start, and where a "?" or a
// comment would follow it: those go the general way.
func plainFlowEnd(text []byte) int {
	if !plainStart(text, true) {
		return 0
	}
	for n := 1; n < len(text); n++ {
		switch b := text[n]; {
		case isFlowIndicator(b):
			return n
		case b == '?' || b == '#' && text[n-1] == ' ':
			return 0
		case b == ':' && (n+1 == len(text) || text[n+1] == ' '):
			return n
		}
	}
	return len(text)
}

// quoted reads the single- or double-quoted scalar text starts with: its value and its length
// in text. It refuses a scalar that does not close on its line, and escapes other than the
// common ones.
func quoted(text []byte) (s []byte, n int, ok bool) {
	q := text[0]
	i := 1
	if q == '\'' {
		for {
			j := bytes.IndexByte(text[i:], '\'')
			if j < 0 {
				return nil, 0, false
			}
			s = append(s, text[i:i+j]...)
			i += j + 1
			if i < len(text) && text[i] == '\'' {
				s = append(s, '\'')
				i++
				continue
			}
			if s == nil {
				s = []byte{}
			}
			return s, i, true
		}
	}
	s = []byte{}
	for i < len(text) {
		b := text[i]
		switch b {
		case '"':
			return s, i + 1, true
		case '\\':
			if i+1 == len(text) {
				return nil, 0, false
			}
			e := text[i+1]
			i += 2
			switch e {
			case '"', '\\':
				s = append(s, e)
			case 'n':
				s = append(s, '\n')
			case 't':
				s = append(s, '\t')
			case 'r':
				s = append(s, '\r')
			case '0':
				s = append(s, 0)
			case 'u':
				if i+4 > len(text) {
					return nil, 0, false
				}
				v, err := strconv.ParseUint(string(text[i:i+4]), 16, 16)
				if err != nil || v >= 0xd800 && v < 0xe000 {
					return nil, 0, false
				}
				s = utf8.AppendRune(s, rune(v)) //nolint:gosec // at most 0xffff
				i += 4
			default:
				return nil, 0, false
			}
		default:
			s = append(s, b)
			i++
		}
	}
	return nil, 0, false
}

// appendPlain appends the JSON of a plain scalar, resolved as sigsyaml resolves it.
func appendPlain(out, s []byte) ([]byte, bool) {
	v, isString := resolvePlain(out, s)
	switch {
	case isString:
		return appendJSONString(out, s), true
	case v == nil:
		return out, false
	}
	return v, true
}

// yamlWords are the plain scalars YAML 1.1 (as sigs.k8s.io/yaml reads it) takes for null and
// booleans, and their JSON.
var yamlWords = map[string]string{
	"~": "null", "null": "null", "Null": "null", "NULL": "null",
	"y": "true", "Y": "true", "yes": "true", "Yes": "true", "YES": "true", "true": "true", "True": "true", "TRUE": "true", "on": "true", "On": "true", "ON": "true",
	"n": "false", "N": "false", "no": "false", "No": "false", "NO": "false", "false": "false", "False": "false", "FALSE": "false", "off": "false", "Off": "false", "OFF": "false",
}

// yamlFloat is YAML 1.1's float syntax, as the general way reads it.
var yamlFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`)

// resolvePlain resolves the plain scalar s as sigsyaml does. A string gives isString; anything
// else appends its JSON to out and returns it, or returns nil for what this conversion leaves to
// the general one (NaN, infinities, the merge key).
func resolvePlain(out, s []byte) (v []byte, isString bool) {
	if len(s) == 0 {
		return nil, false
	}
	switch s[0] {
	case '~', 'n', 'N', 'y', 'Y', 't', 'T', 'f', 'F', 'o', 'O':
		if js, ok := yamlWords[string(s)]; ok {
			return append(out, js...), false
		}
		return nil, true
	case '<':
		return nil, string(s) != "<<"
	case '.':
		if _, err := strconv.ParseFloat(string(s), 64); err == nil || isSpecialFloat(string(s)) {
			return nil, false // floats written .5: the general way
		}
		return nil, true
	case '+', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return resolveNumber(out, string(s))
	}
	return nil, true
}

func isSpecialFloat(s string) bool {
	switch s {
	case ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF":
		return true
	}
	return false
}

// resolveNumber resolves a plain scalar that starts with a sign or a digit: a timestamp (kept as
// a string), an integer in any of YAML 1.1's bases, a float, or a string.
func resolveNumber(out []byte, s string) ([]byte, bool) {
	if isSpecialFloat(s) {
		return nil, false
	}
	if isTimestamp(s) {
		return nil, true
	}
	plain := strings.ReplaceAll(s, "_", "")
	if !numeric(plain) {
		return nil, true // a byte no number below has, as "100m" and "64Mi": strconv's errors allocate
	}
	if i, err := strconv.ParseInt(plain, 0, 64); err == nil {
		return strconv.AppendInt(out, i, 10), false
	}
	if u, err := strconv.ParseUint(plain, 0, 64); err == nil {
		return strconv.AppendUint(out, u, 10), false
	}
	if yamlFloat.MatchString(plain) {
		if f, err := strconv.ParseFloat(plain, 64); err == nil {
			return appendJSONFloat(out, f), false
		}
	}
	switch {
	case len(plain) > 2 && plain[:2] == "0b":
		if i, err := strconv.ParseInt(plain[2:], 2, 64); err == nil {
			return strconv.AppendInt(out, i, 10), false
		}
		if u, err := strconv.ParseUint(plain[2:], 2, 64); err == nil {
			return strconv.AppendUint(out, u, 10), false
		}
	case len(plain) > 3 && plain[:3] == "-0b":
		if i, err := strconv.ParseInt("-"+plain[3:], 2, 64); err == nil {
			return strconv.AppendInt(out, i, 10), false
		}
	}
	return nil, true
}

// numeric is whether every byte of s can be part of a number resolveNumber parses: digits, hex
// digits, the base prefixes' letters, signs and the decimal point.
func numeric(s string) bool {
	for i := range len(s) {
		switch b := s[i]; {
		case b >= '0' && b <= '9', b >= 'a' && b <= 'f', b >= 'A' && b <= 'F',
			b == 'x', b == 'X', b == 'o', b == 'O', b == '+', b == '-', b == '.':
		default:
			return false
		}
	}
	return true
}

// The timestamps YAML 1.1 resolves (as sigsyaml reads them, into strings again).
var yamlTimestamps = []string{"2006-1-2T15:4:5.999999999Z07:00", "2006-1-2t15:4:5.999999999Z07:00", "2006-1-2 15:4:5.999999999", "2006-1-2"}

func isTimestamp(s string) bool {
	if len(s) < 5 || s[4] != '-' {
		return false
	}
	for i := range 4 {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	for _, f := range yamlTimestamps {
		if _, err := time.Parse(f, s); err == nil {
			return true
		}
	}
	return false
}

// appendJSONFloat appends f, finite, as encoding/json writes it (and sigsyaml with it).
func appendJSONFloat(out []byte, f float64) []byte {
	js, _ := json.Marshal(f) // cannot fail on a finite float; floats are rare in manifests
	return append(out, js...)
}

// appendJSONString appends s, valid UTF-8, as a JSON string.
func appendJSONString(out, s []byte) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	start := 0
	for i, b := range s {
		if b >= 0x20 && b != '"' && b != '\\' {
			continue
		}
		out = append(out, s[start:i]...)
		switch b {
		case '"', '\\':
			out = append(out, '\\', b)
		case '\n':
			out = append(out, '\\', 'n')
		case '\t':
			out = append(out, '\\', 't')
		case '\r':
			out = append(out, '\\', 'r')
		default:
			out = append(out, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
		}
		start = i + 1
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}
