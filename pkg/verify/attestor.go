package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/signature"
)

// MaxSignatures bounds the signatures (and, separately, the attestations) read for one image:
// a registry decides how many it lists, and each is checked against every attestor.
const MaxSignatures = 32

// attestor is one party whose signature is accepted: a key, the keyless identities under the
// trusted root, or one's own certificate chain.
type attestor struct {
	name string
	// key is a key attestor's public key; nil for certificates.
	key signature.Verifier
	// material holds the certificate authorities (certificate attestors), and the transparency
	// logs, CT logs and timestamp authorities proofs are checked against (every attestor).
	material   root.TrustedMaterial
	identities []identity
	// cas are a certificate chain attestor's own certificate authorities.
	cas []root.CertificateAuthority
	// sct: certificates must carry an SCT from a CT log of the material, when it names any.
	sct bool
	// chain: the certificate authorities are one's own; a signature's chain may add
	// intermediates.
	chain bool
}

// checkOpts is the one place cosign.CheckOpts are built. Verification never calls out: proofs
// come with the signature (Offline), against the keys of the trusted root.
func (v *Verifier) checkOpts(a *attestor, ropts []ociremote.Option, claims func(oci.Signature, v1.Hash, map[string]any) error) *cosign.CheckOpts {
	return &cosign.CheckOpts{
		RegistryClientOpts:  ropts,
		SigVerifier:         a.key,
		TrustedMaterial:     a.material,
		ClaimVerifier:       claims,
		IgnoreTlog:          v.opts.IgnoreTlog || len(a.material.RekorLogs()) == 0,
		IgnoreSCT:           a.key != nil || !a.sct || v.opts.IgnoreSCT || len(a.material.CTLogs()) == 0,
		UseSignedTimestamps: !v.opts.IgnoreTimestamps && len(a.material.TimestampingAuthorities()) > 0,
		Offline:             true,
		MaxWorkers:          1,
	}
}

