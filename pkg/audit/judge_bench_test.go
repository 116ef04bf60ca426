package audit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// BenchmarkJudge is the audit's work per object of `make bench-audit`: one ~7 KB Pod, as a
// LIST returns it, decoded and judged with the load harness's policy set (PSS restricted,
// resources, labels and 20 CEL rules) in the background.
func BenchmarkJudge(b *testing.B) {
	raw, err := os.ReadFile("../policies/testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	files, err := filepath.Glob("../../test/load/policies/*.yaml")
	if err != nil {
		b.Fatal(err)
	}
	engine, err := manifest.LoadEngine(files, nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	pods := intercept.Resource{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod"}
	d := (&Scanner{}).decode() // the scan's own, which shares its input
	ns := func(string) (*corev1.Namespace, bool) { return nil, true }
	_, results, err := Judge(b.Context(), engine, d, pods, raw, ns, nil)
	if err != nil || len(results) == 0 {
		b.Fatalf("%d results, %v", len(results), err)
	}
	for _, r := range results {
		if r.Result != policies.Pass {
			b.Fatalf("%s/%s: %s %s", r.Policy, r.Rule, r.Result, r.Message)
		}
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() { // as the scan does, each object's results written over the last one's
		if _, results, err = Judge(b.Context(), engine, d, pods, raw, ns, results); err != nil {
			b.Fatal(err)
		}
	}
}
