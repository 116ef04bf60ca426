package verify_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/verify"
	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

func TestVerify(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	trusted, other := verifytest.NewKeyPair(t), verifytest.NewKeyPair(t)
	signed := reg.Push(t, "team/signed:v1")
	verifytest.Sign(t, signed, trusted)
	reg.Push(t, "team/unsigned:v1")
	foreign := reg.Push(t, "team/foreign:v1")
	verifytest.Sign(t, foreign, other)

	v, err := verify.Compile(verify.Options{PublicKeys: []string{trusted.PublicKey}, IgnoreTlog: true, InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		image    string
		verified bool
		reason   string
	}{
		{reg.Host + "/team/signed:v1", true, ""},
		{signed, true, ""},
		{reg.Host + "/team/unsigned:v1", false, "no signatures found"},
		{reg.Host + "/team/foreign:v1", false, "signature does not match any trusted key"},
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
	both := reg.Push(t, "team/both:v1")
	verifytest.Sign(t, both, trusted)
	verifytest.Sign(t, both, other)
	anyOf, _ := verify.Compile(verify.Options{PublicKeys: []string{other.PublicKey, trusted.PublicKey}, IgnoreTlog: true, InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host)})
	allOf, _ := verify.Compile(verify.Options{PublicKeys: []string{other.PublicKey, trusted.PublicKey}, RequireAll: true, IgnoreTlog: true, InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host)})
	for _, c := range []struct {
		v     *verify.Verifier
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
	reg := verifytest.NewRegistry(t)
	key := verifytest.NewKeyPair(t)
	first := reg.Push(t, "team/app:v1")
	verifytest.Sign(t, first, key)
	v, _ := verify.Compile(verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true, InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host)})
	before, err := v.Verify(t.Context(), reg.Host+"/team/app:v1", nil)
	if err != nil || !before.Verified {
		t.Fatalf("before: %+v %v", before, err)
	}
	reg.Push(t, "team/app:v1") // re-pointed to a new, unsigned image
	after, err := v.Verify(t.Context(), reg.Host+"/team/app:v1", nil)
	if err != nil || after.Verified || after.Digest == before.Digest || after.Reason != "no signatures found" {
		t.Fatalf("after re-pointing: %+v %v", after, err)
	}
	pinned, err := v.Verify(t.Context(), reg.Host+"/team/app:v1@"+before.Digest, nil)
	if err != nil || !pinned.Verified {
		t.Fatalf("pinned to the signed digest: %+v %v", pinned, err)
	}
}

func TestRegistryDownAndSlow(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	key := verifytest.NewKeyPair(t)
	image := reg.Push(t, "team/app:v1")
	verifytest.Sign(t, image, key)
	cache := verify.NewCache(100, time.Hour, time.Minute, nil)
	v, _ := verify.Compile(verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true, InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host), Timeout: 300 * time.Millisecond, Cache: cache})

	reg.Down.Store(true)
	if _, err := v.Verify(t.Context(), image, nil); err == nil {
		t.Fatal("a registry that is down gave a verdict")
	}
	if cache.Len() != 0 {
		t.Fatal("a network error was cached")
	}
	reg.Down.Store(false)

	reg.Delay.Store(int64(2 * time.Second))
	start := time.Now()
	_, err := v.Verify(t.Context(), image, nil)
	if err == nil || time.Since(start) > time.Second {
		t.Fatalf("a slow registry: err=%v after %s; the deadline is 300ms", err, time.Since(start))
	}
	reg.Delay.Store(0)
}

// TestCoalescingAndCache: 100 concurrent verifications of one image make one signature fetch,
// and a cache hit makes no registry request at all (beyond resolving a tag).
func TestCoalescingAndCache(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	key := verifytest.NewKeyPair(t)
	image := reg.Push(t, "team/app:v1")
	verifytest.Sign(t, image, key)
	cache := verify.NewCache(100, time.Hour, time.Minute, nil)
	v, _ := verify.Compile(verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true, InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host), Timeout: 10 * time.Second, Cache: cache})

	fetchesBefore := reg.SigFetches.Load()        // signing read the signature tag too
	reg.Delay.Store(int64(50 * time.Millisecond)) // keep the first verification in flight
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
	reg.Delay.Store(0)
	if fetches := reg.SigFetches.Load() - fetchesBefore; failures.Load() > 0 || fetches != 1 {
		t.Fatalf("%d failures, %d signature fetches; want 0 and 1", failures.Load(), fetches)
	}
	before := reg.Requests.Load()
	got, err := v.Verify(t.Context(), image, nil)
	if err != nil || !got.Verified || !got.Cached || reg.Requests.Load() != before {
		t.Fatalf("cache hit: %+v %v, %d registry requests", got, err, reg.Requests.Load()-before)
	}
}

// TestColdVerificationRoundTrips counts the registry requests of one cold verification of a tag:
// the figure the benchmarks report, kept from growing by this test.
func TestColdVerificationRoundTrips(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	key := verifytest.NewKeyPair(t)
	verifytest.Sign(t, reg.Push(t, "team/app:v1"), key)
	v, _ := verify.Compile(verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true, InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host)})
	before := reg.Requests.Load()
	got, err := v.Verify(t.Context(), reg.Host+"/team/app:v1", nil)
	if err != nil || !got.Verified {
		t.Fatal(got, err)
	}
	trips := reg.Requests.Load() - before
	t.Logf("a cold verification of a tag made %d registry requests", trips)
	if trips > 6 {
		t.Errorf("%d registry requests for one cold verification", trips)
	}
}

// loopback is the egress the tests' in-process registry needs: plain HTTP to a private address.
func loopback(host string) http.RoundTripper {
	return verify.NewTransport(verify.EgressOptions{Insecure: []string{host}, Private: []string{host}})
}
