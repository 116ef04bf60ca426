package verify

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

func TestCache(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	c := NewCache(2, time.Hour, time.Minute, func() time.Time { return now })
	c.Put("a", Verdict{Verified: true})
	c.Put("b", Verdict{Reason: "no signatures found"})
	if _, ok := c.Get("a"); !ok {
		t.Fatal("a missing")
	}
	c.Put("c", Verdict{Verified: true}) // evicts b, the least recently used
	if _, ok := c.Get("b"); ok {
		t.Error("b not evicted")
	}
	c.Put("d", Verdict{Reason: "no signatures found"})
	now = now.Add(2 * time.Minute) // past the negative TTL, within the positive one
	if _, ok := c.Get("d"); ok {
		t.Error("a definitive failure outlived the negative TTL")
	}
	if _, ok := c.Get("c"); !ok {
		t.Error("a verified digest expired early")
	}
	now = now.Add(time.Hour)
	if _, ok := c.Get("c"); ok {
		t.Error("a verified digest outlived the TTL")
	}
	var nilCache *Cache
	nilCache.Put("x", Verdict{})
	if _, ok := nilCache.Get("x"); ok {
		t.Error("a nil cache cached")
	}
}

func TestCompileErrors(t *testing.T) {
	if _, err := Compile(Options{}); err == nil {
		t.Error("no keys compiled")
	}
	if _, err := Compile(Options{PublicKeys: []string{"not a key"}}); err == nil {
		t.Error("a broken key compiled")
	}
}

// BenchmarkCacheHit is the cost of verifying an image whose digest is cached: no registry
// request (target: ≤ 20 µs).
func BenchmarkCacheHit(b *testing.B) {
	key := verifytest.NewKeyPair(b)
	cache := NewCache(1000, time.Hour, time.Minute, nil)
	v, err := Compile(Options{PublicKeys: []string{key.PublicKey}, Cache: cache})
	if err != nil {
		b.Fatal(err)
	}
	digest := "sha256:" + fmt.Sprintf("%064x", 42)
	image := "registry.example.com/team/app@" + digest
	cache.Put(v.cacheKey(v.root(), digest), Verdict{Digest: digest, Verified: true})
	b.ReportAllocs()
	for b.Loop() {
		got, err := v.Verify(context.Background(), image, nil)
		if err != nil || !got.Cached {
			b.Fatal(got, err)
		}
	}
}
