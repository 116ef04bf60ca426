package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// referencePage is what encoding/json makes of a LIST response.
type referencePage struct {
	Metadata pageMeta          `json:"metadata"`
	Items    []json.RawMessage `json:"items"`
}

// samePage reports how splitPage's reading of body differs from encoding/json's, when
// encoding/json reads it ("" when they agree, or when encoding/json refuses it).
func samePage(body []byte) string {
	var want referencePage
	if json.Unmarshal(body, &want) != nil {
		_, _, _ = splitPage(body) // never panics
		return ""
	}
	meta, items, err := splitPage(body)
	if err != nil {
		return fmt.Sprintf("refused: %v", err)
	}
	if meta != want.Metadata {
		return fmt.Sprintf("metadata %+v, want %+v", meta, want.Metadata)
	}
	if len(items) != len(want.Items) {
		return fmt.Sprintf("%d items, want %d", len(items), len(want.Items))
	}
	for i := range items {
		if !bytes.Equal(items[i], want.Items[i]) {
			return fmt.Sprintf("item %d: %q, want %q", i, items[i], want.Items[i])
		}
	}
	return ""
}

// TestSplitPage: a page is read as encoding/json reads it (metadata, and each item's exact
// bytes), whatever the order of its members, its spacing and its strings; what is not a page is
// an error, never a panic.
func TestSplitPage(t *testing.T) {
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a \"quoted\" ]}, name","annotations":{"k":"\\"}},"spec":{"containers":[{"name":"c","image":"x"}]}}`
	for _, body := range []string{
		`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"42","continue":"abc"},"items":[` + pod + `,` + pod + `]}`,
		`{"items":[` + pod + `],"metadata":{"resourceVersion":"7"},"kind":"PodList"}`,
		" {\n \"metadata\" : { \"continue\" : \"\" } ,\n \"items\" : [ " + pod + " , {} , [] , \"s\" , 1 , null ] } \n",
		`{"metadata":{},"items":[]}`,
		`{"metadata":{},"items":null}`,
		`{}`,
		`{"items":[{"a":[[[{"b":"}"}]]]}]}`,
	} {
		if why := samePage([]byte(body)); why != "" {
			t.Errorf("%.60s: %s", body, why)
		}
	}
	for _, body := range []string{
		``, `[]`, `{`, `{"items":[`, `{"items":[{"a":1}`, `{"items":[1 2]}`, `{"items":"x"}`, `{"metadata":[]}`,
		`{"items":[]} x`, `{"items":["unterminated]}`, `{"a" 1}`, `{"a":1,}`, strings.Repeat("[", 1000),
	} {
		if _, _, err := splitPage([]byte(body)); err == nil {
			t.Errorf("%.40q: read, want an error", body)
		}
	}
}

// FuzzSplitPage: on anything encoding/json reads as a page, splitPage reads the same.
func FuzzSplitPage(f *testing.F) {
	for _, s := range []string{`{"metadata":{"continue":"c"},"items":[{"a":"\""},[1]]}`, `{"items":[ {} ]}`, `{}`, `{"items":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if why := samePage(body); why != "" {
			t.Errorf("%q: %s", body, why)
		}
	})
}
