package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// AdmitChunks judges more documents than a chunk as Admit judges them all at once: in input
// order, with the labels of a Namespace that comes after its Pods, and names every bad document
// of every chunk.
func TestAdmitChunks(t *testing.T) {
	dir := t.TempDir()
	policy := `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: labelled-only}
spec:
  enforcement: Deny
  match:
    kinds: [Pod]
    namespaceSelector: {matchLabels: {tier: production}}
  rules:
    - name: team
      labels: {required: [team]}
`
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	engine, err := LoadEngine([]string{filepath.Join(dir, "policy.yaml")}, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	n := ChunkSize + ChunkSize/2
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Pod\nmetadata: {name: p%04d, namespace: prod}\nspec: {containers: [{name: c, image: nginx}]}\n---\n", i)
	}
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {tier: production}}\n")
	docs, err := Split("all.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var got []Admitted
	if err := AdmitChunks(t.Context(), engine, docs, "", nil, func(a []Admitted) { got = append(got, a...) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n+1 {
		t.Fatalf("%d admitted, want %d", len(got), n+1)
	}
	for i, a := range got[:n] {
		if name := a.Subject().Meta.GetName(); name != fmt.Sprintf("p%04d", i) {
			t.Fatalf("admitted[%d] is %s: out of order", i, name)
		}
		if len(a.Results) != 1 || a.Results[0].Result != policies.Fail {
			t.Fatalf("%s: %+v; want the policy of the Namespace's label to fail it", a.Subject().Meta.GetName(), a.Results)
		}
	}

	// Admitted documents' text is released.
	if docs[0].JSON != nil || docs[n].JSON != nil {
		t.Error("the text of admitted documents is kept")
	}

	// Bad documents in the first and the last chunk are all named; nothing is emitted after the
	// first chunk with one.
	if docs, err = Split("all.yaml", []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	docs[1].JSON = []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad1"},"spec":{"containers":"nope"}}`)
	docs[n-1].JSON = []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad2"},"spec":{"containers":"nope"}}`)
	emitted := 0
	err = AdmitChunks(t.Context(), engine, docs, "", nil, func(a []Admitted) { emitted += len(a) })
	if err == nil || !strings.Contains(err.Error(), "all.yaml (document 2)") || !strings.Contains(err.Error(), fmt.Sprintf("all.yaml (document %d)", n)) {
		t.Fatalf("err = %v; want both bad documents named", err)
	}
	if emitted != 0 {
		t.Errorf("%d admitted after a bad document in the first chunk", emitted)
	}
}

// A chunk ends at ChunkSize documents or ChunkBytes of text, whichever comes first, and holds
// at least one document, however large.
func TestChunkEnd(t *testing.T) {
	docs := func(sizes ...int) []Document {
		out := make([]Document, len(sizes))
		for i, n := range sizes {
			out[i].JSON = make([]byte, n)
		}
		return out
	}
	small := make([]int, ChunkSize+5)
	for i := range small {
		small[i] = 100
	}
	for _, c := range []struct {
		name        string
		docs        []Document
		start, want int
	}{
		{"small documents, by count", docs(small...), 0, ChunkSize},
		{"the rest", docs(small...), ChunkSize, ChunkSize + 5},
		{"by bytes", docs(ChunkBytes/2, ChunkBytes/2, 1), 0, 2},
		{"one too large", docs(ChunkBytes+1, 1), 0, 1},
		{"after one too large", docs(ChunkBytes+1, 1, ChunkBytes), 1, 2},
		{"empty", nil, 0, 0},
	} {
		if got := chunkEnd(c.docs, c.start); got != c.want {
			t.Errorf("%s: chunkEnd = %d, want %d", c.name, got, c.want)
		}
	}
}
