package verify

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

// A refresher whose mirror fails tries again in a minute, then twice as long each time, up to a
// tenth of the interval; a success waits the interval, and a failure after it starts again at a
// minute. The waits are recorded, not slept.
func TestTUFRetryBackoff(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	repo := verifytest.NewTUFRepository(t, verifytest.NewCA(t, "fulcio", false).TrustedRoot(t))
	repoURL, err := url.Parse(repo.URL)
	if err != nil {
		t.Fatal(err)
	}
	run := func(stopAfter int, hook func(r *TUFRefresher, n int)) []time.Duration {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var waits []time.Duration
		r := &TUFRefresher{Mirror: down.URL, InitialRoot: repo.Root, Interval: 24 * time.Hour, Target: NewLiveRoot(nil), Log: logr.Discard(),
			Transport: NewTransport(EgressOptions{Insecure: []string{repoURL.Hostname()}, AllowPrivate: true})}
		r.after = func(d time.Duration) <-chan time.Time {
			waits = append(waits, d)
			if hook != nil {
				hook(r, len(waits))
			}
			if len(waits) == stopAfter {
				cancel()
			}
			ch := make(chan time.Time, 1)
			ch <- time.Time{}
			return ch
		}
		if err := r.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return waits
	}

	m := time.Minute
	if got, want := run(11, nil), []time.Duration{m, 2 * m, 4 * m, 8 * m, 16 * m, 32 * m, 64 * m, 128 * m, 144 * m, 144 * m, 144 * m}; !slices.Equal(got, want) {
		t.Errorf("failing: waits %v, want %v", got, want)
	}
	// Down three times, up once, down again.
	got := run(6, func(r *TUFRefresher, n int) {
		switch n {
		case 3:
			r.Mirror = repo.URL
		case 4:
			r.Mirror = down.URL
		}
	})
	if want := []time.Duration{m, 2 * m, 4 * m, 24 * time.Hour, m, 2 * m}; !slices.Equal(got, want) {
		t.Errorf("recovering: waits %v, want %v", got, want)
	}
}
