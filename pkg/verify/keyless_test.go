package verify_test

import (
	"context"
	"strings"
	"testing"
	"time"

	fulcio "github.com/sigstore/fulcio/pkg/certificate"

	"github.com/portcullis-dev/portcullis/pkg/verify"
	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

const (
	ghIssuer   = "https://token.actions.githubusercontent.com"
	ghWorkflow = "https://github.com/acme/app/.github/workflows/release.yaml@refs/heads/main"
)

// compileWith compiles a verifier for the test registry.
func compileWith(t *testing.T, reg *verifytest.Registry, o verify.Options) *verify.Verifier {
	t.Helper()
	o.InsecureRegistries, o.Transport, o.Timeout = []string{reg.Host}, loopback(reg.Host), 10*time.Second
	v, err := verify.Compile(o)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func trustedRoot(t *testing.T, doc []byte) *verify.TrustedRoot {
	t.Helper()
	tr, err := verify.NewTrustedRoot(doc)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func expectVerdict(t *testing.T, v *verify.Verifier, image string, verified bool, reason string) {
	t.Helper()
	got, err := v.Verify(t.Context(), image, nil)
	if err != nil {
		t.Fatalf("%s: %v", image, err)
	}
	if got.Verified != verified || !strings.Contains(got.Reason, reason) {
		t.Errorf("%s: verified=%v reason=%q; want verified=%v, reason containing %q", image, got.Verified, got.Reason, verified, reason)
	}
}

// A private Fulcio: a CA issuing short-lived certificates with the issuer extension, named by a
// TrustedRoot with no logs (so no transparency-log or SCT proof is asked for).
func TestKeyless(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	fulcioCA, otherCA := verifytest.NewCA(t, "fulcio", true), verifytest.NewCA(t, "other", false)
	good := fulcioCA.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer,
		Extensions: fulcio.Extensions{GithubWorkflowRepository: "acme/app", SourceRepositoryRef: "refs/heads/main"}})
	images := map[string]verifytest.Signer{
		"good":          good,
		"wrong-subject": fulcioCA.Issue(t, verifytest.Cert{Subject: "https://github.com/evil/app/.github/workflows/x.yaml@refs/heads/main", Issuer: ghIssuer}),
		"wrong-issuer":  fulcioCA.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: "https://accounts.google.com"}),
		"untrusted-ca":  otherCA.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer}),
		"expired": fulcioCA.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer,
			NotBefore: time.Now().Add(-30 * time.Minute), NotAfter: time.Now().Add(-20 * time.Minute)}),
		"other-repo": fulcioCA.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer,
			Extensions: fulcio.Extensions{GithubWorkflowRepository: "acme/other"}}),
	}
	refs := map[string]string{}
	for name, s := range images {
		refs[name] = reg.Push(t, "acme/"+name+":v1")
		verifytest.SignWithCert(t, refs[name], s)
	}
	keyed := verifytest.NewKeyPair(t)
	refs["key-signed"] = reg.Push(t, "acme/key-signed:v1")
	verifytest.Sign(t, refs["key-signed"], keyed)

	root := trustedRoot(t, fulcioCA.TrustedRoot(t))
	v := compileWith(t, reg, verify.Options{Keyless: true, TrustedRoot: root,
		Identities: []verify.Identity{{Issuer: ghIssuer, SubjectRegExp: `^https://github\.com/acme/.+`}}})
	expectVerdict(t, v, refs["good"], true, "")
	expectVerdict(t, v, refs["wrong-subject"], false, `keyless: certificate identity (subject "https://github.com/evil/app/.github/workflows/x.yaml@refs/heads/main", issuer "https://token.actions.githubusercontent.com") matches none of the accepted identities`)
	expectVerdict(t, v, refs["wrong-issuer"], false, `issuer "https://accounts.google.com") matches none`)
	expectVerdict(t, v, refs["untrusted-ca"], false, "keyless: the certificate does not chain to a trusted certificate authority")
	expectVerdict(t, v, refs["expired"], false, "keyless: the certificate has expired and no trusted timestamp or transparency-log entry shows it was valid at signing")
	expectVerdict(t, v, refs["key-signed"], false, "keyless: signed with a key, not a certificate")

	// Extensions constrain exactly; any one identity suffices.
	ext := compileWith(t, reg, verify.Options{Keyless: true, TrustedRoot: root, Identities: []verify.Identity{
		{Issuer: "https://nobody.example", Subject: "x@example.com"},
		{Issuer: ghIssuer, Subject: ghWorkflow, Extensions: map[string]string{"githubWorkflowRepository": "acme/app", "sourceRepositoryRef": "refs/heads/main"}},
	}})
	expectVerdict(t, ext, refs["good"], true, "")
	expectVerdict(t, ext, refs["other-repo"], false, "matches none of the accepted identities")

	// A key and a keyless attestor: Any takes either, All needs both.
	anyOf := compileWith(t, reg, verify.Options{PublicKeys: []string{keyed.PublicKey}, IgnoreTlog: true, Keyless: true, TrustedRoot: root,
		Identities: []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}})
	expectVerdict(t, anyOf, refs["good"], true, "")
	expectVerdict(t, anyOf, refs["key-signed"], true, "")
	allOf := compileWith(t, reg, verify.Options{PublicKeys: []string{keyed.PublicKey}, IgnoreTlog: true, Keyless: true, TrustedRoot: root, RequireAll: true,
		Identities: []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}})
	expectVerdict(t, allOf, refs["good"], false, "not signed by every required attestor: signature does not match any trusted key")
	both := reg.Push(t, "acme/both:v1")
	verifytest.SignWithCert(t, both, good)
	verifytest.Sign(t, both, keyed)
	expectVerdict(t, allOf, both, true, "")

	// The public-good root does not vouch for a private CA, and asks for the proofs it has logs for.
	pg := compileWith(t, reg, verify.Options{Keyless: true, Identities: []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}})
	expectVerdict(t, pg, refs["good"], false, "keyless: ")
}

