package verify

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/options"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/sign"
	"github.com/sigstore/cosign/v2/pkg/cosign"
)

// testRegistry is go-containerregistry's registry on loopback, counting the requests for
// signatures and able to go down or slow.
type testRegistry struct {
	srv        *httptest.Server
	host       string
	sigFetches atomic.Int64
	requests   atomic.Int64
	down       atomic.Bool
	delay      atomic.Int64 // nanoseconds
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		time.Sleep(time.Duration(r.delay.Load()))
		r.requests.Add(1)
		if strings.Contains(req.URL.Path, "/manifests/sha256-") && strings.HasSuffix(req.URL.Path, ".sig") && req.Method == http.MethodGet {
			r.sigFetches.Add(1)
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// push writes a random image at repo:tag and returns its digest reference.
func (r *testRegistry) push(t *testing.T, repoTag string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(r.host+"/"+repoTag, name.Insecure)
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

type keyPair struct{ private, public string }

func newKeyPair(t testing.TB) keyPair {
	t.Helper()
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("test"), nil })
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cosign.key")
	if err := os.WriteFile(path, keys.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return keyPair{private: path, public: string(keys.PublicBytes)}
}

// cosignSign signs the image with the code path behind `cosign sign --key --tlog-upload=false`.
func cosignSign(t *testing.T, image string, key keyPair) {
	t.Helper()
	ko := options.KeyOpts{KeyRef: key.private, PassFunc: func(bool) ([]byte, error) { return []byte("test"), nil }}
	so := options.SignOptions{Upload: true, TlogUpload: false, SkipConfirmation: true,
		Registry: options.RegistryOptions{AllowInsecure: true, AllowHTTPRegistry: true}}
	if err := sign.SignCmd(&options.RootOptions{Timeout: 30 * time.Second}, ko, so, []string{image}); err != nil {
		t.Fatalf("cosign sign %s: %v", image, err)
	}
}

func TestVerify(t *testing.T) {
	reg := newTestRegistry(t)
	trusted, other := newKeyPair(t), newKeyPair(t)
	signed := reg.push(t, "team/signed:v1")
	cosignSign(t, signed, trusted)
	reg.push(t, "team/unsigned:v1")
	foreign := reg.push(t, "team/foreign:v1")
	cosignSign(t, foreign, other)

	v, err := Compile(Options{PublicKeys: []string{trusted.public}, IgnoreTlog: true, InsecureRegistries: []string{reg.host}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image    string
		verified bool
		reason   string
	}{
		{reg.host + "/team/signed:v1", true, ""},
		{signed, true, ""},
		{reg.host + "/team/unsigned:v1", false, "no signatures found"},
		{reg.host + "/team/foreign:v1", false, "signature does not match any trusted key"},
	}
	for _, tt := range tests {
		got, err := v.Verify(t.Context(), tt.image, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.image, err)
		}
		if got.Verified != tt.verified || got.Reason != tt.reason {
			t.Errorf("%s: %+v, want verified=%v reason=%q", tt.image, got, tt.verified, tt.reason)
		}
		if !strings.HasPrefix(got.Digest, "sha256:") {
			t.Errorf("%s: digest %q", tt.image, got.Digest)
		}
	}

	// Either key suffices by default; both must have signed with RequireAll.
	both := reg.push(t, "team/both:v1")
	cosignSign(t, both, trusted)
	cosignSign(t, both, other)
	anyOf, _ := Compile(Options{PublicKeys: []string{other.public, trusted.public}, IgnoreTlog: true, InsecureRegistries: []string{reg.host}})
	allOf, _ := Compile(Options{PublicKeys: []string{other.public, trusted.public}, RequireAll: true, IgnoreTlog: true, InsecureRegistries: []string{reg.host}})
	for _, c := range []struct {
		v     *Verifier
		image string
		want  bool
	}{{anyOf, signed, true}, {allOf, signed, false}, {allOf, both, true}} {
		got, err := c.v.Verify(t.Context(), c.image, nil)
		if err != nil || got.Verified != c.want {
			t.Errorf("%s: %+v %v, want %v", c.image, got, err, c.want)
		}
	}
}

// TestRepointedTag: a tag moved to an unsigned image after signing is not verified; the verdict
// names the digest that was checked, so the webhook can pin what it verified.
func TestRepointedTag(t *testing.T) {
	reg := newTestRegistry(t)
	key := newKeyPair(t)
	first := reg.push(t, "team/app:v1")
	cosignSign(t, first, key)
	v, _ := Compile(Options{PublicKeys: []string{key.public}, IgnoreTlog: true, InsecureRegistries: []string{reg.host}})
	before, err := v.Verify(t.Context(), reg.host+"/team/app:v1", nil)
	if err != nil || !before.Verified {
		t.Fatalf("before: %+v %v", before, err)
	}
	reg.push(t, "team/app:v1") // re-pointed to a new, unsigned image
	after, err := v.Verify(t.Context(), reg.host+"/team/app:v1", nil)
	if err != nil || after.Verified || after.Digest == before.Digest || after.Reason != "no signatures found" {
		t.Fatalf("after re-pointing: %+v %v", after, err)
	}
	pinned, err := v.Verify(t.Context(), reg.host+"/team/app:v1@"+before.Digest, nil)
	if err != nil || !pinned.Verified {
		t.Fatalf("pinned to the signed digest: %+v %v", pinned, err)
	}
}

func TestRegistryDownAndSlow(t *testing.T) {
	reg := newTestRegistry(t)
	key := newKeyPair(t)
	image := reg.push(t, "team/app:v1")
	cosignSign(t, image, key)
	cache := NewCache(100, time.Hour, time.Minute, nil)
	v, _ := Compile(Options{PublicKeys: []string{key.public}, IgnoreTlog: true, InsecureRegistries: []string{reg.host}, Timeout: 300 * time.Millisecond, Cache: cache})

	reg.down.Store(true)
	if _, err := v.Verify(t.Context(), image, nil); err == nil {
		t.Fatal("a registry that is down gave a verdict")
	}
	if cache.Len() != 0 {
		t.Fatal("a network error was cached")
	}
	reg.down.Store(false)

	reg.delay.Store(int64(2 * time.Second))
	start := time.Now()
	_, err := v.Verify(t.Context(), image, nil)
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("a slow registry: err=%v after %s; the deadline is 300ms", err, time.Since(start))
	}
	reg.delay.Store(0)
}

// TestCoalescingAndCache: 100 concurrent verifications of one image make one signature fetch,
// and a cache hit makes no registry request at all (beyond resolving a tag).
func TestCoalescingAndCache(t *testing.T) {
	reg := newTestRegistry(t)
	key := newKeyPair(t)
	image := reg.push(t, "team/app:v1")
	cosignSign(t, image, key)
	cache := NewCache(100, time.Hour, time.Minute, nil)
	v, _ := Compile(Options{PublicKeys: []string{key.public}, IgnoreTlog: true, InsecureRegistries: []string{reg.host}, Timeout: 10 * time.Second, Cache: cache})

	fetchesBefore := reg.sigFetches.Load()        // signing read the signature tag too
	reg.delay.Store(int64(50 * time.Millisecond)) // keep the first verification in flight
	var wg sync.WaitGroup
	var failures atomic.Int64
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := v.Verify(context.Background(), image, nil); err != nil || !got.Verified {
				failures.Add(1)
			}
		}()
	}
	wg.Wait()
	reg.delay.Store(0)
	if fetches := reg.sigFetches.Load() - fetchesBefore; failures.Load() > 0 || fetches != 1 {
		t.Fatalf("%d failures, %d signature fetches; want 0 and 1", failures.Load(), fetches)
	}
	before := reg.requests.Load()
	got, err := v.Verify(t.Context(), image, nil)
	if err != nil || !got.Verified || !got.Cached || reg.requests.Load() != before {
		t.Fatalf("cache hit: %+v %v, %d registry requests", got, err, reg.requests.Load()-before)
	}
}
