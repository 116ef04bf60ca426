package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// referencePage is what encoding/json makes of a LIST response.
type referencePage struct {
	Metadata pageMeta          `json:"metadata"`
	Items    []json.RawMessage `json:"items"`
}

// readPageWhole reads body as List does: its metadata, then its items one at a time.
func readPageWhole(body []byte) (pageMeta, [][]byte, error) {
	meta, items, err := splitPage(body)
	if err != nil {
		return meta, nil, err
	}
	var out [][]byte
	err = items.each(body, func(item []byte) error { out = append(out, item); return nil })
	return meta, out, err
}

// samePage reports how splitPage's reading of body differs from encoding/json's, when
// encoding/json reads it ("" when they agree, or when encoding/json refuses it). A page that
// gives its metadata or its items twice is refused, where encoding/json reads the last.
func samePage(body []byte) string {
	var want referencePage
	if json.Unmarshal(body, &want) != nil {
		_, _, _ = readPageWhole(body) // never panics
		return ""
	}
	meta, items, err := readPageWhole(body)
	if errors.Is(err, errTwice) {
		return ""
	}
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
		// the same, the metadata first: the items are split as they are handed out
		`{"metadata":{},"items":[1 2]}`, `{"metadata":{},"items":[]} x`, `{"metadata":{},"items":"x"}`,
		`{"metadata":{},"items":nul}`, `{"metadata":{},"items":[{"a":1}`, `{"metadata":{},"items":[],"a" 1}`,
		`{"metadata":{},"items":[],"metadata":{}}`, `{"items":[],"items":[],"metadata":{}}`,
	} {
		if _, _, err := readPageWhole([]byte(body)); err == nil {
			t.Errorf("%.40q: read, want an error", body)
		}
	}
}

// TestPageItemsAreSplitAsTheyAreJudged: the items of a page are handed out one at a time, each
// split off just before, so that no pass over the whole page (15 ms for 500 Pods) holds the
// processor: the items before a broken one are judged before the break is found.
func TestPageItemsAreSplitAsTheyAreJudged(t *testing.T) {
	body := []byte(`{"metadata":{"continue":"c"},"items":[{"a":1},{"b":2},{"c":"unterminated]}`)
	meta, items, err := splitPage(body)
	if err != nil || meta.Continue != "c" {
		t.Fatalf("splitPage: %+v, %v; want the metadata read, with no error", meta, err)
	}
	var got []string
	err = items.each(body, func(item []byte) error { got = append(got, string(item)); return nil })
	if want := []string{`{"a":1}`, `{"b":2}`}; !slices.Equal(got, want) || err == nil {
		t.Errorf("handed out %q with error %v; want %q, then an error", got, err, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := items.each(body, func([]byte) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("an error from the caller: %d calls, %v; want 1 call, and the caller's error", calls, err)
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
