package audit

import (
	"bytes"
	"errors"
	"fmt"

	gojson "github.com/goccy/go-json"
)

// pageMeta is the metadata of a LIST response.
type pageMeta struct {
	Continue        string `json:"continue"`
	ResourceVersion string `json:"resourceVersion"`
}

// errTwice: a LIST response gives its metadata or its items twice, which the API server never
// does.
var errTwice = errors.New("given twice")

// splitPage reads a LIST response up to its items: its metadata, which the API server writes
// first, and where the items begin. The items are split off one at a time as they are judged
// (pageItems.each), so that no pass over the whole page (15 ms for 500 Pods) holds the processor
// while reviews wait: on one processor (GOMAXPROCS 1) that was the scan's longest stretch without
// a pause. Nothing is copied: each item is a slice of body, decoded, and so checked, when judged.
// A response that gives its metadata after its items is read whole first.
func splitPage(body []byte) (pageMeta, pageItems, error) {
	var meta pageMeta
	items := pageItems{at: -1}
	c, err := openObject(body)
	if err != nil {
		return meta, items, err
	}
	sawMeta, sawItems := false, false
	for {
		key, start, done, err := c.next()
		if err != nil || done {
			return meta, items, err
		}
		switch {
		case isMember(key, "metadata") && sawMeta, isMember(key, "items") && sawItems:
			return meta, items, fmt.Errorf("%s: %w", key, errTwice)
		case isMember(key, "items") && sawMeta:
			return meta, pageItems{c: c, at: start}, nil // the rest is read by each
		}
		end, err := skipValue(body, start)
		if err != nil {
			return meta, items, fmt.Errorf("the value of %q: %w", key, err)
		}
		switch {
		case isMember(key, "metadata"):
			if err := gojson.Unmarshal(body[start:end], &meta); err != nil {
				return meta, items, fmt.Errorf("the metadata: %w", err)
			}
			sawMeta = true
		case isMember(key, "items"):
			items, sawItems = pageItems{at: start}, true // passed over to find the metadata; split again by each
		}
		c.i = end
	}
}

// isMember says whether key names the member name, as encoding/json matches them: ignoring case.
func isMember(key []byte, name string) bool { return bytes.EqualFold(key, []byte(name)) }

// pageItems is where a page's items are, to split them one at a time.
type pageItems struct {
	c  *objectCursor // the page, when its members after the items are still to be read
	at int           // where the items' value begins in the page; -1: no items
}

// each calls fn with every item, a slice of the page, split off just before it is called; an
// error from fn, or in the page, stops it. It then reads the page's members after the items.
func (p pageItems) each(body []byte, fn func(item []byte) error) error {
	if p.at < 0 {
		return nil
	}
	end, err := eachElement(body, p.at, fn)
	if err != nil {
		return err
	}
	if p.c == nil {
		return nil // the page was read whole
	}
	p.c.i = end
	for {
		key, start, done, err := p.c.next()
		if err != nil || done {
			return err
		}
		if isMember(key, "metadata") || isMember(key, "items") {
			return fmt.Errorf("%s: %w", key, errTwice)
		}
		if p.c.i, err = skipValue(body, start); err != nil {
			return fmt.Errorf("the value of %q: %w", key, err)
		}
	}
}

// objectCursor reads the members of the JSON object that is the whole of b, one at a time.
type objectCursor struct {
	b     []byte
	i     int  // just after '{', or after the value of the member last read
	first bool // no member read yet
}

// openObject is a cursor on the object b, which must be one.
func openObject(b []byte) (*objectCursor, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	return &objectCursor{b: b, i: i + 1, first: true}, nil
}

// next returns the next member's name and where its value begins, or done at the object's end,
// which must be the end of b. The caller sets c.i to the end of the value before calling again.
func (c *objectCursor) next() (key []byte, value int, done bool, err error) {
	b, i := c.b, skipSpace(c.b, c.i)
	switch {
	case i < len(b) && b[i] == '}':
		if rest := skipSpace(b, i+1); rest != len(b) {
			return nil, 0, false, fmt.Errorf("data after the object at byte %d", rest)
		}
		return nil, 0, true, nil
	case c.first:
		c.first = false
	case i < len(b) && b[i] == ',':
		i = skipSpace(b, i+1)
	default:
		return nil, 0, false, fmt.Errorf("no ',' or '}' at byte %d", i)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false, fmt.Errorf("a member's name at byte %d: %w", i, errSyntax)
	}
	keyEnd, err := skipString(b, i)
	if err != nil {
		return nil, 0, false, fmt.Errorf("a member's name at byte %d: %w", i, err)
	}
	j := skipSpace(b, keyEnd)
	if j >= len(b) || b[j] != ':' {
		return nil, 0, false, fmt.Errorf("no ':' at byte %d", j)
	}
	return b[i+1 : keyEnd-1], skipSpace(b, j+1), false, nil
}

// eachElement calls fn with each element of the JSON array (or null) at b[i], as a slice of b,
// and returns the end of the array.
func eachElement(b []byte, i int, fn func(elem []byte) error) (int, error) {
	if bytes.HasPrefix(b[i:], []byte("null")) {
		return i + len("null"), nil
	}
	if i >= len(b) || b[i] != '[' {
		return 0, errors.New("the items: not an array")
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		end, err := skipValue(b, i)
		if err != nil {
			return 0, fmt.Errorf("the items: byte %d: %w", i, err)
		}
		if err := fn(b[i:end:end]); err != nil {
			return 0, err
		}
		i = skipSpace(b, end)
		switch {
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		case i < len(b) && b[i] == ']':
			return i + 1, nil
		default:
			return 0, fmt.Errorf("the items: no ',' or ']' at byte %d", i)
		}
	}
}

var errSyntax = errors.New("not JSON")

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value at b[i]: a string, an object or array (matched by
// its brackets, strings skipped), or a literal or number (up to the next delimiter). It checks
// the structure only; what it returns is decoded, and checked, later.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, err := skipString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errSyntax
	}
	j := i
	for j < len(b) && bytes.IndexByte([]byte(",}] \t\n\r"), b[j]) < 0 {
		j++
	}
	if j == i {
		return 0, errSyntax
	}
	return j, nil
}

// skipString returns the end of the string whose opening quote is b[i].
func skipString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, errSyntax
		}
		j += k
		n := 0 // backslashes before the quote: an odd run escapes it
		for m := j - 1; m > i && b[m] == '\\'; m-- {
			n++
		}
		if n%2 == 0 {
			return j + 1, nil
		}
		j++
	}
	return 0, errSyntax
}
