package policies

import (
	"fmt"
	"unicode/utf8"
)

// MaxMessageBytes bounds a result's message. Messages list offending containers, images and
// labels, all of which a tenant controls; the same bounded text reaches kubectl, the audit log
// and the CLI.
const MaxMessageBytes = 4 << 10

// Truncate cuts s to at most n bytes on a character boundary, saying how much was left out.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// The suffix's number is at most len(s): reserve room for that many digits.
	cut := max(n-len(fmt.Sprintf(" … (%d more bytes)", len(s))), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf(" … (%d more bytes)", len(s)-cut)
}
