package audit

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestRetryWaitsForWhatStartNeeds: missing CRDs are waited for, not a reason to stop; a context
// that ends stops the wait.
func TestRetryWaitsForWhatStartNeeds(t *testing.T) {
	defer func(d time.Duration) { retryEvery = d }(retryEvery)
	retryEvery = time.Millisecond
	s := &Scanner{Log: logr.Discard()}
	calls := 0
	ok := s.retry(t.Context(), func() error {
		if calls++; calls < 3 {
			return &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "openreports.io", Kind: "ReportList"}}
		}
		return nil
	})
	if !ok || calls != 3 {
		t.Errorf("retry: %v after %d calls, want success on the third", ok, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s.retry(ctx, func() error { return &meta.NoKindMatchError{} }) {
		t.Error("retry succeeded with an ended context and a failing call")
	}
}
