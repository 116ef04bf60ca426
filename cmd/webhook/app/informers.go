package app

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
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
const reconnectCap = time.Second

// newPatientInformer is the manager's informer constructor: a shared informer whose list and
// watch calls wait out an unreachable API server themselves, retrying from 250 ms to
// reconnectCap, instead of returning the error to the reflector's long backoff; once the server
// answers again (a restarting API server says 404 or 503 for a moment), from 250 ms again. Errors that are
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

func untilReachable[T any](ctx context.Context, first time.Duration, call func() (T, error)) (T, error) {
	var since time.Time
	wait, wasAnswered := first, false
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
		var status apierrors.APIStatus
		answered := errors.As(err, &status)
		if answered && !wasAnswered {
			wait = first // back, but not ready yet: look again soon
		}
		wasAnswered = answered
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

// maxRetryAfter bounds how long a read waits when the API server answers 429 or 503 with
// Retry-After. A restarted API server answers the first watches of each custom resource that way
// while it sets up their handlers and fills its watch cache (503 with Retry-After: 5, then 429);
// client-go obeys inside the watch call, so the replica's engine would stay stale that long.
const maxRetryAfter = time.Second

// capRetryAfter is a transport that caps the Retry-After of 429 and 5xx answers to reads (GET:
// lists and watches) at maxRetryAfter. Writes keep what the server asked.
type capRetryAfter struct{ next http.RoundTripper }

func (c capRetryAfter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < http.StatusInternalServerError) {
		return resp, err
	}
	if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && time.Duration(secs)*time.Second > maxRetryAfter {
		resp.Header.Set("Retry-After", strconv.Itoa(int(maxRetryAfter/time.Second)))
	}
	return resp, nil
}