// Your own PKI: a root and an intermediate, given as certificateChain.
func TestCertificateChain(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	ca, other := verifytest.NewCA(t, "acme", true), verifytest.NewCA(t, "other", true)
	signer := ca.Issue(t, verifytest.Cert{Subject: "release@acme.example", Issuer: "https://sso.acme.example"})
	signed := reg.Push(t, "acme/app:v1")
	verifytest.SignWithCert(t, signed, signer)
	foreign := reg.Push(t, "acme/foreign:v1")
	verifytest.SignWithCert(t, foreign, other.Issue(t, verifytest.Cert{Subject: "release@acme.example", Issuer: "https://sso.acme.example"}))

	// The chain as given: root and intermediate.
	v := compileWith(t, reg, verify.Options{CertificateChain: ca.ChainPEM(t), IgnoreTlog: true})
	expectVerdict(t, v, signed, true, "")
	expectVerdict(t, v, foreign, false, "certificateChain: the certificate does not chain to a trusted certificate authority")

	// Only the root: the intermediate comes with the signature (cosign sign --certificate-chain).
	rootOnly := compileWith(t, reg, verify.Options{CertificateChain: strings.SplitAfter(ca.ChainPEM(t), "-----END CERTIFICATE-----\n")[1], IgnoreTlog: true})
	expectVerdict(t, rootOnly, signed, true, "")

	// Keyless identities constrain the chain's certificates.
	constrained := compileWith(t, reg, verify.Options{CertificateChain: ca.ChainPEM(t), IgnoreTlog: true,
		Identities: []verify.Identity{{Issuer: "https://sso.acme.example", Subject: "someone-else@acme.example"}}})
	expectVerdict(t, constrained, signed, false, `certificateChain: certificate identity (subject "release@acme.example", issuer "https://sso.acme.example") matches none`)

	// Without ignoreTlog, the public-good root's Rekor must have logged the signature.
	logged := compileWith(t, reg, verify.Options{CertificateChain: ca.ChainPEM(t)})
	expectVerdict(t, logged, signed, false, "certificateChain: no transparency-log proof (bundle) with the signature")

	if _, err := verify.Compile(verify.Options{CertificateChain: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"}); err == nil || !strings.Contains(err.Error(), "certificateChain") {
		t.Errorf("bad chain: %v", err)
	}
}

// Attestations: SLSA provenance made by `cosign attest`, with a key and with a certificate, in
// both storage formats; conditions over the predicate.
func TestAttestations(t *testing.T) {
	key := verifytest.NewKeyPair(t)
	ca := verifytest.NewCA(t, "fulcio", false)
	signer := ca.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer})
	const slsa = "https://slsa.dev/provenance/v1"
	fromGitHub := verify.Condition{Expression: "predicate.buildDefinition.buildType.startsWith('https://github.com/')",
		Message: "provenance must come from GitHub Actions",
		Eval: func(_ context.Context, st map[string]any) (bool, error) {
			bt, _ := st["predicate"].(map[string]any)["buildDefinition"].(map[string]any)["buildType"].(string)
			return strings.HasPrefix(bt, "https://github.com/"), nil
		}}
	want := []verify.Attestation{{PredicateType: slsa, Conditions: []verify.Condition{fromGitHub}}}

	for _, c := range []struct {
		name              string
		bundle, referrers bool
	}{{"att-tag", false, true}, {"bundle", true, true}, {"bundle-tag-schema", true, false}} {
		name, bundle := c.name, c.bundle
		t.Run(name, func(t *testing.T) {
			reg := verifytest.NewRegistry(t)
			if !c.referrers {
				reg = verifytest.NewRegistryWithoutReferrers(t)
			}
			img := func(tag string) string {
				ref := reg.Push(t, name+"/"+tag+":v1")
				verifytest.Sign(t, ref, key)
				return ref
			}
			good, badBuilder, missing, otherKey := img("good"), img("bad-builder"), img("missing"), img("other-key")
			verifytest.Attest(t, good, key, nil, slsa, verifytest.SLSAProvenance("https://github.com/actions/workflow@v1"), bundle)
			verifytest.Attest(t, badBuilder, key, nil, slsa, verifytest.SLSAProvenance("https://evil.example/builder"), bundle)
			verifytest.Attest(t, otherKey, verifytest.NewKeyPair(t), nil, slsa, verifytest.SLSAProvenance("https://github.com/actions/workflow@v1"), bundle)

			v := compileWith(t, reg, verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true, Attestations: want})
			expectVerdict(t, v, good, true, "")
			expectVerdict(t, v, badBuilder, false, "attestation https://slsa.dev/provenance/v1: keys[0]: provenance must come from GitHub Actions")
			expectVerdict(t, v, missing, false, "no attestations found (want https://slsa.dev/provenance/v1)")
			expectVerdict(t, v, otherKey, false, "attestation https://slsa.dev/provenance/v1: signature does not match any trusted key")

			// A payload changed after signing does not verify, even when it would now pass.
			if !bundle || c.referrers {
				tampered := img("tampered")
				verifytest.Attest(t, tampered, key, nil, slsa, verifytest.SLSAProvenance("https://evil.example/builder"), bundle)
				if bundle {
					verifytest.TamperBundles(t, tampered, "https://evil.example/builder", "https://github.com/actions/workflow@v1")
				} else {
					verifytest.TamperAttestations(t, tampered, "https://evil.example/builder", "https://github.com/actions/workflow@v1")
				}
				expectVerdict(t, v, tampered, false, "attestation https://slsa.dev/provenance/v1: signature does not match any trusted key")
			}

			// A certificate-signed attestation, checked under keyless identities.
			keyless := img("keyless")
			verifytest.SignWithCert(t, keyless, signer)
			verifytest.Attest(t, keyless, signer.KeyPair, &signer, slsa, verifytest.SLSAProvenance("https://github.com/actions/workflow@v1"), bundle)
			kv := compileWith(t, reg, verify.Options{Keyless: true, TrustedRoot: trustedRoot(t, ca.TrustedRoot(t)), Attestations: want,
				Identities: []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}})
			expectVerdict(t, kv, keyless, true, "")
			anyOfRegExp := compileWith(t, reg, verify.Options{Keyless: true, TrustedRoot: trustedRoot(t, ca.TrustedRoot(t)), Attestations: []verify.Attestation{{PredicateType: slsa}},
				Identities: []verify.Identity{{Issuer: ghIssuer, SubjectRegExp: "^https://github.com/acme/"}, {Issuer: "https://x.example", Subject: "y"}}})
			expectVerdict(t, anyOfRegExp, keyless, true, "")

			// Another type is not this one.
			sbom := compileWith(t, reg, verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true, Attestations: []verify.Attestation{{PredicateType: "https://cyclonedx.org/bom"}}})
			expectVerdict(t, sbom, good, false, "attestation https://cyclonedx.org/bom: keys[0]: none of this type")
		})
	}
}