// verify checks the signatures, then the attestations, of the digest against the attestors.
func (v *Verifier) verify(ctx context.Context, digest name.Digest, keychain authn.Keychain, attestors []*attestor) (Verdict, error) {
	verdict := Verdict{Digest: digest.DigestStr()}
	h, err := v1.NewHash(digest.DigestStr())
	if err != nil {
		return Verdict{}, err
	}
	ropts := []ociremote.Option{ociremote.WithRemoteOptions(v.remoteOptions(ctx, keychain)...)}
	sigs, err := fetchSignatures(digest, ropts, ociremote.SignatureTag)
	if err != nil {
		return Verdict{}, err
	}
	if len(sigs) == 0 {
		verdict.Reason, verdict.Signature = "no signatures found", outcomeUnsigned
		return verdict, nil
	}
	ok, reason := v.satisfied(attestors, func(a *attestor) error {
		co := v.checkOpts(a, ropts, cosign.SimpleClaimVerifier)
		var errs []error
		for _, sig := range sigs {
			err := verifyEntity(ctx, a, co, sig, h, cosign.VerifyImageSignature)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return summarize(errs, "signature")
	})
	if !ok {
		verdict.Reason, verdict.Signature = reason, outcomeUntrusted
		return verdict, nil
	}
	verdict.Signature = outcomeVerified
	if len(v.attestations) == 0 {
		verdict.Verified = true
		return verdict, nil
	}
	envs, err := v.fetchAttestations(ctx, digest, ropts)
	if err != nil {
		return Verdict{}, err
	}
	verdict.Verified, verdict.Reason, verdict.Attestation = v.checkAttestations(ctx, attestors, envs, h, ropts)
	return verdict, nil
}

// satisfied applies the key mode: any one attestor, or every one, must accept. The reason names
// the attestors that did not.
func (v *Verifier) satisfied(attestors []*attestor, check func(a *attestor) error) (bool, string) {
	var reasons []string
	for _, a := range attestors {
		err := check(a)
		switch {
		case err == nil && !v.opts.RequireAll:
			return true, ""
		case err != nil:
			reasons = append(reasons, attestorReason(a, err))
		}
	}
	if len(reasons) == 0 {
		return true, ""
	}
	if v.opts.RequireAll {
		return false, "not signed by every required attestor: " + strings.Join(reasons, "; ")
	}
	return false, strings.Join(reasons, "; ")
}

// attestorReason says why an attestor did not accept. A key attestor's reason keeps the phrase
// the key-only verifier always gave.
func attestorReason(a *attestor, err error) string {
	if a.key != nil && isNoMatch(err) {
		return "signature does not match any trusted key"
	}
	return a.name + ": " + err.Error()
}

// noMatchError is a signature that is not the attestor's: another key, or a certificate where a
// key was expected. A key attestor reports all such alike.
type noMatchError struct{ error }

func (e noMatchError) Unwrap() error { return e.error }

func noMatch(err error) error { return noMatchError{err} }

func isNoMatch(err error) bool {
	var nm noMatchError
	return errors.As(err, &nm)
}

// summarize folds the errors of one attestor over several signatures into one: distinct
// reasons, bounded.
func summarize(errs []error, what string) error {
	if len(errs) == 0 {
		return fmt.Errorf("no %s", what)
	}
	var msgs []string
	allNoMatch := true
	for _, e := range errs {
		if !isNoMatch(e) {
			allNoMatch = false
		}
		msgs = append(msgs, e.Error())
	}
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	if len(msgs) > 3 {
		msgs = append(msgs[:3], fmt.Sprintf("and %d more", len(msgs)-3))
	}
	err := errors.New(strings.Join(msgs, "; "))
	if allNoMatch {
		return noMatch(err)
	}
	return err
}

// verifyEntity verifies one signature or attestation under an attestor: cosign checks the
// signature, the certificate chain, the proofs and the claims; then the certificate's identity.
func verifyEntity(ctx context.Context, a *attestor, co *cosign.CheckOpts, sig oci.Signature, h v1.Hash,
	check func(context.Context, oci.Signature, v1.Hash, *cosign.CheckOpts) (bool, error)) error {
	cert, err := sig.Cert()
	if err != nil {
		return fmt.Errorf("its certificate: %w", err)
	}
	switch {
	case a.key != nil && cert != nil:
		return noMatch(errors.New("signed with a certificate, not a key"))
	case a.key == nil && cert == nil:
		return noMatch(errors.New("signed with a key, not a certificate"))
	}
	if a.key != nil && !signedBy(a.key, sig) {
		// cosign checks the proofs first; another key's signature is another key's, whatever
		// proofs it has.
		return noMatch(errors.New("signed with another key"))
	}
	if a.chain {
		if extra, err := sig.Chain(); err == nil && len(extra) > 1 {
			local := *co
			local.TrustedMaterial = withIntermediates(a.material, extra[:len(extra)-1])
			co = &local
		}
	}
	if err := guarded(func() error { _, err := check(ctx, sig, h, co); return err }); err != nil {
		if errors.Is(err, errCrashed) && co.UseSignedTimestamps {
			if ts, tsErr := sig.RFC3161Timestamp(); tsErr == nil && ts != nil {
				// cosign v2 indexes the verified timestamps without looking (sigstore/cosign#4846).
				return proofError{errUntrustedTimestamp}
			}
		}
		reason := cosignReason(err)
		if a.key != nil && !errors.As(reason, new(proofError)) {
			return noMatch(reason)
		}
		return reason
	}
	if cert != nil {
		return matchIdentity(cert, a.identities)
	}
	return nil
}

// errCrashed is a signature the verifying library crashed on; errUntrustedTimestamp the one
// known case, a timestamp no timestamp authority of the root signed.
var (
	errCrashed            = errors.New("the signature could not be verified (the verifier failed on it)")
	errUntrustedTimestamp = errors.New("the signature's RFC 3161 timestamp is not from a trusted timestamp authority")
)

// guarded runs a library's verification of one signature, which is hostile input: a panic in
// it fails that signature, never the process (a panic in a singleflight call would end it)
// nor the review.
func guarded(verify func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errCrashed
		}
	}()
	return verify()
}

// ociSignature names the embedded signature (oci.Signature has a method Signature).
type ociSignature = oci.Signature

// payloadOnce reads a signature's payload from the registry once, however often it is asked.
type payloadOnce struct {
	ociSignature
	once    sync.Once
	payload []byte
	err     error
}

