// Package jsonscan reads the top level of a JSON document without decoding it: the members of
// an object, the elements of an array. Reading a document's apiVersion and kind this way costs a
// scan of its bytes, where decoding it into a struct costs the reflection over every value.
//
// It checks the structure it walks (quotes closed, brackets balanced, separators in place) but
// not every value's syntax: callers decode the document afterwards, or have validated it.
package jsonscan

import "unicode/utf8"

// Members calls f with each member of the object js, in order: its key, unquoted, and its
// value's bytes. It returns false, having called f for none or some members, when js is not an
// object it can follow, or a key holds an escape or invalid UTF-8: a caller then decodes the document the
// general way, which says what is wrong or reads the escape.
func Members(js []byte, f func(key, value []byte)) bool {
	return entries(js, '{', '}', func(i int) int {
		if i == len(js) || js[i] != '"' {
			return -1
		}
		end := stringEnd(js, i)
		if end < 0 {
			return -1
		}
		key := js[i+1 : end-1]
		if !plain(key) {
			return -1
		}
		if i = space(js, end); i == len(js) || js[i] != ':' {
			return -1
		}
		start := space(js, i+1)
		if end = valueEnd(js, start); end >= 0 {
			f(key, js[start:end])
		}
		return end
	})
}

// Elements calls f with the bytes of each element of the array js, in order. It returns false
// when js is not an array it can follow.
func Elements(js []byte, f func(value []byte)) bool {
	return entries(js, '[', ']', func(i int) int {
		end := valueEnd(js, i)
		if end >= 0 {
			f(js[i:end])
		}
		return end
	})
}

// entries walks the object or array js, which opening and closing delimit: entry reads the entry
// at js[i] and returns the index after it, or -1 when it cannot.
func entries(js []byte, opening, closing byte, entry func(i int) int) bool {
	i := space(js, 0)
	if i == len(js) || js[i] != opening {
		return false
	}
	i = space(js, i+1)
	if i < len(js) && js[i] == closing {
		return space(js, i+1) == len(js)
	}
	for {
		if i = entry(i); i < 0 {
			return false
		}
		if i = space(js, i); i == len(js) {
			return false
		}
		switch js[i] {
		case ',':
			i = space(js, i+1)
		case closing:
			return space(js, i+1) == len(js)
		default:
			return false
		}
	}
}

// String is the JSON string value unquoted, when it is a string without escapes, of valid UTF-8.
func String(value []byte) (string, bool) {
	if len(value) < 2 || value[0] != '"' || value[len(value)-1] != '"' {
		return "", false
	}
	s := value[1 : len(value)-1]
	if !plain(s) {
		return "", false
	}
	return string(s), true
}

// plain is whether the content of a JSON string is its value: no escapes, no control characters,
// valid UTF-8 (a decoder replaces invalid bytes).
func plain(s []byte) bool {
	ascii := true
	for _, b := range s {
		if b == '\\' || b == '"' || b < 0x20 {
			return false
		}
		ascii = ascii && b < utf8.RuneSelf
	}
	return ascii || utf8.Valid(s)
}

func space(js []byte, i int) int {
	for i < len(js) && (js[i] == ' ' || js[i] == '\n' || js[i] == '\t' || js[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index after the string that starts at js[i], or -1.
func stringEnd(js []byte, i int) int {
	for i++; i < len(js); i++ {
		switch js[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// valueEnd is the index after the value that starts at js[i], or -1: a string, an object or an
// array (balanced, strings skipped), or a literal (a run of the characters numbers, true, false
// and null are made of).
func valueEnd(js []byte, i int) int {
	if i == len(js) {
		return -1
	}
	switch js[i] {
	case '"':
		return stringEnd(js, i)
	case '{', '[':
		var stack [256]byte // the closing brackets expected; deeper documents go the general way
		depth := 0
		for ; i < len(js); i++ {
			switch b := js[i]; b {
			case '"':
				if i = stringEnd(js, i); i < 0 {
					return -1
				}
				i--
			case '{', '[':
				if depth == len(stack) {
					return -1
				}
				stack[depth] = b + 2 // '}' is '{'+2, ']' is '['+2
				depth++
			case '}', ']':
				if depth == 0 || stack[depth-1] != b { //nolint:gosec // 0 < depth <= len(stack)
					return -1
				}
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	start := i
	for i < len(js) && literal(js[i]) {
		i++
	}
	if i == start {
		return -1
	}
	return i
}

func literal(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b == '-' || b == '+' || b == '.' || b == 'E'
}
