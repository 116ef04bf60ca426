package policies

import "github.com/portcullis-dev/portcullis/internal/jsonscan"

// jsonBounds are what one pass over an object's JSON tells of the values CEL can read from it: no
// list or map holds more than items entries, and no string (key or value) is longer than chars
// characters. The untracked programs (untracked.go) run only where their estimate at the
// request's jsonBounds is within the per-call limit.
type jsonBounds struct {
	items, chars int
}

// The least jsonBounds a request is taken to have: defaulting adds fields to structs (no Kubernetes
// struct has 64 JSON fields), entries to maps (a container's requests get its limits' entries:
// hence twice the JSON's count) and short strings ("/dev/termination-log").
const (
	minBoundItems = 64
	minBoundChars = 1024
)

// unknownBounds is what a Resource not decoded from JSON has: nothing runs untracked on it.
var unknownBounds = jsonBounds{items: int(^uint(0) >> 1), chars: int(^uint(0) >> 1)}

// union is the jsonBounds of both.
func (b jsonBounds) union(o jsonBounds) jsonBounds {
	return jsonBounds{items: max(b.items, o.items), chars: max(b.chars, o.chars)}
}

// floored is b as evaluation sees the object: after defaulting, and never below the least.
func (b jsonBounds) floored() jsonBounds {
	if b == unknownBounds {
		return b
	}
	return jsonBounds{items: max(2*b.items, minBoundItems), chars: max(b.chars, minBoundChars)}
}

// maxBoundsDepth is the deepest nesting scanBounds follows; a deeper document has unknown
// bounds (the server refuses reviews nested past 200 levels anyway).
const maxBoundsDepth = 256

// scanBounds is data's jsonBounds, without allocating: the most entries of one array or object (its
// separators plus one) and the longest string in bytes (at least its characters: an escape is
// two bytes or more for one character). It does not validate; a document it cannot follow
// (unbalanced, unterminated, too deep) has unknownBounds. With z, the same pass reads the lengths
// of a pod spec's arrays for presizing (presize.go).
func scanBounds(data []byte, z *podSizer) jsonBounds {
	var commas [maxBoundsDepth]int // at each open level
	var b jsonBounds
	depth := 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !structural[c] {
			continue
		}
		switch c {
		case '"':
			end := jsonscan.StringEnd(data, i)
			if end < 0 {
				return unknownBounds
			}
			b.chars = max(b.chars, end-i-2)
			if z != nil && z.keys(depth) {
				z.str(data, i, end, depth)
			}
			i = end - 1
		case '{', '[':
			if depth == maxBoundsDepth {
				return unknownBounds
			}
			if z != nil {
				index := 0
				if depth > 0 {
					index = commas[depth-1] //nolint:gosec // 0 < depth < maxBoundsDepth
				}
				z.open(data, i, depth, index)
			}
			commas[depth] = 0
			depth++
		case '}', ']':
			if depth == 0 {
				return unknownBounds
			}
			depth--
			n := commas[depth] + 1 //nolint:gosec // 0 <= depth < maxBoundsDepth
			b.items = max(b.items, n)
			if z != nil {
				z.close(depth, n)
			}
		case ',':
			if depth > 0 {
				commas[depth-1]++ //nolint:gosec // 0 < depth <= maxBoundsDepth
			}
		}
	}
	if depth != 0 {
		return unknownBounds
	}
	return b
}

// structural marks the bytes scanBounds acts on; it skips every other byte outside strings.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true, ',': true}
