package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// refused is what a client sees while the API server is down.
var refused = &url.Error{Op: "Get", URL: "https://127.0.0.1:6443/api", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}

func TestPatientListWatch(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New("no"))
	for _, tc := range []struct {
		name      string
		errs      []error // returned by the first calls, then success
		wantErr   error
		wantCalls int
	}{
		{"answers at once", nil, nil, 1},
		{"waits out an outage", []error{refused, refused, refused}, nil, 4},
		{"waits out a restart", []error{apierrors.NewServiceUnavailable("starting"), apierrors.NewTooManyRequests("busy", 1)}, nil, 3},
		{"waits for custom resources to be served again", []error{apierrors.NewNotFound(schema.GroupResource{Group: "portcullis.dev", Resource: "clusterpolicies"}, "")}, nil, 2},
		{"returns what is not about reaching the server", []error{forbidden}, forbidden, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			lw := &toolscache.ListWatch{
				ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
					calls++
					if calls <= len(tc.errs) {
						return nil, tc.errs[calls-1]
					}
					return &corev1.PodList{}, nil
				},
				WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) {
					calls++
					if calls <= len(tc.errs) {
						return nil, tc.errs[calls-1]
					}
					return watch.NewEmptyWatch(), nil
				},
			}
			p := patientListWatch{inner: toolscache.ToListerWatcherWithContext(lw), first: time.Millisecond}
			_, err := p.ListWithContext(t.Context(), metav1.ListOptions{})
			if !errors.Is(err, tc.wantErr) || calls != tc.wantCalls {
				t.Errorf("list: err %v after %d calls, want %v after %d", err, calls, tc.wantErr, tc.wantCalls)
			}
			calls = 0
			_, err = p.WatchWithContext(t.Context(), metav1.ListOptions{})
			if !errors.Is(err, tc.wantErr) || calls != tc.wantCalls {
				t.Errorf("watch: err %v after %d calls, want %v after %d", err, calls, tc.wantErr, tc.wantCalls)
			}
		})
	}
}

// An informer stops waiting when it is stopped, and says why.
func TestPatientListWatchStops(t *testing.T) {
	lw := &toolscache.ListWatch{WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return nil, refused }}
	ctx, cancel := context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	_, err := patientListWatch{inner: toolscache.ToListerWatcherWithContext(lw), first: time.Millisecond}.WatchWithContext(ctx, metav1.ListOptions{})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("got %v, want the last connection error", err)
	}
}

type answer struct {
	status     int
	retryAfter string
}

func (a answer) RoundTrip(*http.Request) (*http.Response, error) {
	h := http.Header{}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	return &http.Response{StatusCode: a.status, Header: h, Body: http.NoBody}, nil
}

func TestCapRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		method string
		in     answer
		want   string
	}{
		{http.MethodGet, answer{http.StatusTooManyRequests, "5"}, "1"},
		{http.MethodGet, answer{http.StatusTooManyRequests, "1"}, "1"},
		{http.MethodGet, answer{http.StatusTooManyRequests, ""}, ""},
		{http.MethodPost, answer{http.StatusTooManyRequests, "5"}, "5"},
		{http.MethodGet, answer{http.StatusServiceUnavailable, "5"}, "1"},
		{http.MethodPost, answer{http.StatusServiceUnavailable, "5"}, "5"},
		{http.MethodGet, answer{http.StatusNotFound, "5"}, "5"},
	} {
		req, _ := http.NewRequest(tc.method, "https://apiserver/apis/portcullis.dev/v1alpha1/clusterpolicies?watch=true", nil)
		resp, err := capRetryAfter{next: tc.in}.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Retry-After"); got != tc.want {
			t.Errorf("%s %d Retry-After %q: got %q, want %q", tc.method, tc.in.status, tc.in.retryAfter, got, tc.want)
		}
	}
}

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
