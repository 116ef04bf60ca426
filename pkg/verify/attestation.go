package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	sgverify "github.com/sigstore/sigstore-go/pkg/verify"
)

// Attestation is an in-toto attestation an image must carry: a statement of PredicateType whose
// subject is the image's digest, signed by the attestors, meeting every condition.
type Attestation struct {
	PredicateType string
	Conditions    []Condition
}

// Condition is a check of a statement, e.g. a compiled CEL expression over its predicate.
type Condition struct {
	// Expression identifies the condition (cache keys) and is the message's default.
	Expression string
	Message    string
	// Eval is given the statement (JSON-decoded; whole numbers are int64) and says whether it
	// holds; an error fails the attestation, naming the condition.
	Eval func(ctx context.Context, statement map[string]any) (bool, error) `json:"-"`
}

// MaxAttestationBytes bounds one attestation (its DSSE envelope or bundle). Registries' responses
// are bounded too (EgressOptions.MaxResponseBytes, 4 MiB by default); a larger attestation, a
// big SBOM say, is not an acceptable one and the image fails as if it had none.
const MaxAttestationBytes = 4 << 20

type attestation struct{ Attestation }

func compileAttestation(a Attestation) (attestation, error) {
	if a.PredicateType == "" {
		return attestation{}, errors.New("predicateType is required")
	}
	for i, c := range a.Conditions {
		if c.Eval == nil {
			return attestation{}, fmt.Errorf("conditions[%d]: not compiled", i)
		}
	}
	return attestation{a}, nil
}

// envelope is one signed attestation as found in the registry, not yet verified.
type envelope struct {
	// sig is a DSSE envelope at cosign's .att tag; bundle a Sigstore bundle referrer.
	sig    oci.Signature
	bundle *sgbundle.Bundle
}

// fetchAttestations reads both storage formats: the envelopes at cosign's .att tag, and the
// Sigstore bundles attached as OCI 1.1 referrers (`--new-bundle-format`; go-containerregistry
// falls back to the referrers tag schema where the registry lacks the API).
func (v *Verifier) fetchAttestations(_ context.Context, digest name.Digest, ropts []ociremote.Option) ([]envelope, error) {
	atts, err := fetchSignatures(digest, ropts, ociremote.AttestationTag)
	if err != nil {
		return nil, err
	}
	envs := make([]envelope, 0, len(atts))
	for _, a := range atts {
		envs = append(envs, envelope{sig: a})
	}
	index, err := ociremote.Referrers(digest, "", ropts...)
	if err != nil {
		return nil, fmt.Errorf("listing referrers: %w", err)
	}
	n := 0
	for _, m := range index.Manifests {
		// Registries that do not know a manifest's artifactType report its config's media type.
		bundleType := strings.HasPrefix(m.ArtifactType, "application/vnd.dev.sigstore.bundle") || m.ArtifactType == "" || m.ArtifactType == "application/vnd.oci.empty.v1+json"
		if !bundleType || n >= MaxSignatures || m.Size > MaxAttestationBytes {
			continue
		}
		n++
		ref := digest.Context().Digest(m.Digest.String())
		b, err := ociremote.Bundle(ref, ropts...)
		if err != nil {
			continue // not a readable bundle: as if absent (it cannot vouch for anything)
		}
		envs = append(envs, envelope{bundle: b})
	}
	return envs, nil
}

// checkAttestations checks every required attestation under the key mode.
func (v *Verifier) checkAttestations(ctx context.Context, attestors []*attestor, envs []envelope, h v1.Hash, ropts []ociremote.Option) (bool, string, string) {
	if len(envs) == 0 {
		return false, fmt.Sprintf("no attestations found (want %s)", v.predicateTypes()), outcomeUnsigned
	}
	// Each attestor's verified statements, computed once for all the required types.
	verified := make(map[*attestor][]map[string]any, len(attestors))
	failures := make(map[*attestor][]error, len(attestors))
	for _, a := range attestors {
		co := v.checkOpts(a, ropts, cosign.IntotoSubjectClaimVerifier)
		for _, e := range envs {
			st, err := v.verifyEnvelope(ctx, a, co, e, h)
			if err != nil {
				failures[a] = append(failures[a], err)
				continue
			}
			verified[a] = append(verified[a], st)
		}
	}
	for _, want := range v.attestations {
		ok, reason := v.satisfied(attestors, func(a *attestor) error {
			found := false
			var failed string
			for _, st := range verified[a] {
				if st["predicateType"] != want.PredicateType {
					continue
				}
				found = true
				msg, err := want.holds(ctx, st)
				if err == nil && msg == "" {
					return nil
				}
				if err != nil {
					msg = err.Error()
				}
				if failed == "" {
					failed = msg
				}
			}
			if found {
				return errors.New(failed)
			}
			if errs := failures[a]; len(errs) > 0 {
				return fmt.Errorf("none signed acceptably (%w)", summarize(errs, "attestation"))
			}
			return errors.New("none of this type")
		})
		if !ok {
			return false, fmt.Sprintf("attestation %s: %s", want.PredicateType, reason), outcomeUntrusted
		}
	}
	return true, "", outcomeVerified
}

