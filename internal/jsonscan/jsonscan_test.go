package jsonscan

import (
	"bytes"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// members decodes js the general way: its members by key, the last of a repeated key winning,
// as Members' callers keep them.
func members(js []byte) (map[string]string, bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(js, &m); err != nil || m == nil {
		return nil, false
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = compact(v)
	}
	return out, true
}

func compact(v []byte) string {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return "invalid: " + string(v)
	}
	return b.String()
}

func scanned(js []byte) (map[string]string, bool) {
	out := map[string]string{}
	ok := Members(js, func(k, v []byte) { out[string(k)] = compact(v) })
	return out, ok
}

func TestMembers(t *testing.T) {
	for _, c := range []struct {
		js   string
		ok   bool
		want map[string]string
	}{
		{`{}`, true, map[string]string{}},
		{` {"apiVersion": "v1", "kind":"Pod" , "spec": {"a": [1, {"b": "}]"}]}, "n": -1.5e3, "t": true, "z": null} `, true,
			map[string]string{"apiVersion": `"v1"`, "kind": `"Pod"`, "spec": `{"a":[1,{"b":"}]"}]}`, "n": "-1.5e3", "t": "true", "z": "null"}},
		{`{"s": "a\"b\\", "k": "v"}`, true, map[string]string{"s": `"a\"b\\"`, "k": `"v"`}},
		{`{"k": 1, "k": 2}`, true, map[string]string{"k": "2"}},
		{`{"k\u0069nd": "Pod"}`, false, nil}, // an escaped key: decode it
		{`[]`, false, nil},
		{`{"a": 1`, false, nil},
		{`{"a": 1,}`, false, nil},
		{`{"a" 1}`, false, nil},
		{`{"a": [1, 2}`, false, nil},
		{`{"a": {"b": 1]}`, false, nil},
		{`{"a": "unterminated}`, false, nil},
		{`{"a": }`, false, nil},
		{`{"a": 1} x`, false, nil},
		{`{"a": 1}}`, false, nil},
	} {
		got, ok := scanned([]byte(c.js))
		if ok != c.ok || ok && !maps.Equal(got, c.want) {
			t.Errorf("Members(%s) = %v, %v; want %v, %v", c.js, got, ok, c.want, c.ok)
		}
	}
}

