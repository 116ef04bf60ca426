package policies

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
)

// TestCachedMatchesAgree: a program whose matches calls cache their patterns gives what the
// program without them gives, value, error and cost, on patterns from the object and constant
// ones, valid or not, and on arguments that are not strings.
func TestCachedMatchesAgree(t *testing.T) {
	env := testCompiler.env
	objects := []map[string]any{
		{"s": "a123", "p": "^a[0-9]+$", "n": 3, "list": []any{"a1", "a22", "b"}},
		{"s": "zz", "p": "(", "n": 3, "list": []any{}},
		{"s": strings.Repeat("a", 3000), "p": strings.Repeat("a?", 700) + "$", "n": 3, "list": []any{"a1"}},
		{"s": "x", "p": 7, "n": "not a number", "list": []any{1, "a"}},
	}
	for _, expr := range []string{
		"object.s.matches(object.p)",
		"matches(object.s, object.p)",
		"object.s.matches('^a+$')",
		"object.n.matches(object.p)",
		"object.s.matches(object.n)",
		"object.missing.matches(object.p)",
		"object.list.all(x, x.matches(object.p))",
		"object.list.exists(x, object.s.matches(x))",
	} {
		ast, iss := env.Compile(expr)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", expr, iss.Err())
		}
		plain, err := env.Program(ast, cel.InterruptCheckFrequency(celconfig.CheckFrequency))
		if err != nil {
			t.Fatal(err)
		}
		cached, err := env.Program(ast, cel.InterruptCheckFrequency(celconfig.CheckFrequency), cachedMatches)
		if err != nil {
			t.Fatal(err)
		}
		for i, obj := range objects {
			for range 2 { // the second time from the cache
				in := map[string]any{varObject: obj}
				want, wantDetails, wantErr := plain.ContextEval(t.Context(), in)
				got, gotDetails, gotErr := cached.ContextEval(t.Context(), in)
				if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) || (wantErr == nil && got.Equal(want) != types.True) {
					t.Errorf("%s on object %d: %v (%v), want %v (%v)", expr, i, got, gotErr, want, wantErr)
				}
				if w, g := wantDetails.ActualCost(), gotDetails.ActualCost(); w == nil || g == nil || *w != *g {
					t.Errorf("%s on object %d: cost %v, want %v", expr, i, deref(g), deref(w))
				}
			}
		}
	}
}

// TestRegexCacheBounded: a cache keeps at most regexCacheSize patterns, none longer than
// regexCacheMaxPattern and none invalid, whatever its callers send, concurrently.
func TestRegexCacheBounded(t *testing.T) {
	var c regexCache
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				re, err := c.compile(fmt.Sprintf("^p%d-%d$", g, i))
				if err != nil || !re.MatchString(fmt.Sprintf("p%d-%d", g, i)) {
					t.Errorf("pattern %d-%d: %v", g, i, err)
				}
			}
		})
	}
	wg.Wait()
	count := 0
	c.compiled.Range(func(any, any) bool { count++; return true })
	if count != regexCacheSize || c.len() != regexCacheSize {
		t.Errorf("%d patterns cached (counted %d), want %d", count, c.len(), regexCacheSize)
	}
	var d regexCache
	long := strings.Repeat("a", regexCacheMaxPattern+1)
	if re, err := d.compile(long); err != nil || !re.MatchString(long) {
		t.Errorf("a long pattern: %v", err)
	}
	if _, err := d.compile("("); err == nil {
		t.Error("an invalid pattern compiled")
	}
	if d.len() != 0 {
		t.Errorf("%d patterns cached, want none (too long, invalid)", d.len())
	}
}

// TestRegexCacheKeepsTheLatest: a full cache takes a new pattern in place of its oldest, so that
// patterns read again and again stay cached beside a stream of distinct ones (a program's cache
// serves every policy that holds the program).
func TestRegexCacheKeepsTheLatest(t *testing.T) {
	var c regexCache
	for i := range regexCacheSize { // the first comers: a tenant's objects
		if _, err := c.compile(fmt.Sprintf("^junk-%d$", i)); err != nil {
			t.Fatal(err)
		}
	}
	hot := "^team-[a-z]+$"
	first, err := c.compile(hot)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := c.compile(hot); again != first {
		t.Error("a full cache did not take a new pattern: it is compiled again")
	}
	if _, kept := c.compiled.Load("^junk-0$"); kept {
		t.Error("the oldest pattern is still kept")
	}
	if _, kept := c.compiled.Load("^junk-1$"); !kept {
		t.Error("the second oldest pattern is gone, not the oldest")
	}
	for i := range 10 * regexCacheSize { // a stream of distinct ones, the hot one read between them
		if _, err := c.compile(fmt.Sprintf("^stream-%d$", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.compile(hot); err != nil {
			t.Fatal(err)
		}
	}
	count := 0
	c.compiled.Range(func(any, any) bool { count++; return true })
	if count != regexCacheSize || c.len() != regexCacheSize {
		t.Errorf("%d patterns cached (counted %d), want %d", count, c.len(), regexCacheSize)
	}
}

func deref(p *uint64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestRegexCacheCopiesPatterns: a cached pattern is a copy, not the caller's string, which may be
// a part of a request's object (Decoder.SharingInput): the request's buffer, changed or dropped
// afterwards, changes nothing in the cache.
func TestRegexCacheCopiesPatterns(t *testing.T) {
	var c regexCache
	buf := []byte("^shared-[0-9]+$")
	if _, err := c.compile(unsafe.String(&buf[0], len(buf))); err != nil {
		t.Fatal(err)
	}
	copy(buf, "^XXXXXX-[a-z]+$")
	c.compiled.Range(func(k, v any) bool {
		if k.(string) != "^shared-[0-9]+$" || v.(*regexp.Regexp).String() != "^shared-[0-9]+$" {
			t.Errorf("the cache holds %q -> %q: the caller's buffer, not a copy", k, v)
		}
		return true
	})
	if re, err := c.compile("^shared-[0-9]+$"); err != nil || !re.MatchString("shared-42") || c.len() != 1 {
		t.Errorf("the pattern is not found again: %v, %d cached", err, c.len())
	}
}
