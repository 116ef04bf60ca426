package app

import (
	"context"
	"errors"
	"net"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// reconnectCap bounds how long an informer waits between attempts to reach an API server that
// is away. client-go's reflector backs off up to 30 s (60 s with jitter) between attempts, so
// after an outage a replica could serve a stale engine for a minute; with this cap every informer
// is back within reconnectCap of the API server's return.
const reconnectCap = 2 * time.Second

// newPatientInformer is the manager's informer constructor: a shared informer whose list and
// watch calls wait out an unreachable API server themselves, retrying from 250 ms to
// reconnectCap, instead of returning the error to the reflector's long backoff. Errors that are
// not about reaching the server (forbidden, expired, invalid) are returned as they are.
func newPatientInformer(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, indexers toolscache.Indexers) toolscache.SharedIndexInformer {
	return toolscache.NewSharedIndexInformer(patientListWatch{inner: toolscache.ToListerWatcherWithContext(lw), first: 250 * time.Millisecond}, obj, resync, indexers)
}

type patientListWatch struct {
	inner toolscache.ListerWatcherWithContext
	first time.Duration // the first wait, doubled up to reconnectCap
}

func (p patientListWatch) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	return untilReachable(ctx, p.first, func() (runtime.Object, error) { return p.inner.ListWithContext(ctx, o) })
}

func (p patientListWatch) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	return untilReachable(ctx, p.first, func() (watch.Interface, error) { return p.inner.WatchWithContext(ctx, o) })
}

// The plain methods, for callers that do not pass a context.
func (p patientListWatch) List(o metav1.ListOptions) (runtime.Object, error) {
	return p.ListWithContext(context.Background(), o)
}

func (p patientListWatch) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return p.WatchWithContext(context.Background(), o)
}

func untilReachable[T any](ctx context.Context, wait time.Duration, call func() (T, error)) (T, error) {
	var since time.Time
	for {
		v, err := call()
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			if !since.IsZero() && err == nil {
				log.FromContext(ctx).Info("API server reachable again", "after", time.Since(since).Round(time.Millisecond).String())
			}
			return v, err
		}
		if since.IsZero() {
			since = time.Now()
			log.FromContext(ctx).Info("API server unreachable or not serving this resource yet; the informer waits for it, serving what it has", "error", err.Error())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait = min(2*wait, reconnectCap)
	}
}

// unreachable reports whether err says the API server could not be reached or cannot answer
// yet: an outage, a restart, overload. A resource not found is one too: a restarted API server
// serves custom resources only once it has read their definitions, and a list or watch that
// comes first gets 404.
func unreachable(err error) bool {
	var opErr *net.OpError
	var netErr net.Error
	return utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		errors.As(err, &opErr) || (errors.As(err, &netErr) && netErr.Timeout()) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsNotFound(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
}