func TestElements(t *testing.T) {
	var got []string
	if !Elements([]byte(` [ {"a": [1]}, "x,]", 3 , null ] `), func(v []byte) { got = append(got, string(v)) }) {
		t.Fatal("not read")
	}
	if want := []string{`{"a": [1]}`, `"x,]"`, `3`, `null`}; !bytes.Equal([]byte(compact(mustJSON(t, got))), []byte(compact(mustJSON(t, want)))) {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, bad := range []string{`{}`, `[1,]`, `[1 2]`, `[`, `[1]]`} {
		if Elements([]byte(bad), func([]byte) {}) {
			t.Errorf("Elements(%s) read it", bad)
		}
	}
	if !Elements([]byte(`[]`), func([]byte) { t.Error("an element of []") }) {
		t.Error("[] not read")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{`"v1"`: "v1", `""`: ""} {
		if got, ok := String([]byte(in)); !ok || got != want {
			t.Errorf("String(%s) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{`"a\"b"`, `1`, `null`, `"`, `"a`} {
		if _, ok := String([]byte(in)); ok {
			t.Errorf("String(%s) read it", in)
		}
	}
}

// FuzzMembers holds Members to the general decoder: on valid JSON it reads an object's members
// as encoding/json does, or declines.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{"apiVersion":"v1","kind":"List","items":[{"a":1},"b"]}`, `{"a":{"b":[1,"]"]}}`, `{"a\"":1}`, `[1]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		got, ok := scanned(js)
		if !json.Valid(js) {
			return
		}
		want, isObject := members(js)
		if ok && !isObject {
			t.Fatalf("Members read %s, which is not an object", js)
		}
		if ok && !maps.Equal(got, want) {
			t.Fatalf("Members(%s) = %v, want %v", js, got, want)
		}
		if !ok && isObject && !bytes.Contains(js, []byte(`\`)) && utf8.Valid(js) && depth(js) < 256 {
			t.Fatalf("Members declined %s", js)
		}
	})
}

func depth(js []byte) int {
	d, most := 0, 0
	for _, b := range js {
		switch b {
		case '{', '[':
			d++
			most = max(most, d)
		case '}', ']':
			d--
		}
	}
	return most
}

// TestWalk: Walk reads an object where it starts, whatever follows it, and a member may walk into
// its value; it returns the index after the object, or -1.
func TestWalk(t *testing.T) {
	js := []byte(` {"a": {"b": [1, "}"], "c": {}}, "d": "x\"y"} tail`)
	var seen []string
	end := Walk(js, 0, func(key []byte, at int) int {
		if string(key) != "a" {
			seen = append(seen, string(key)+"="+string(js[at:ValueEnd(js, at)]))
			return ValueEnd(js, at)
		}
		return Walk(js, at, func(key []byte, at int) int {
			seen = append(seen, "a."+string(key)+"="+string(js[at:ValueEnd(js, at)]))
			return ValueEnd(js, at)
		})
	})
	if want := len(js) - len(" tail"); end != want {
		t.Errorf("end %d, want %d", end, want)
	}
	if got, want := strings.Join(seen, " "), `a.b=[1, "}"] a.c={} d="x\"y"`; got != want {
		t.Errorf("members %s, want %s", got, want)
	}
	for _, bad := range []string{`{"a":1`, `{"a" 1}`, `[1]`, `{"\u0061":1}`, `{"a":1,}`, ``} {
		if end := Walk([]byte(bad), 0, func(_ []byte, at int) int { return ValueEnd([]byte(bad), at) }); end != -1 {
			t.Errorf("%s: end %d, want -1", bad, end)
		}
	}
	if end := Walk([]byte(`{"a":1}`), 0, func([]byte, int) int { return -1 }); end != -1 {
		t.Errorf("a member that cannot read its value: end %d, want -1", end)
	}
}

// TestStringEnd: the first quote after an even run of backslashes ends a string.
func TestStringEnd(t *testing.T) {
	for in, want := range map[string]int{`""`: 2, `"abc"x`: 5, `"a\"b"`: 6, `"a\\"b"`: 5, `"a\\\"b"`: 8, `"` + strings.Repeat("x", 40) + `"`: 42, `"abc`: -1, `"a\"`: -1} {
		if got := StringEnd([]byte(in), 0); got != want {
			t.Errorf("%s: %d, want %d", in, got, want)
		}
	}
}

// stringEndByBytes is StringEnd one byte at a time, as it was before it read eight.
func stringEndByBytes(js []byte, i int) int { return stringEndFrom(js, i+1) }

// TestStringEndReadsEightAtATime: StringEnd agrees with a byte-at-a-time reading on strings of
// every length up to three words with a quote or a backslash at every place, among bytes next to
// them in value (a borrow or a carry of quoteOrEscape's arithmetic would show there), and on
// random bytes.
func TestStringEndReadsEightAtATime(t *testing.T) {
	fillers := []byte{'a', '"' - 1, '"' + 1, '\\' - 1, '\\' + 1, 0x00, 0x01, 0x7f, 0x80, 0x80 | '"', 0x80 | '\\', 0xff}
	check := func(js []byte) {
		t.Helper()
		if got, want := StringEnd(js, 0), stringEndByBytes(js, 0); got != want {
			t.Fatalf("%q: %d, want %d", js, got, want)
		}
	}
	for n := range 26 {
		for _, fill := range fillers {
			js := append([]byte{'"'}, bytes.Repeat([]byte{fill}, n)...)
			check(js) // unterminated
			for at := 1; at <= n; at++ {
				for _, c := range []byte{'"', '\\'} {
					s := slices.Clone(js)
					s[at] = c
					check(s)
					check(append(s, '"'))
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := append(fillers, '"', '\\', 'x', 'y')
	for range 20000 {
		js := []byte{'"'}
		for range rng.IntN(40) {
			js = append(js, alphabet[rng.IntN(len(alphabet))])
		}
		check(js)
	}
}

// BenchmarkStringEnd reads every string of the benchmark Pod's JSON.
func BenchmarkStringEnd(b *testing.B) {
	js, err := os.ReadFile("../../pkg/policies/testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	var starts []int
	for i := 0; i < len(js); i++ {
		if js[i] == '"' {
			starts = append(starts, i)
			i = StringEnd(js, i) - 1
		}
	}
	b.SetBytes(int64(len(js)))
	for b.Loop() {
		for _, i := range starts {
			if StringEnd(js, i) < 0 {
				b.Fatal("unterminated")
			}
		}
	}
}

// validCases are documents at the edges of JSON's grammar, for Valid against encoding/json.
var validCases = []string{
	``, ` `, `{}`, `[]`, ` {} `, `{} {}`, `{`, `}`, `[`, `]`, `{]`, `[}`, `[1,]`, `{"a":1,}`, `{,}`, `[,1]`,
	`{"a"}`, `{"a":}`, `{"a" 1}`, `{"a":1 "b":2}`, `{1:2}`, `{'a':1}`, `{"a":1}x`, `"a"`, `"a`, `a"`,
	`0`, `-0`, `01`, `-01`, `1.`, `.1`, `1.5`, `-1.5e10`, `1e`, `1e+`, `1E-3`, `1e03`, `+1`, `--1`, `-`, `1.e3`,
	`0x10`, `1_000`, `Infinity`, `NaN`, `true`, `false`, `null`, `tru`, `nul`, `truex`, `True`, `nulll`,
	`"\""`, `"\\"`, `"\/"`, `"\b\f\n\r\t"`, `"\u00e9"`, `"\u00E9"`, `"\u00g9"`, `"\u00e"`, `"\x"`, `"\'"`,
	`"\`, `"\u`, "\"a\tb\"", "\"a\nb\"", "\"a\x00b\"", "\"\x1f\"", "\"\x7f\"", "\"\xff\xfe\"", `"é"`,
	`"abcdefghijklmnopqrstuvwxyz"`, `"abcdefgh"`, `"abcdefg\"h"`, `"abcdefghi\\"`, `"12345678\u0041bcdefgh"`,
	"\"abcdefg\x01hijk\"", "\"abcdefghijklm\x19\"", "\t\r\n {\"a\"\t:\n[1 , 2 ]\r}\n", "\v{}", "\f{}",
	`{"a":{"b":[{"c":null},[],{}]},"d":"e"}`, `[[[[]]]]`, `[[[[]]]`, `{"a":[}`, `[{"a":1]}`,
}

// Valid says what encoding/json's Valid says: on validCases, every prefix of a Kubernetes
// object, and nesting at and past encoding/json's bound.
func TestValid(t *testing.T) {
	cases := slices.Clone(validCases)
	pod, err := os.ReadFile("../../pkg/policies/testdata/bench/pod.json")
	if err != nil {
		t.Fatal(err)
	}
	for i := range pod {
		cases = append(cases, string(pod[:i]))
	}
	for _, depth := range []int{maxDepth - 1, maxDepth, maxDepth + 1} {
		cases = append(cases, strings.Repeat("[", depth)+strings.Repeat("]", depth),
			strings.Repeat(`{"a":`, depth)+"1"+strings.Repeat("}", depth),
			strings.Repeat("[", depth-1)+"{}"+strings.Repeat("]", depth-1))
	}
	for _, c := range cases {
		if got, want := Valid([]byte(c)), json.Valid([]byte(c)); got != want {
			t.Errorf("Valid(%.80q) = %v, encoding/json says %v", c, got, want)
		}
	}
	if !Valid(pod) {
		t.Error("the benchmark Pod is not valid")
	}
}

// FuzzValid: Valid says what encoding/json's Valid says, on any bytes.
func FuzzValid(f *testing.F) {
	for _, c := range validCases {
		f.Add([]byte(c))
	}
	if pod, err := os.ReadFile("../../pkg/policies/testdata/bench/pod.json"); err == nil {
		f.Add(pod)
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		if got, want := Valid(js), json.Valid(js); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json says %v", js, got, want)
		}
	})
}

// BenchmarkValid checks a JSON List of 100 ~7 KB Pods, with encoding/json's Valid beside it.
func BenchmarkValid(b *testing.B) {
	pod, err := os.ReadFile("../../pkg/policies/testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	list := []byte(`{"apiVersion":"v1","kind":"List","items":[`)
	for i := range 100 {
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, pod...)
	}
	list = append(list, "]}"...)
	for _, v := range []struct {
		name  string
		valid func([]byte) bool
	}{{"jsonscan", Valid}, {"encoding_json", json.Valid}} {
		b.Run(v.name, func(b *testing.B) {
			b.SetBytes(int64(len(list)))
			for b.Loop() {
				if !v.valid(list) {
					b.Fatal("not valid")
				}
			}
		})
	}
}