// The embedded public-good root parses and names Fulcio, Rekor and CT logs.
func TestPublicGoodRoot(t *testing.T) {
	pg := verify.PublicGood()
	if len(pg.FulcioCertificateAuthorities()) == 0 || len(pg.RekorLogs()) == 0 || len(pg.CTLogs()) == 0 {
		t.Fatalf("public-good root: %d CAs, %d Rekor logs, %d CT logs", len(pg.FulcioCertificateAuthorities()), len(pg.RekorLogs()), len(pg.CTLogs()))
	}
	if _, err := verify.NewTrustedRoot(make([]byte, verify.MaxTrustedRootBytes+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized root: %v", err)
	}
}

// BenchmarkVerifyKeylessAttestation: a keyless signature plus one SLSA attestation with a
// condition, cold (every check against the registry on loopback) and from the cache.
func BenchmarkVerifyKeylessAttestation(b *testing.B) {
	reg := verifytest.NewRegistry(b)
	ca := verifytest.NewCA(b, "fulcio", true)
	signer := ca.Issue(b, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer})
	image := reg.Push(b, "acme/app:v1")
	verifytest.SignWithCert(b, image, signer)
	verifytest.Attest(b, image, signer.KeyPair, &signer, "https://slsa.dev/provenance/v1", verifytest.SLSAProvenance("https://github.com/actions/workflow@v1"), false)
	root, err := verify.NewTrustedRoot(ca.TrustedRoot(b))
	if err != nil {
		b.Fatal(err)
	}
	cond := verify.Condition{Expression: "builder", Eval: func(_ context.Context, st map[string]any) (bool, error) {
		_, ok := st["predicate"].(map[string]any)["buildDefinition"]
		return ok, nil
	}}
	for _, c := range []struct {
		name  string
		cache *verify.Cache
	}{{"cold", nil}, {"cached", verify.NewCache(100, time.Hour, time.Minute, nil)}} {
		b.Run(c.name, func(b *testing.B) {
			v, err := verify.Compile(verify.Options{Keyless: true, TrustedRoot: root, Identities: []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}},
				Attestations:       []verify.Attestation{{PredicateType: "https://slsa.dev/provenance/v1", Conditions: []verify.Condition{cond}}},
				InsecureRegistries: []string{reg.Host}, Transport: loopback(reg.Host), Timeout: 10 * time.Second, Cache: c.cache})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				got, err := v.Verify(b.Context(), image, nil)
				if err != nil || !got.Verified {
					b.Fatalf("%+v %v", got, err)
				}
			}
		})
	}
}

