package verify

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/singleflight"
)

// Options configure a Verifier.
type Options struct {
	// PublicKeys are PEM-encoded public keys (ECDSA, RSA or Ed25519), as `cosign generate-key-pair` writes.
	PublicKeys []string
	// RequireAll: every key must have signed the image; otherwise any one key is enough.
	RequireAll bool
	// IgnoreTlog skips the transparency-log check, for private, offline setups.
	IgnoreTlog bool
	// InsecureRegistries are registries (host[:port], or a host for any port) reached over plain
	// HTTP; the transport must allow the same.
	InsecureRegistries []string
	// Timeout bounds one verification; it leaves the webhook time to answer.
	Timeout time.Duration
	// Cache is shared by the verifiers of a process; nil disables caching.
	Cache *Cache
	// Transport is the HTTP transport to registries, shared by the verifiers of a process
	// (NewTransport); nil is NewTransport with InsecureRegistries and no private registries.
	Transport http.RoundTripper
	// Observer counts verifications; nil counts nothing.
	Observer Observer
}

// Observer is told about every verification, for metrics.
type Observer interface {
	// Verification reports a verification's outcome: verified, unsigned, untrusted, error.
	Verification(outcome string)
	// CacheLookup reports a cache hit or miss.
	CacheLookup(hit bool)
	// Registry reports the time spent on the registry for one verification.
	Registry(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Verification(string)    {}
func (nopObserver) CacheLookup(bool)       {}
func (nopObserver) Registry(time.Duration) {}

// Verdict is the outcome of one verification.
type Verdict struct {
	// Digest is the digest the image reference resolved to, e.g. sha256:…
	Digest string
	// Verified is true when the signatures satisfy the key set.
	Verified bool
	// Reason says why not, e.g. "no signatures found", "signature does not match any trusted key".
	Reason string
	// Cached is true when the verdict came from the cache.
	Cached bool
}

// Verifier verifies images against one key set. It is safe for concurrent use.
type Verifier struct {
	keys     []signature.Verifier
	keySetID string
	opts     Options
	group    singleflight.Group
}

// Compile parses the keys once.
func Compile(o Options) (*Verifier, error) {
	if len(o.PublicKeys) == 0 {
		return nil, errors.New("at least one public key is required")
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Transport == nil {
		o.Transport = NewTransport(EgressOptions{Insecure: o.InsecureRegistries})
	}
	v := &Verifier{opts: o}
	h := sha256.New()
	for i, pemKey := range o.PublicKeys {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(pemKey))
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: not a PEM public key: %w", i, err)
		}
		sv, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %w", i, err)
		}
		v.keys = append(v.keys, sv)
		h.Write([]byte(strings.TrimSpace(pemKey)))
	}
	_, _ = fmt.Fprintf(h, "|all=%v|tlog=%v", o.RequireAll, !o.IgnoreTlog) // a hash never fails to write
	v.keySetID = hex.EncodeToString(h.Sum(nil)[:12])
	return v, nil
}

// KeySetID identifies the key set and its semantics; cache entries are keyed by it.
func (v *Verifier) KeySetID() string { return v.keySetID }

// Verify resolves image to a digest and verifies its signatures. A definitive answer (signed,
// unsigned, wrong key) is a Verdict; an error means the registry could not give one (down, slow,
// unauthorized) and the policy's failurePolicy decides.
func (v *Verifier) Verify(ctx context.Context, image string, keychain authn.Keychain) (Verdict, error) {
	if v.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.opts.Timeout)
		defer cancel()
	}
	ref, err := v.parse(image)
	if err != nil {
		return Verdict{}, err
	}
	ropts := v.remoteOptions(ctx, keychain)
	digest, err := resolve(ref, ropts)
	if err != nil {
		v.opts.Observer.Verification("error")
		return Verdict{}, &RegistryError{Image: image, err: err}
	}
	key := v.keySetID + "@" + digest.DigestStr()
	if verdict, ok := v.opts.Cache.Get(key); ok {
		v.opts.Observer.CacheLookup(true)
		v.opts.Observer.Verification(outcome(verdict, nil))
		verdict.Cached = true
		return verdict, nil
	}
	v.opts.Observer.CacheLookup(false)
	// Concurrent verifications of one digest and key set share one round trip. The shared call
	// runs on its own deadline so that one caller giving up does not fail the others.
	ch := v.group.DoChan(key, func() (any, error) {
		sctx := context.Background()
		if v.opts.Timeout > 0 {
			var cancel context.CancelFunc
			sctx, cancel = context.WithTimeout(sctx, v.opts.Timeout)
			defer cancel()
		}
		start := time.Now()
		verdict, err := v.verify(sctx, digest, keychain)
		v.opts.Observer.Registry(time.Since(start))
		if err == nil {
			v.opts.Cache.Put(key, verdict)
		}
		return verdict, err
	})
	select {
	case <-ctx.Done():
		v.opts.Observer.Verification("error")
		return Verdict{}, &RegistryError{Image: image, err: context.Cause(ctx)}
	case r := <-ch:
		if r.Err != nil {
			v.opts.Observer.Verification("error")
			return Verdict{}, &RegistryError{Image: image, err: r.Err}
		}
		verdict := r.Val.(Verdict)
		v.opts.Observer.Verification(outcome(verdict, nil))
		return verdict, nil
	}
}

