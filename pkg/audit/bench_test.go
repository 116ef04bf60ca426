package audit

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// BenchmarkStoreMemory measures what the store holds per object judged: 100,000 Pods in 10
// namespaces, three policies each, one Pod in ten failing one rule (so that reports fill up to
// their 1,000 results). It reports the heap in use per object.
func BenchmarkStoreMemory(b *testing.B) {
	const objects = 100000
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		s := NewStore(sets.New(Fail, Warn, Error), 1000, nil)
		for i := range objects {
			ns := fmt.Sprintf("audit-%02d", i%10)
			ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("bench-%06d", i), UID: types.UID(fmt.Sprintf("0b4c6f3e-9d2a-4f1b-8c7e-%012d", i))}
			rs := []policies.Result{
				{Policy: "pod-security-restricted", Rule: "restricted", Result: policies.Pass, Action: v1alpha1.Audit},
				{Policy: "require-requests-limits", Rule: "requests-and-limits", Result: policies.Pass, Action: v1alpha1.Audit},
				{Policy: "disallow-latest-tag", Rule: "explicit-tag", Result: policies.Pass, Action: v1alpha1.Audit},
			}
			if i%10 == 0 {
				rs[0].Result, rs[0].Message = policies.Fail, `violates PodSecurity "restricted:latest": privileged (container "app" must not set securityContext.privileged=true)`
			}
			s.Put(pods, ref, uint64(i), 1, rs)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/objects, "heap-B/object")
		runtime.KeepAlive(s)
	}
}

// BenchmarkListPages lists 5,000 copies of the engine benchmarks' ~7 KB Pod, in 10 pages of 500
// (about 3.4 MB each), from a loopback server, and drops them: what reading the pages costs the
// scan, before any object is judged. B/op is per List of all ten pages.
func BenchmarkListPages(b *testing.B) {
	pod, err := os.ReadFile("../policies/testdata/bench/pod.json")
	if err != nil {
		b.Fatal(err)
	}
	const pages, perPage = 10, 500
	var items bytes.Buffer
	for i := range perPage {
		if i > 0 {
			items.WriteByte(',')
		}
		items.Write(bytes.TrimSpace(pod))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if token := r.URL.Query().Get("continue"); token != "" {
			n, _ = strconv.Atoi(token)
		}
		cont := ""
		if n+1 < pages {
			cont = strconv.Itoa(n + 1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1","continue":%q},"items":[`, cont)
		_, _ = w.Write(items.Bytes())
		_, _ = w.Write([]byte("]}"))
	}))
	b.Cleanup(srv.Close)
	l := &Lister{Client: restClient(b, srv.URL, nil), PageSize: perPage}
	b.SetBytes(int64(pages * (perPage*len(bytes.TrimSpace(pod)) + 100)))
	b.ReportAllocs()
	for b.Loop() {
		objects := 0
		if _, err := l.List(b.Context(), podsResource, "", func([]byte) error { objects++; return nil }, nil); err != nil {
			b.Fatal(err)
		}
		if objects != pages*perPage {
			b.Fatalf("%d objects, want %d", objects, pages*perPage)
		}
	}
}
