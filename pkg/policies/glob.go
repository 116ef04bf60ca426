package policies

import (
	"fmt"
	"regexp"
	"strings"
)

// glob matches names against a pattern where '*' matches any run of characters (including '/')
// and '?' matches one character. Patterns without wildcards compare exactly.
type glob struct {
	pattern string
	re      *regexp.Regexp // nil for a literal pattern
}

func compileGlob(pattern string) (glob, error) {
	if pattern == "" {
		return glob{}, fmt.Errorf("must not be empty")
	}
	if len(pattern) > MaxGlobLength {
		return glob{}, fmt.Errorf("must be at most %d characters", MaxGlobLength)
	}
	if strings.ContainsAny(pattern, " \t\r\n") {
		return glob{}, fmt.Errorf("must not contain whitespace")
	}
	if !strings.ContainsAny(pattern, "*?") {
		return glob{pattern: pattern}, nil
	}
	var b strings.Builder
	b.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return glob{pattern: pattern, re: regexp.MustCompile(b.String())}, nil
}

func (g glob) match(s string) bool {
	if g.re == nil {
		return g.pattern == s
	}
	return g.re.MatchString(s)
}

func matchAny(globs []glob, s string) bool {
	for _, g := range globs {
		if g.match(s) {
			return true
		}
	}
	return false
}