// outcome is the metric label of a verification.
func outcome(v Verdict, err error) string {
	switch {
	case err != nil:
		return "error"
	case v.Verified:
		return "verified"
	case v.Reason == "no signatures found":
		return "unsigned"
	}
	return "untrusted"
}

// parse parses the image reference, insecure when its registry is listed as host[:port] or
// as its host alone (any port).
func (v *Verifier) parse(image string) (name.Reference, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", image, err)
	}
	registry := ref.Context().RegistryStr()
	host, _, _ := strings.Cut(registry, ":")
	if slices.Contains(v.opts.InsecureRegistries, registry) || slices.Contains(v.opts.InsecureRegistries, host) {
		return name.ParseReference(image, name.Insecure)
	}
	return ref, nil
}

func (v *Verifier) remoteOptions(ctx context.Context, keychain authn.Keychain) []remote.Option {
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(keychain), remote.WithTransport(v.opts.Transport)}
}

// resolve returns the digest reference of ref, with one HEAD request for a tag.
func resolve(ref name.Reference, opts []remote.Option) (name.Digest, error) {
	if d, ok := ref.(name.Digest); ok {
		return d, nil
	}
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		return name.Digest{}, err
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// verify checks the signatures of the digest against the key set.
func (v *Verifier) verify(ctx context.Context, digest name.Digest, keychain authn.Keychain) (Verdict, error) {
	verdict := Verdict{Digest: digest.DigestStr()}
	var reasons []string
	for _, key := range v.keys {
		_, _, err := cosign.VerifyImageSignatures(ctx, digest, v.checkOpts(ctx, key, keychain))
		var noSigs *cosign.ErrNoSignaturesFound
		var noMatch *cosign.ErrNoMatchingSignatures
		switch {
		case err == nil:
			if !v.opts.RequireAll {
				verdict.Verified = true
				return verdict, nil
			}
			continue
		case errors.As(err, &noSigs):
			verdict.Reason = "no signatures found"
			return verdict, nil
		case errors.As(err, &noMatch):
			reasons = append(reasons, "signature does not match any trusted key")
			if v.opts.RequireAll {
				verdict.Reason = "signature does not match every required key"
				return verdict, nil
			}
		default:
			return Verdict{}, err // the registry could not be read: not a verdict
		}
	}
	if v.opts.RequireAll {
		verdict.Verified = true
		return verdict, nil
	}
	slices.Sort(reasons)
	verdict.Reason = strings.Join(slices.Compact(reasons), "; ")
	return verdict, nil
}

// checkOpts is the one place cosign.CheckOpts are built.
func (v *Verifier) checkOpts(ctx context.Context, key signature.Verifier, keychain authn.Keychain) *cosign.CheckOpts {
	return &cosign.CheckOpts{
		RegistryClientOpts: []ociremote.Option{ociremote.WithRemoteOptions(v.remoteOptions(ctx, keychain)...)},
		SigVerifier:        key,
		ClaimVerifier:      cosign.SimpleClaimVerifier,
		IgnoreTlog:         v.opts.IgnoreTlog,
		IgnoreSCT:          true, // key-based signatures carry no certificate
	}
}