// An RFC 3161 timestamp from a timestamp authority of the root shows that a certificate, expired
// now, was valid when it signed; one from a TSA the root does not name shows nothing.
func TestTimestampAuthority(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	ca := verifytest.NewCA(t, "fulcio", true)
	tsa, otherTSA := verifytest.NewTSA(t), verifytest.NewTSA(t)
	// The TSA stamps while cosign signs: the certificate must outlive signing, even under the
	// race detector on a loaded machine.
	expiresAt := time.Now().Add(8 * time.Second)
	shortLived := ca.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer, NotBefore: time.Now().Add(-time.Minute), NotAfter: expiresAt})
	stamped, bare := reg.Push(t, "acme/stamped:v1"), reg.Push(t, "acme/bare:v1")
	verifytest.SignWithCert(t, stamped, shortLived, verifytest.Timestamped(tsa))
	verifytest.SignWithCert(t, bare, shortLived)
	time.Sleep(time.Until(expiresAt) + 500*time.Millisecond) // the certificate expires

	ids := []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}
	withTSA := compileWith(t, reg, verify.Options{Keyless: true, Identities: ids, TrustedRoot: trustedRoot(t, ca.TrustedRoot(t, verifytest.WithTSA(tsa)))})
	expectVerdict(t, withTSA, stamped, true, "")
	expectVerdict(t, withTSA, bare, false, "keyless: the certificate has expired and no trusted timestamp or transparency-log entry shows it was valid at signing")

	withoutTSA := compileWith(t, reg, verify.Options{Keyless: true, Identities: ids, TrustedRoot: trustedRoot(t, ca.TrustedRoot(t))})
	expectVerdict(t, withoutTSA, stamped, false, "keyless: the certificate has expired and no trusted timestamp")

	otherRoot := compileWith(t, reg, verify.Options{Keyless: true, Identities: ids, TrustedRoot: trustedRoot(t, ca.TrustedRoot(t, verifytest.WithTSA(otherTSA)))})
	expectVerdict(t, otherRoot, stamped, false, "keyless: the signature's RFC 3161 timestamp is not from a trusted timestamp authority")

	// The public-good root names a TSA, so every key rule checks timestamps: one from another
	// TSA, which cosign v2 crashes on (sigstore/cosign#4846), fails that signature and nothing
	// else: another key's signature of the same image still verifies.
	key, other := verifytest.NewKeyPair(t), verifytest.NewKeyPair(t)
	keyStamped := reg.Push(t, "acme/key-stamped:v1")
	verifytest.Sign(t, keyStamped, key, verifytest.Timestamped(tsa))
	keyRule := compileWith(t, reg, verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true})
	expectVerdict(t, keyRule, keyStamped, false, "the signature's RFC 3161 timestamp is not from a trusted timestamp authority")
	waived := compileWith(t, reg, verify.Options{PublicKeys: []string{key.PublicKey}, IgnoreTlog: true, IgnoreTimestamps: true})
	expectVerdict(t, waived, keyStamped, true, "")
	verifytest.Sign(t, keyStamped, other)
	eitherKey := compileWith(t, reg, verify.Options{PublicKeys: []string{key.PublicKey, other.PublicKey}, IgnoreTlog: true})
	expectVerdict(t, eitherKey, keyStamped, true, "")
}

