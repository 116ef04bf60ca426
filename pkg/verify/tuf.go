package verify

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/sigstore/sigstore-go/pkg/tuf"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// DefaultTUFMirror is the Sigstore public-good TUF repository.
const DefaultTUFMirror = tuf.DefaultMirror

// trustedRootTarget is the TUF target that holds the Sigstore TrustedRoot.
const trustedRootTarget = "trusted_root.json"

// TUFRefresher keeps a LiveRoot current from a TUF repository: the public-good one, or a mirror
// of it in an air-gapped cluster. The TUF metadata's signatures, versions and expiry are checked
// from the initial root.json on, on every refresh; a refresh that fails for any reason leaves
// the root in force as it was.
type TUFRefresher struct {
	// Mirror is the repository's base URL (DefaultTUFMirror for the public-good instance).
	Mirror string
	// InitialRoot is the TUF root.json trusted first (nil: the public-good one, as sigstore-go
	// embeds it); newer root versions are found on the mirror and checked against it.
	InitialRoot []byte
	// Interval is the time between successful refreshes; a failed one is tried again sooner.
	Interval time.Duration
	// Transport reaches the mirror, under the same egress rules as registries.
	Transport http.RoundTripper
	// Target is the root refreshed.
	Target *LiveRoot
	// Observe is told the outcome of each refresh (success or error); nil tells nothing.
	Observe func(outcome string)
	Log     logr.Logger
	// after is time.After, replaced in tests.
	after func(time.Duration) <-chan time.Time
}

// tufTimeout bounds one refresh: a few small documents.
const tufTimeout = time.Minute

// Refresh fetches the trusted root once, verifies the TUF metadata on the way, and puts it in
// force.
func (r *TUFRefresher) Refresh(ctx context.Context) (err error) {
	defer func() {
		if r.Observe != nil {
			outcome := "success"
			if err != nil {
				outcome = "error"
			}
			r.Observe(outcome)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, tufTimeout)
	defer cancel()
	initial := r.InitialRoot
	if len(initial) == 0 {
		initial = tuf.DefaultRoot()
	}
	opts := tuf.DefaultOptions().
		WithRoot(initial).
		WithRepositoryBaseURL(strings.TrimSuffix(r.Mirror, "/")).
		WithDisableLocalCache().
		WithFetcher(&tufFetcher{ctx: ctx, client: &http.Client{Transport: r.Transport}})
	client, err := tuf.New(opts)
	if err != nil {
		return fmt.Errorf("TUF repository %s: %w", r.Mirror, err)
	}
	doc, err := client.GetTarget(trustedRootTarget)
	if err != nil {
		return fmt.Errorf("TUF repository %s: %w", r.Mirror, err)
	}
	tr, err := NewTrustedRoot(doc)
	if err != nil {
		return fmt.Errorf("TUF repository %s: %s: %w", r.Mirror, trustedRootTarget, err)
	}
	if r.Target.Store(tr) {
		r.Log.Info("trusted root refreshed through TUF", "mirror", r.Mirror, "id", tr.ID)
	}
	return nil
}

// Start refreshes at once, then every Interval, until ctx ends. After a failure it tries again
// in a minute, then twice as long each time, up to a tenth of the interval: a mirror that was
// down for a moment at start is not waited for for hours. It never fails: the root in force
// stays.
func (r *TUFRefresher) Start(ctx context.Context) error {
	after := r.after
	if after == nil {
		after = time.After
	}
	maxRetry := min(max(r.Interval/10, time.Minute), r.Interval)
	retry := time.Minute
	for {
		wait := r.Interval
		if err := r.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait = min(retry, maxRetry)
			retry = min(2*retry, maxRetry)
			r.Log.Error(err, "trusted root refresh failed; the root in force stays", "retryIn", wait)
		} else {
			retry = time.Minute
		}
		select {
		case <-ctx.Done():
			return nil
		case <-after(wait):
		}
	}
}

// tufFetcher fetches TUF metadata and targets on a context, bounded by the length TUF expects.
type tufFetcher struct {
	ctx    context.Context
	client *http.Client
}

// DownloadFile implements go-tuf's fetcher.Fetcher.
func (f *tufFetcher) DownloadFile(rawURL string, maxLength int64, _ time.Duration) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		// go-tuf's own error type: a 404 for the next root version ends its search.
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: u.Redacted()}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxLength+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > maxLength {
		return nil, fmt.Errorf("%s: longer than the %d bytes expected", u.Path, maxLength)
	}
	return data, nil
}
