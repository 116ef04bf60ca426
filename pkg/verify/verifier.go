package verify

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/sync/singleflight"
)

// Options configure a Verifier.
type Options struct {
	// PublicKeys are PEM-encoded public keys (ECDSA, RSA or Ed25519), as `cosign generate-key-pair`
	// writes; each is one attestor.
	PublicKeys []string
	// Identities are the accepted signers of certificate-based signatures (keyless and
	// CertificateChain); none accepts any signer the certificate authorities vouch for.
	Identities []Identity
	// Keyless makes certificates issued by TrustedRoot's certificate authorities (Fulcio) and
	// matching Identities one attestor.
	Keyless bool
	// CertificateChain, PEM roots and intermediates of one's own PKI, makes certificates that
	// chain to it (and match Identities) one attestor.
	CertificateChain string
	// TrustedRoot supplies the keyless certificate authorities, and the transparency logs, CT
	// logs and timestamp authorities every attestor's proofs are checked against; nil is
	// DefaultRoot's root at each verification.
	TrustedRoot *TrustedRoot
	// DefaultRoot is the root of a verifier without TrustedRoot, shared by the verifiers of a
	// process and refreshed through TUF (TUFRefresher); nil is the embedded PublicGood().
	DefaultRoot *LiveRoot
	// Attestations are the in-toto attestations an image must carry besides its signature.
	Attestations []Attestation
	// RequireAll: every attestor must have signed the image (and each attestation); otherwise
	// any one is enough.
	RequireAll bool
	// IgnoreTlog waives the transparency-log inclusion proof; without it a signature must carry
	// one from a log of TrustedRoot, when the root names any.
	IgnoreTlog bool
	// IgnoreSCT waives the certificate-transparency proof of keyless certificates; without it a
	// certificate must carry an SCT from a CT log of TrustedRoot, when the root names any.
	IgnoreSCT bool
	// IgnoreTimestamps waives RFC 3161 timestamps: without it, a signature's timestamp must be
	// from a timestamp authority of TrustedRoot, when the root names any.
	IgnoreTimestamps bool
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
	// Verification reports the outcome of one check of an image: check is signature or
	// attestation; outcome is verified, unsigned (none found), untrusted (none acceptable),
	// or error (the registry could not answer).
	Verification(check, outcome string)
	// CacheLookup reports a cache hit or miss.
	CacheLookup(hit bool)
	// Registry reports the time spent on the registry for one verification.
	Registry(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Verification(_, _ string) {}
func (nopObserver) CacheLookup(bool)         {}
func (nopObserver) Registry(time.Duration)   {}

// Verdict is the outcome of one verification.
type Verdict struct {
	// Digest is the digest the image reference resolved to, e.g. sha256:…
	Digest string
	// Verified is true when the signatures satisfy the key set.
	Verified bool
	// Reason says why not, e.g. "no signatures found", "signature does not match any trusted key".
	Reason string
	// Signature and Attestation are the outcomes of the two checks, for metrics: verified,
	// unsigned, untrusted; Attestation is empty when the image needs none or the signature
	// failed first.
	Signature, Attestation string
	// Cached is true when the verdict came from the cache.
	Cached bool
}

// Verifier verifies images against one set of attestors. It is safe for concurrent use.
type Verifier struct {
	// attestors are bound to the trusted root in force (bind); their material is unset here.
	attestors    []*attestor
	bound        atomic.Pointer[boundAttestors]
	attestations []attestation
	keySetID     string
	opts         Options
	group        singleflight.Group
}

// Compile parses the attestors once.
func Compile(o Options) (*Verifier, error) {
	if len(o.PublicKeys) == 0 && !o.Keyless && o.CertificateChain == "" {
		return nil, errors.New("at least one attestor is required: a public key, keyless identities or a certificate chain")
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Transport == nil {
		o.Transport = NewTransport(EgressOptions{Insecure: o.InsecureRegistries})
	}
	if o.TrustedRoot == nil && o.DefaultRoot == nil {
		o.DefaultRoot = NewLiveRoot(nil)
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
		v.attestors = append(v.attestors, &attestor{name: fmt.Sprintf("keys[%d]", i), key: sv})
		h.Write([]byte(strings.TrimSpace(pemKey)))
	}
	ids, err := compileIdentities(o.Identities)
	if err != nil {
		return nil, err
	}
	if o.Keyless {
		v.attestors = append(v.attestors, &attestor{name: "keyless", identities: ids, sct: true})
	}
	if o.CertificateChain != "" {
		cas, err := parseChain(o.CertificateChain)
		if err != nil {
			return nil, err
		}
		v.attestors = append(v.attestors, &attestor{name: "certificateChain", cas: cas, identities: ids, chain: true})
		h.Write([]byte(strings.TrimSpace(o.CertificateChain)))
	}
	for i := range o.Attestations {
		a, err := compileAttestation(o.Attestations[i])
		if err != nil {
			return nil, fmt.Errorf("attestations[%d]: %w", i, err)
		}
		v.attestations = append(v.attestations, a)
	}
	// The cache key covers everything a verdict depends on: the attestors, the identities, the
	// modes and the attestations with their conditions; and, at each verification, the root.
	spec, err := json.Marshal(struct {
		Identities   []Identity
		Keyless      bool
		Attestations []Attestation
		All, Tlog    bool
		SCT, TSA     bool
	}{o.Identities, o.Keyless, o.Attestations, o.RequireAll, !o.IgnoreTlog, !o.IgnoreSCT, !o.IgnoreTimestamps})
	if err != nil {
		return nil, err
	}
	h.Write(spec)
	v.keySetID = hex.EncodeToString(h.Sum(nil)[:12])
	return v, nil
}

// KeySetID identifies the key set and its semantics; cache entries are keyed by it and by the
// trusted root's identifier.
func (v *Verifier) KeySetID() string { return v.keySetID }

// cacheKey is a verdict's key: the key set, the trusted root in force and the digest.
func (v *Verifier) cacheKey(tr *TrustedRoot, digest string) string {
	return v.keySetID + "/" + tr.ID + "@" + digest
}

// boundAttestors are the attestors with the material of one trusted root.
type boundAttestors struct {
	rootID    string
	attestors []*attestor
}

// root returns the trusted root in force: the rule's own, else the default (live) one.
func (v *Verifier) root() *TrustedRoot {
	if v.opts.TrustedRoot != nil {
		return v.opts.TrustedRoot
	}
	return v.opts.DefaultRoot.Load()
}

// bind returns the attestors with the material of tr, built once per root.
func (v *Verifier) bind(tr *TrustedRoot) []*attestor {
	if b := v.bound.Load(); b != nil && b.rootID == tr.ID {
		return b.attestors
	}
	as := make([]*attestor, len(v.attestors))
	for i, proto := range v.attestors {
		a := *proto
		a.material = tr
		if a.chain {
			a.material = chainMaterial{TrustedMaterial: tr, cas: a.cas}
		}
		as[i] = &a
	}
	v.bound.Store(&boundAttestors{rootID: tr.ID, attestors: as})
	return as
}

// Verify resolves image to a digest and verifies its signatures. A definitive answer (signed,
// unsigned, wrong key) is a Verdict; an error means the registry could not give one (down, slow,
// unauthorized) and the policy's failurePolicy decides.
func (v *Verifier) Verify(ctx context.Context, image string, keychain authn.Keychain) (Verdict, error) {
	if v.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.opts.Timeout)
		defer cancel()
	}
	// The verdict and the cache keep parts of the reference: a copy, so that they do not keep
	// alive the request's object the image was read from (see policies.Decoder.SharingInput).
	image = strings.Clone(image)
	ref, err := v.parse(image)
	if err != nil {
		return Verdict{}, err
	}
	ropts := v.remoteOptions(ctx, keychain)
	digest, err := resolve(ref, ropts)
	if err != nil {
		v.opts.Observer.Verification(checkSignature, "error")
		return Verdict{}, &RegistryError{Image: image, err: err}
	}
	tr := v.root()
	key := v.cacheKey(tr, digest.DigestStr())
	if verdict, ok := v.opts.Cache.Get(key); ok {
		v.opts.Observer.CacheLookup(true)
		v.observe(verdict)
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
		verdict, err := v.verify(sctx, digest, keychain, v.bind(tr))
		v.opts.Observer.Registry(time.Since(start))
		if err == nil {
			v.opts.Cache.Put(key, verdict)
		}
		return verdict, err
	})
	select {
	case <-ctx.Done():
		v.opts.Observer.Verification(checkSignature, "error")
		return Verdict{}, &RegistryError{Image: image, err: context.Cause(ctx)}
	case r := <-ch:
		if r.Err != nil {
			v.opts.Observer.Verification(checkSignature, "error")
			return Verdict{}, &RegistryError{Image: image, err: r.Err}
		}
		verdict := r.Val.(Verdict)
		v.observe(verdict)
		return verdict, nil
	}
}

// The checks and outcomes of the metrics.
const (
	checkSignature   = "signature"
	checkAttestation = "attestation"

	outcomeVerified  = "verified"
	outcomeUnsigned  = "unsigned"
	outcomeUntrusted = "untrusted"
)

// observe reports a verdict's checks.
func (v *Verifier) observe(verdict Verdict) {
	v.opts.Observer.Verification(checkSignature, verdict.Signature)
	if verdict.Attestation != "" {
		v.opts.Observer.Verification(checkAttestation, verdict.Attestation)
	}
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
