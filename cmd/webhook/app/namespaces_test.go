package app

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// The reviews' namespaces come from the informer's store once it has synced, and through the
// client (which waits for the sync) until then; a namespace neither has is not found.
func TestNamespacesReadTheSyncedStore(t *testing.T) {
	inStore := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"from": "store"}}}
	listed := make(chan struct{})
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			select { // the informer syncs when the test says so
			case <-listed:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &corev1.NamespaceList{Items: []corev1.Namespace{*inStore}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
			return watch.NewFake(), nil
		},
	}
	informer := toolscache.NewSharedIndexInformer(listThenWatch{lw}, &corev1.Namespace{}, 0, toolscache.Indexers{})
	go informer.RunWithContext(t.Context())
	viaClient := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"from": "client"}}}
	n := namespaces{
		c:        fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(viaClient).Build(),
		informer: informer,
	}
	from := func(name string) string {
		t.Helper()
		ns, err := n.GetNamespace(t.Context(), name)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return "not found"
			}
			t.Fatalf("%s: %v", name, err)
		}
		return ns.Labels["from"]
	}
	if got := from("shop"); got != "client" {
		t.Errorf("before the sync: shop from %q, want the client's", got)
	}
	close(listed)
	deadline := time.Now().Add(10 * time.Second)
	for !informer.HasSynced() {
		if time.Now().After(deadline) {
			t.Fatal("the informer did not sync")
		}
		time.Sleep(time.Millisecond)
	}
	if got := from("shop"); got != "store" {
		t.Errorf("after the sync: shop from %q, want the store's", got)
	}
	if got := from("elsewhere"); got != "not found" {
		t.Errorf("a namespace the store does not have: %q, want not found", got)
	}
	ns, _ := n.GetNamespace(t.Context(), "shop")
	if stored, _, _ := informer.GetIndexer().GetByKey("shop"); ns != stored {
		t.Error("the store's namespace was copied: every review would pay for the copy")
	}
}

// listThenWatch is a ListWatch the reflector lists first, rather than asking its watch for the
// initial objects (which a fake watch does not send).
type listThenWatch struct{ *toolscache.ListWatch }

func (listThenWatch) IsWatchListSemanticsUnSupported() bool { return true }