// A transparency log of the root: its signed promise of inclusion, carried in the signature's
// bundle, is required and checked offline; its time shows that a certificate, expired now, was
// valid when it signed. A promise from another log, or one whose time was changed, is refused.
func TestTransparencyLog(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	ca := verifytest.NewCA(t, "fulcio", true)
	log, otherLog := verifytest.NewLog(t), verifytest.NewLog(t)
	key := verifytest.NewKeyPair(t)
	images := map[string]string{}
	for _, name := range []string{"logged", "unlogged", "other-log", "forged"} {
		images[name] = reg.Push(t, "acme/"+name+":v1")
		verifytest.Sign(t, images[name], key)
	}
	signedAt := time.Now()
	log.Record(t, images["logged"], key.PublicKey, signedAt, false)
	otherLog.Record(t, images["other-log"], key.PublicKey, signedAt, false)
	log.Record(t, images["forged"], key.PublicKey, signedAt, true)

	root := trustedRoot(t, ca.TrustedRoot(t, verifytest.WithLog(log)))
	keyRule := compileWith(t, reg, verify.Options{PublicKeys: []string{key.PublicKey}, TrustedRoot: root})
	expectVerdict(t, keyRule, images["logged"], true, "")
	expectVerdict(t, keyRule, images["unlogged"], false, "keys[0]: no transparency-log proof (bundle) with the signature; sign with the transparency log, or set ignoreTlog")
	expectVerdict(t, keyRule, images["other-log"], false, "keys[0]: the transparency-log proof is not from a log of the trusted root")
	expectVerdict(t, keyRule, images["forged"], false, "keys[0]: the transparency-log proof does not verify")
	// Another key's signature is another key's, logged or not.
	stranger := reg.Push(t, "acme/stranger:v1")
	verifytest.Sign(t, stranger, verifytest.NewKeyPair(t))
	expectVerdict(t, keyRule, stranger, false, "signature does not match any trusted key")
	waived := compileWith(t, reg, verify.Options{PublicKeys: []string{key.PublicKey}, TrustedRoot: root, IgnoreTlog: true})
	expectVerdict(t, waived, images["unlogged"], true, "")

	// Keyless: an expired certificate, logged while it was valid.
	issuedAt, expiresAt := time.Now(), time.Now().Add(3*time.Second)
	shortLived := ca.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer, NotBefore: time.Now().Add(-time.Minute), NotAfter: expiresAt})
	keyless, keylessUnlogged := reg.Push(t, "acme/keyless:v1"), reg.Push(t, "acme/keyless-unlogged:v1")
	verifytest.SignWithCert(t, keyless, shortLived)
	verifytest.SignWithCert(t, keylessUnlogged, shortLived)
	log.Record(t, keyless, "", issuedAt, false)              // entered while the certificate was valid, however long signing took
	time.Sleep(time.Until(expiresAt) + 500*time.Millisecond) // the certificate expires
	ids := []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}
	keylessRule := compileWith(t, reg, verify.Options{Keyless: true, Identities: ids, TrustedRoot: root})
	expectVerdict(t, keylessRule, keyless, true, "")
	expectVerdict(t, keylessRule, keylessUnlogged, false, "keyless: no transparency-log proof")
}

