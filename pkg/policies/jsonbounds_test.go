package policies

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceBounds is what decoding data tells: the most entries of one array or object and the
// longest string or key, in characters; ok false when data is not JSON.
func referenceBounds(data []byte) (jsonBounds, bool) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return jsonBounds{}, false
	}
	var b jsonBounds
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			b.chars = max(b.chars, utf8.RuneCountInString(v))
		case []any:
			b.items = max(b.items, len(v))
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			b.items = max(b.items, len(v))
			for k, e := range v {
				walk(k)
				walk(e)
			}
		}
	}
	walk(v)
	return b, true
}

// TestScanBounds: scanBounds is never below what decoding finds, on the library's suites and the
// examples, and on the tricks a tenant could try (escaped quotes, separators in strings);
// what it cannot follow is unknown.
func TestScanBounds(t *testing.T) {
	for _, js := range corpusJSON(t) {
		want, ok := referenceBounds(js)
		if !ok {
			t.Fatalf("not JSON: %.80s", js)
		}
		if got := scanBounds(js, nil); got.items < want.items || got.chars < want.chars || got == unknownBounds {
			t.Errorf("%.80s: %+v, want at least %+v", js, got, want)
		}
	}
	deep := strings.Repeat("[", maxBoundsDepth+1) + strings.Repeat("]", maxBoundsDepth+1)
	for in, want := range map[string]jsonBounds{
		`{"a":"x\"y,z","b":[1,2,3]}`: {items: 3, chars: 6},
		`{"a":"\\","b":1,"c":{}}`:    {items: 3, chars: 2},
		`["a,b,c",{"k":"v"}]`:        {items: 2, chars: 5},
		`{"a":"\\\"]"}`:              {items: 1, chars: 5},
		`{"é":"日本語"}`:                {items: 1, chars: 9}, // bytes, at least the characters
		`[[[1,2],[3,4,5,6]]]`:        {items: 4, chars: 0},
		`{"a":"unterminated}`:        unknownBounds,
		`{"a":"\"}`:                  unknownBounds,
		`]`:                          unknownBounds,
		`{"a":[1,2}]`:                {items: 2, chars: 1}, // not JSON, but balanced: the decoder refuses it
		`{"a":[`:                     unknownBounds,
		deep:                         unknownBounds,
		strings.Repeat("[", 200) + strings.Repeat("]", 200): {items: 1, chars: 0},
	} {
		if got := scanBounds([]byte(in), nil); got != want {
			t.Errorf("%.40s: %+v, want %+v", in, got, want)
		}
	}
}

// FuzzScanBounds: on any JSON, scanBounds is unknown or at least what decoding finds.
func FuzzScanBounds(f *testing.F) {
	for _, s := range []string{`{"a":"x\"y,z","b":[1,2,3]}`, `["a,b,c",{"k":"v"}]`, `{"a":"\\\"]"}`, `[[],{},""]`, `"\u0041\\"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want, ok := referenceBounds(data)
		if !ok {
			_ = scanBounds(data, nil) // never panics
			return
		}
		if got := scanBounds(data, nil); got.items < want.items || got.chars < want.chars {
			t.Errorf("%q: %+v, want at least %+v", data, got, want)
		}
	})
}

// BenchmarkScanBounds is the pass Decode adds for the untracked programs, on the ~7 KB Pod: alone,
// and reading the lengths of the pod spec's arrays for presizing as the webhook's decoder does
// (with a podSizer reused, as its pool does).
func BenchmarkScanBounds(b *testing.B) {
	data, err := os.ReadFile("testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name  string
		sizer func() *podSizer
	}{{"bounds", func() *podSizer { return nil }}, {"sizing", func() func() *podSizer {
		z := new(podSizer)
		return func() *podSizer { z.reset(specKeys["/spec"]); return z }
	}()}} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if scanBounds(data, bb.sizer()) == unknownBounds {
					b.Fatal("unknown")
				}
			}
		})
	}
}
