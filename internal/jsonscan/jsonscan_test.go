package jsonscan

import (
	"bytes"
	"encoding/json"
	"maps"
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
