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

// splitPage reads a LIST response in one pass and copies nothing: its metadata, and its items as
// slices of body (each is decoded, and so checked, when judged). Decoding the page whole, as
// encoding/json does, checked all of it and then copied every item: as long as judging them.
func splitPage(body []byte) (pageMeta, [][]byte, error) {
	var meta pageMeta
	var items [][]byte
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return meta, nil, errors.New("not a JSON object")
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return meta, nil, nil
	}
	for {
		keyEnd, err := skipValue(body, i)
		if err != nil || body[i] != '"' {
			return meta, nil, fmt.Errorf("a member's name at byte %d: %w", i, orSyntax(err))
		}
		key := body[i+1 : keyEnd-1]
		i = skipSpace(body, keyEnd)
		if i >= len(body) || body[i] != ':' {
			return meta, nil, fmt.Errorf("no ':' at byte %d", i)
		}
		start := skipSpace(body, i+1)
		end, err := skipValue(body, start)
		if err != nil {
			return meta, nil, fmt.Errorf("the value of %q: %w", key, err)
		}
		switch {
		case isMember(key, "metadata"):
			if err := gojson.Unmarshal(body[start:end], &meta); err != nil {
				return meta, nil, fmt.Errorf("the metadata: %w", err)
			}
		case isMember(key, "items"):
			if items, err = splitArray(body[start:end]); err != nil {
				return meta, nil, fmt.Errorf("the items: %w", err)
			}
		}
		i = skipSpace(body, end)
		switch {
		case i < len(body) && body[i] == ',':
			i = skipSpace(body, i+1)
		case i < len(body) && body[i] == '}':
			if rest := skipSpace(body, i+1); rest != len(body) {
				return meta, nil, fmt.Errorf("data after the object at byte %d", rest)
			}
			return meta, items, nil
		default:
			return meta, nil, fmt.Errorf("no ',' or '}' at byte %d", i)
		}
	}
}

// isMember says whether key names the member name, as encoding/json matches them: ignoring case.
func isMember(key []byte, name string) bool { return bytes.EqualFold(key, []byte(name)) }

// splitArray is the elements of the JSON array a (null: none), as slices of it.
func splitArray(a []byte) ([][]byte, error) {
	if string(a) == "null" {
		return nil, nil
	}
	if len(a) < 2 || a[0] != '[' {
		return nil, errors.New("not an array")
	}
	var out [][]byte
	i := skipSpace(a, 1)
	if i < len(a) && a[i] == ']' {
		return out, nil
	}
	for {
		end, err := skipValue(a, i)
		if err != nil {
			return nil, err
		}
		out = append(out, a[i:end:end])
		i = skipSpace(a, end)
		switch {
		case i < len(a) && a[i] == ',':
			i = skipSpace(a, i+1)
		case i == len(a)-1 && a[i] == ']':
			return out, nil
		default:
			return nil, fmt.Errorf("no ',' or ']' at byte %d", i)
		}
	}
}

var errSyntax = errors.New("not JSON")

func orSyntax(err error) error {
	if err == nil {
		return errSyntax
	}
	return err
}

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