// A certificate-transparency log of the root: a keyless certificate must embed its SCT
// (ignoreSCT waives it); an SCT from another log is no SCT of the root's.
func TestCertificateTransparency(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	ca := verifytest.NewCA(t, "fulcio", true)
	ctLog, otherLog := verifytest.NewLog(t), verifytest.NewLog(t)
	images := map[string]string{}
	for name, log := range map[string]*verifytest.Log{"with-sct": ctLog, "other-log": otherLog, "without-sct": nil} {
		images[name] = reg.Push(t, "acme/"+name+":v1")
		verifytest.SignWithCert(t, images[name], ca.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer, CTLog: log}))
	}
	root := trustedRoot(t, ca.TrustedRoot(t, verifytest.WithCTLog(ctLog)))
	ids := []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}
	v := compileWith(t, reg, verify.Options{Keyless: true, Identities: ids, TrustedRoot: root})
	expectVerdict(t, v, images["with-sct"], true, "")
	expectVerdict(t, v, images["without-sct"], false, "keyless: the certificate carries no SCT (certificate-transparency proof); set ignoreSCT for a CA without CT")
	expectVerdict(t, v, images["other-log"], false, "keyless: the certificate's SCT is not from a CT log of the trusted root")
	waived := compileWith(t, reg, verify.Options{Keyless: true, Identities: ids, TrustedRoot: root, IgnoreSCT: true})
	expectVerdict(t, waived, images["without-sct"], true, "")
}
