// Package jsonscan reads a JSON document's structure without decoding it: the members of an
// object, the elements of an array, and with Walk the members of an object within it, where they
// lie in the document. Reading a document's apiVersion and kind this way costs a scan of its
// bytes, where decoding it into a struct costs the reflection over every value.
//
// It checks the structure it walks (quotes closed, brackets balanced, separators in place) but
// not every value's syntax: callers decode the document afterwards, or have validated it.
package jsonscan

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// Members calls f with each member of the object js, in order: its key, unquoted, and its
// value's bytes. It returns false, having called f for none or some members, when js is not an
// object it can follow, or a key holds an escape or invalid UTF-8: a caller then decodes the document the
// general way, which says what is wrong or reads the escape.
func Members(js []byte, f func(key, value []byte)) bool {
	end := Walk(js, 0, func(key []byte, start int) int {
		end := ValueEnd(js, start)
		if end >= 0 {
			f(key, js[start:end])
		}
		return end
	})
	return end >= 0 && Space(js, end) == len(js)
}

// Walk reads the object that starts at js[i] (after spaces) in place: member is called with each
// key, unquoted, and the index its value starts at, and returns the index after the value (reading
// it with ValueEnd, or a Walk of its own), or -1 when it cannot. Walk returns the index after the
// object's closing brace, or -1 when it cannot follow the object, or a key holds an escape or
// invalid UTF-8. Unlike Members, it reads each byte once when member walks into a value.
func Walk(js []byte, i int, member func(key []byte, value int) int) int {
	return entries(js, i, '{', '}', func(i int) int {
		if i == len(js) || js[i] != '"' {
			return -1
		}
		end := StringEnd(js, i)
		if end < 0 {
			return -1
		}
		key := js[i+1 : end-1]
		if !plain(key) {
			return -1
		}
		if i = Space(js, end); i == len(js) || js[i] != ':' {
			return -1
		}
		return member(key, Space(js, i+1))
	})
}

// Elements calls f with the bytes of each element of the array js, in order. It returns false
// when js is not an array it can follow.
func Elements(js []byte, f func(value []byte)) bool {
	end := entries(js, 0, '[', ']', func(i int) int {
		end := ValueEnd(js, i)
		if end >= 0 {
			f(js[i:end])
		}
		return end
	})
	return end >= 0 && Space(js, end) == len(js)
}

// entries walks the object or array that starts at js[i] (after spaces), which opening and
// closing delimit: entry reads the entry at js[i] and returns the index after it, or -1 when it
// cannot. It returns the index after the closing delimiter, or -1.
func entries(js []byte, i int, opening, closing byte, entry func(i int) int) int {
	i = Space(js, i)
	if i == len(js) || js[i] != opening {
		return -1
	}
	i = Space(js, i+1)
	if i < len(js) && js[i] == closing {
		return i + 1
	}
	for {
		if i = entry(i); i < 0 {
			return -1
		}
		if i = Space(js, i); i == len(js) {
			return -1
		}
		switch js[i] {
		case ',':
			i = Space(js, i+1)
		case closing:
			return i + 1
		default:
			return -1
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

// Space is the index of the first byte at or after i that is not JSON whitespace, or len(js).
func Space(js []byte, i int) int {
	for i < len(js) && (js[i] == ' ' || js[i] == '\n' || js[i] == '\t' || js[i] == '\r') {
		i++
	}
	return i
}

// StringEnd is the index after the string whose opening quote is js[i], or -1 when it is not
// closed: the first quote not escaped. Most strings hold no escape: it reads their bytes eight at a
// time (quoteOrEscape) to the first quote or backslash, and goes the escape-aware way only at a
// backslash.
func StringEnd(js []byte, i int) int {
	j := i + 1
	for ; len(js)-j >= 8; j += 8 {
		if m := quoteOrEscape(binary.LittleEndian.Uint64(js[j:])); m != 0 {
			j += bits.TrailingZeros64(m) / 8
			if js[j] == '"' {
				return j + 1
			}
			return escapedStringEnd(js, j)
		}
	}
	return stringEndFrom(js, j)
}

// stringEndFrom is StringEnd from js[j] on, a byte at a time: the string's last bytes, fewer than
// eight.
func stringEndFrom(js []byte, j int) int {
	for ; j < len(js); j++ {
		switch js[j] {
		case '"':
			return j + 1
		case '\\':
			return escapedStringEnd(js, j)
		}
	}
	return -1
}

// quoteOrEscape marks, in the high bit of its byte, the first byte of the eight in w (read little
// endian: the first is the lowest) that is a quote or a backslash, and may mark bytes after it
// (a borrow runs up from a match); it is 0 when none of the eight is one. The test for a zero
// byte is Hacker's Delight's: (x - 0x01…) &^ x has the high bit of the first zero byte of x set.
func quoteOrEscape(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q, b := w^(ones*'"'), w^(ones*'\\')
	return ((q-ones)&^q | (b-ones)&^b) & highs
}

// escapedStringEnd is StringEnd past the escape at js[i].
func escapedStringEnd(js []byte, i int) int {
	for ; i < len(js); i++ {
		switch js[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// structural marks the bytes ValueEnd acts on in an object or array; it skips every other byte
// outside strings.
var structural = [256]bool{'"': true, '{': true, '}': true, '[': true, ']': true}

// ValueEnd is the index after the value that starts at js[i], or -1: a string, an object or an
// array (balanced, strings skipped), or a literal (a run of the characters numbers, true, false
// and null are made of).
func ValueEnd(js []byte, i int) int {
	if i == len(js) {
		return -1
	}
	switch js[i] {
	case '"':
		return StringEnd(js, i)
	case '{', '[':
		var stack [256]byte // the closing brackets expected; deeper documents go the general way
		depth := 0
		for ; i < len(js); i++ {
			b := js[i]
			if !structural[b] {
				continue
			}
			switch b {
			case '"':
				if i = StringEnd(js, i); i < 0 {
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