func (p *payloadOnce) Payload() ([]byte, error) {
	p.once.Do(func() { p.payload, p.err = p.ociSignature.Payload() })
	return p.payload, p.err
}

// signedBy reports whether an image signature (not an attestation, whose signature is inside its
// envelope) is the key's. Anything unreadable is left for cosign to report.
func signedBy(key signature.Verifier, sig oci.Signature) bool {
	b64, err := sig.Base64Signature()
	if err != nil || b64 == "" {
		return true
	}
	raw, err1 := base64.StdEncoding.DecodeString(b64)
	payload, err2 := sig.Payload()
	if err1 != nil || err2 != nil {
		return true
	}
	return key.VerifySignature(bytes.NewReader(raw), bytes.NewReader(payload)) == nil
}

// withIntermediates adds the intermediates a signature carries to one's own certificate
// authorities: untrusted input, inert unless it chains to a trusted root.
func withIntermediates(m root.TrustedMaterial, extra []*x509.Certificate) root.TrustedMaterial {
	cm, ok := m.(chainMaterial)
	if !ok || len(extra) > MaxChainCertificates {
		return m
	}
	cas := make([]root.CertificateAuthority, 0, len(cm.cas))
	for _, ca := range cm.cas {
		f, ok := ca.(*root.FulcioCertificateAuthority)
		if !ok {
			cas = append(cas, ca)
			continue
		}
		c := *f
		c.Intermediates = append(slices.Clip(f.Intermediates), extra...)
		cas = append(cas, &c)
	}
	return chainMaterial{TrustedMaterial: cm.TrustedMaterial, cas: cas}
}

// proofError is a signature that verifies but lacks an acceptable proof (transparency log,
// timestamp): a key attestor names it rather than "does not match any trusted key".
type proofError struct{ error }

func (e proofError) Unwrap() error { return e.error }

func proof(msg string) error { return proofError{errors.New(msg)} }

// cosignReason shortens cosign's errors to what a user acts on.
func cosignReason(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "offline verification failed"):
		return proof("no transparency-log proof (bundle) with the signature; sign with the transparency log, or set ignoreTlog")
	case strings.Contains(msg, "rekor log public key not found"):
		return proof("the transparency-log proof is not from a log of the trusted root")
	case strings.Contains(msg, "rekor log public key not valid at payload integrated time"):
		return proof("the transparency-log proof is dated outside its log key's validity")
	case strings.Contains(msg, "unable to verify SET"):
		return proof("the transparency-log proof does not verify")
	case strings.Contains(msg, "expected a signed timestamp to verify an expired certificate"):
		return errors.New("the certificate has expired and no trusted timestamp or transparency-log entry shows it was valid at signing")
	case strings.Contains(msg, "SCT entries; unable to meet threshold"):
		return errors.New("the certificate's SCT is not from a CT log of the trusted root, or does not verify")
	case strings.Contains(msg, "certificate does not include required embedded SCT"):
		return errors.New("the certificate carries no SCT (certificate-transparency proof); set ignoreSCT for a CA without CT")
	case strings.Contains(msg, "leaf certificate verification failed"), strings.Contains(msg, "certificate signed by unknown authority"):
		return errors.New("the certificate does not chain to a trusted certificate authority")
	}
	return errors.New(strings.TrimSpace(msg))
}

// fetchSignatures reads the signatures (or attestations) cosign stores at the tag of the
// digest; none is an empty list. At most MaxSignatures are kept.
func fetchSignatures(digest name.Digest, ropts []ociremote.Option,
	tag func(name.Reference, ...ociremote.Option) (name.Tag, error)) ([]oci.Signature, error) {
	t, err := tag(digest, ropts...)
	if err != nil {
		return nil, err
	}
	sigs, err := ociremote.Signatures(t, ropts...)
	if err != nil {
		return nil, err
	}
	list, err := sigs.Get()
	if err != nil {
		return nil, err
	}
	if len(list) > MaxSignatures {
		list = list[:MaxSignatures]
	}
	// Each attestor reads each payload, and a key attestor twice (signedBy, then cosign): it is
	// fetched from the registry once.
	for i, sig := range list {
		list[i] = &payloadOnce{ociSignature: sig}
	}
	return list, nil
}