func (v *Verifier) predicateTypes() string {
	types := make([]string, len(v.attestations))
	for i, a := range v.attestations {
		types[i] = a.PredicateType
	}
	return strings.Join(types, ", ")
}

// holds evaluates the conditions; the message of the first that fails, or "".
func (a attestation) holds(ctx context.Context, st map[string]any) (string, error) {
	for _, c := range a.Conditions {
		ok, err := c.Eval(ctx, st)
		if err != nil {
			return "", fmt.Errorf("condition %q: %w", c.Expression, err)
		}
		if !ok {
			if c.Message != "" {
				return c.Message, nil
			}
			return "failed condition: " + c.Expression, nil
		}
	}
	return "", nil
}

// verifyEnvelope verifies one attestation under an attestor and returns its statement.
func (v *Verifier) verifyEnvelope(ctx context.Context, a *attestor, co *cosign.CheckOpts, e envelope, h v1.Hash) (map[string]any, error) {
	var payload []byte
	if e.sig != nil {
		if err := verifyEntity(ctx, a, co, e.sig, h, cosign.VerifyBlobAttestation); err != nil {
			return nil, err
		}
		raw, err := e.sig.Payload()
		if err != nil {
			return nil, err
		}
		var env struct {
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			return nil, fmt.Errorf("not a DSSE envelope: %w", err)
		}
		if payload, err = base64.StdEncoding.DecodeString(env.Payload); err != nil {
			return nil, fmt.Errorf("DSSE payload: %w", err)
		}
	} else {
		var err error
		if payload, err = v.verifyBundle(a, co, e.bundle, h); err != nil {
			return nil, err
		}
	}
	if len(payload) > MaxAttestationBytes {
		return nil, fmt.Errorf("the statement is larger than %d bytes", MaxAttestationBytes)
	}
	return decodeStatement(payload)
}

// verifyBundle verifies a Sigstore bundle with sigstore-go: cosign's bundle path accepts one
// identity and no extensions, the attestors here any number. It returns the DSSE payload.
func (v *Verifier) verifyBundle(a *attestor, co *cosign.CheckOpts, b *sgbundle.Bundle, h v1.Hash) ([]byte, error) {
	env := b.GetDsseEnvelope()
	if env == nil {
		return nil, noMatch(errors.New("the bundle holds no DSSE envelope"))
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return nil, err
	}
	cert := vc.Certificate()
	switch {
	case a.key != nil && cert != nil:
		return nil, noMatch(errors.New("signed with a certificate, not a key"))
	case a.key == nil && cert == nil:
		return nil, noMatch(errors.New("signed with a key, not a certificate"))
	}
	material := a.material
	var policy []sgverify.PolicyOption
	var opts []sgverify.VerifierOption
	if a.key != nil {
		material = keyMaterial{TrustedMaterial: a.material, key: root.NewExpiringKey(a.key, time.Time{}, time.Time{})}
		policy = append(policy, sgverify.WithKey())
	} else {
		policy = append(policy, sgverify.WithoutIdentitiesUnsafe()) // identities are matched below, all of them
		if !co.IgnoreSCT {
			opts = append(opts, sgverify.WithSignedCertificateTimestamps(1))
		}
	}
	timestamps, _ := b.Timestamps()
	switch {
	case !co.IgnoreTlog:
		opts = append(opts, sgverify.WithTransparencyLog(1), sgverify.WithObserverTimestamps(1))
	case co.UseSignedTimestamps && len(timestamps) > 0:
		opts = append(opts, sgverify.WithSignedTimestamps(1))
	case a.key != nil:
		opts = append(opts, sgverify.WithNoObserverTimestamps())
	default:
		opts = append(opts, sgverify.WithCurrentTime())
	}
	verifier, err := sgverify.NewVerifier(material, opts...)
	if err != nil {
		return nil, err
	}
	digest, err := hex.DecodeString(h.Hex)
	if err != nil {
		return nil, err
	}
	if err := guarded(func() error {
		_, err := verifier.Verify(b, sgverify.NewPolicy(sgverify.WithArtifactDigest(h.Algorithm, digest), policy...))
		return err
	}); err != nil {
		if a.key != nil {
			return nil, noMatch(err)
		}
		return nil, cosignReason(err)
	}
	if cert != nil {
		if err := matchIdentity(cert, a.identities); err != nil {
			return nil, err
		}
	}
	return env.GetPayload(), nil
}

// keyMaterial answers a key attestor's public key for bundles, beside the root's logs.
type keyMaterial struct {
	root.TrustedMaterial
	key root.TimeConstrainedVerifier
}

func (k keyMaterial) PublicKeyVerifier(string) (root.TimeConstrainedVerifier, error) {
	return k.key, nil
}

// decodeStatement decodes an in-toto statement for conditions: JSON, whole numbers as int64
// (as CEL reads Kubernetes objects), other numbers as float64.
func decodeStatement(payload []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var st map[string]any
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("not an in-toto statement: %w", err)
	}
	if _, ok := st["predicateType"].(string); !ok {
		return nil, errors.New("not an in-toto statement: no predicateType")
	}
	return numbers(st).(map[string]any), nil
}

func numbers(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = numbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbers(e)
		}
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		if f, err := t.Float64(); err == nil && !math.IsInf(f, 0) {
			return f
		}
		return t.String()
	}
	return v
}
