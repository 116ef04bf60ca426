// Package verifytest runs a real OCI registry on loopback (go-containerregistry's, in-process)
// and signs images in it with cosign's own signing code path (`cosign sign --key`, the key held
// in memory), for tests.
package verifytest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/options"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/sign"
)

// Registry is an in-process registry that counts requests and can go down or slow down.
type Registry struct {
	Host       string // host:port
	SigFetches atomic.Int64
	Requests   atomic.Int64
	Down       atomic.Bool
	Delay      atomic.Int64 // nanoseconds per request
}

// NewRegistry starts a registry with the OCI 1.1 referrers API, closed with the test.
func NewRegistry(t testing.TB) *Registry { return newRegistry(t, true) }

// NewRegistryWithoutReferrers starts a registry without the referrers API: referrers are found
// through the referrers tag schema.
func NewRegistryWithoutReferrers(t testing.TB) *Registry { return newRegistry(t, false) }

func newRegistry(t testing.TB, referrers bool) *Registry {
	t.Helper()
	r := &Registry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.Down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		time.Sleep(time.Duration(r.Delay.Load()))
		r.Requests.Add(1)
		if strings.Contains(req.URL.Path, "/manifests/sha256-") && strings.HasSuffix(req.URL.Path, ".sig") && req.Method == http.MethodGet {
			r.SigFetches.Add(1)
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Push writes a random image at repo:tag and returns its digest reference.
func (r *Registry) Push(t testing.TB, repoTag string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return ref.Context().Digest(d.String()).String()
}

// Sign signs the image with the code path behind `cosign sign --key --tlog-upload=false
// [--timestamp-server-url URL]`.
func Sign(t testing.TB, image string, key KeyPair, opts ...SignOption) {
	t.Helper()
	ko := options.KeyOpts{KeyRef: key.KeyRef}
	for _, o := range opts {
		o(&ko)
	}
	so := options.SignOptions{Upload: true, TlogUpload: false, SkipConfirmation: true,
		Registry: options.RegistryOptions{AllowInsecure: true, AllowHTTPRegistry: true}}
	if err := sign.SignCmd(&options.RootOptions{Timeout: 30 * time.Second}, ko, so, []string{image}); err != nil {
		t.Fatalf("cosign sign %s: %v", image, err)
	}
}
