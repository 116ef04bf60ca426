package audit

import (
	"fmt"
	"runtime"
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
