package verifytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"maps"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/attest"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/options"
	"github.com/sigstore/cosign/v2/cmd/cosign/cli/sign"
	fulcio "github.com/sigstore/fulcio/pkg/certificate"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// CA is a certificate authority made for a test: it plays a private Fulcio (issuing short-lived
// code-signing certificates with Fulcio's identity extensions) or one's own PKI.
type CA struct {
	Root         *x509.Certificate
	Intermediate *x509.Certificate // nil: the root issues
	issuer       *x509.Certificate
	key          crypto.Signer
}

// NewCA makes a root CA, and an intermediate under it when intermediate is true.
func NewCA(t testing.TB, name string, intermediate bool) *CA {
	t.Helper()
	rootKey := newKey(t)
	now := time.Now()
	root := createCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: name + " root", Organization: []string{"portcullis test"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	ca := &CA{Root: root, issuer: root, key: rootKey}
	if intermediate {
		key := newKey(t)
		ca.Intermediate = createCert(t, &x509.Certificate{
			Subject: pkix.Name{CommonName: name + " intermediate", Organization: []string{"portcullis test"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		}, root, key.Public(), rootKey)
		ca.issuer, ca.key = ca.Intermediate, key
	}
	return ca
}

// ChainPEM is the CA's chain, intermediate first, as certificateChain takes it.
func (ca *CA) ChainPEM(t testing.TB) string {
	t.Helper()
	certs := []*x509.Certificate{ca.Root}
	if ca.Intermediate != nil {
		certs = []*x509.Certificate{ca.Intermediate, ca.Root}
	}
	b, err := cryptoutils.MarshalCertificatesToPEM(certs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TrustedRoot is a Sigstore TrustedRoot document naming this CA as its only certificate
// authority, with no logs: what an operator of a private Fulcio without Rekor ships. Options
// add timestamp authorities and transparency logs.
func (ca *CA) TrustedRoot(t testing.TB, opts ...RootOption) []byte {
	t.Helper()
	doc := map[string]any{
		"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
		"certificateAuthorities": []any{map[string]any{
			"subject":   map[string]string{"organization": "portcullis test", "commonName": ca.Root.Subject.CommonName},
			"uri":       "https://fulcio.test.invalid",
			"certChain": certChain(ca.Intermediate, ca.Root),
			"validFor":  map[string]string{"start": ca.Root.NotBefore.UTC().Format(time.RFC3339)},
		}},
		"tlogs": []any{}, "ctlogs": []any{}, "timestampAuthorities": []any{},
	}
	for _, o := range opts {
		o(doc)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RootOption adds to a TrustedRoot document.
type RootOption func(doc map[string]any)

// WithTSA names a timestamp authority in the root.
func WithTSA(tsa *TSA) RootOption {
	return func(doc map[string]any) {
		doc["timestampAuthorities"] = append(doc["timestampAuthorities"].([]any), map[string]any{
			"subject":   map[string]string{"organization": "portcullis test", "commonName": tsa.Chain[0].Subject.CommonName},
			"uri":       tsa.URL,
			"certChain": certChain(tsa.Chain...),
			"validFor":  map[string]string{"start": tsa.Chain[len(tsa.Chain)-1].NotBefore.UTC().Format(time.RFC3339)},
		})
	}
}

// certChain is a TrustedRoot certificate chain; nil certificates are left out.
func certChain(certs ...*x509.Certificate) map[string]any {
	var chain []map[string]string
	for _, c := range certs {
		if c != nil {
			chain = append(chain, map[string]string{"rawBytes": base64.StdEncoding.EncodeToString(c.Raw)})
		}
	}
	return map[string]any{"certificates": chain}
}

// Signer is a signing identity: a key and a certificate for it, the certificate and its chain on disk.
type Signer struct {
	KeyPair
	CertPath, ChainPath string
}

// Cert says what a certificate asserts and when it is valid.
type Cert struct {
	// Subject is a URI (a workflow) when it has a scheme, else an email.
	Subject string
	// Issuer is the OIDC issuer, in Fulcio's issuer extension.
	Issuer string
	// Extensions are further Fulcio extensions, e.g. GithubWorkflowRepository.
	Extensions fulcio.Extensions
	// NotBefore and NotAfter default to a 10-minute window around now, as Fulcio issues.
	NotBefore, NotAfter time.Time
	// CTLog, when set, logs a precertificate and embeds its SCT, as Fulcio does with its CT log.
	CTLog *Log
}

// Issue issues a code-signing certificate for a new key, as Fulcio would for a keyless signer.
func (ca *CA) Issue(t testing.TB, c Cert) Signer {
	t.Helper()
	kp := NewKeyPair(t)
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(kp.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = time.Now().Add(-time.Minute)
	}
	if c.NotAfter.IsZero() {
		c.NotAfter = c.NotBefore.Add(10 * time.Minute)
	}
	ext := c.Extensions
	ext.Issuer = c.Issuer
	exts, err := ext.Render()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, ExtraExtensions: exts,
	}
	if u, err := url.Parse(c.Subject); err == nil && u.Scheme != "" {
		tmpl.URIs = []*url.URL{u}
	} else {
		tmpl.EmailAddresses = []string{c.Subject}
	}
	var leaf *x509.Certificate
	if c.CTLog != nil {
		leaf = ca.issueWithSCT(t, tmpl, pub, c.CTLog)
	} else {
		leaf = createCert(t, tmpl, ca.issuer, pub, ca.key)
	}
	dir := t.TempDir()
	s := Signer{KeyPair: kp, CertPath: filepath.Join(dir, "cert.pem"), ChainPath: filepath.Join(dir, "chain.pem")}
	leafPEM, err := cryptoutils.MarshalCertificateToPEM(leaf)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.CertPath, leafPEM)
	writeFile(t, s.ChainPath, []byte(ca.ChainPEM(t)))
	return s
}

// SignWithCert signs the image with the code path behind `cosign sign --key K --certificate C
// --certificate-chain CHAIN --tlog-upload=false [--timestamp-server-url URL]`.
func SignWithCert(t testing.TB, image string, s Signer, opts ...SignOption) {
	t.Helper()
	ko := options.KeyOpts{KeyRef: s.KeyRef}
	for _, o := range opts {
		o(&ko)
	}
	so := options.SignOptions{Upload: true, TlogUpload: false, SkipConfirmation: true, Cert: s.CertPath, CertChain: s.ChainPath,
		Registry: options.RegistryOptions{AllowInsecure: true, AllowHTTPRegistry: true}}
	if err := sign.SignCmd(&options.RootOptions{Timeout: 30 * time.Second}, ko, so, []string{image}); err != nil {
		t.Fatalf("cosign sign --certificate %s: %v", image, err)
	}
}

// SignOption changes how an image is signed.
type SignOption func(*options.KeyOpts)

// Timestamped has the signature timestamped by the TSA (`--timestamp-server-url`).
func Timestamped(tsa *TSA) SignOption {
	return func(ko *options.KeyOpts) { ko.TSAServerURL = tsa.URL }
}

// Attest attaches an in-toto attestation of predicateType with the predicate (JSON) to the image,
// with the code path behind `cosign attest --key K [--certificate C --certificate-chain CHAIN]
// --tlog-upload=false [--new-bundle-format]`: a DSSE envelope at the .att tag, or a Sigstore
// bundle as an OCI referrer.
func Attest(t testing.TB, image string, key KeyPair, s *Signer, predicateType, predicate string, bundle bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "predicate.json")
	writeFile(t, path, []byte(predicate))
	keyRef := key.KeyRef
	c := attest.AttestCommand{
		KeyOpts:         options.KeyOpts{NewBundleFormat: bundle},
		RegistryOptions: options.RegistryOptions{AllowInsecure: true, AllowHTTPRegistry: true},
		PredicatePath:   path, PredicateType: predicateType, TlogUpload: false, Timeout: 30 * time.Second, RekorEntryType: "dsse",
	}
	if s != nil {
		keyRef, c.CertPath, c.CertChainPath = s.KeyRef, s.CertPath, s.ChainPath
	}
	c.KeyRef = keyRef
	if err := c.Exec(t.Context(), image); err != nil {
		t.Fatalf("cosign attest %s: %v", image, err)
	}
}

// SLSAProvenance is a minimal SLSA v1 provenance predicate with the given build type.
func SLSAProvenance(buildType string) string {
	return `{"buildDefinition":{"buildType":` + quote(buildType) + `,"externalParameters":{"workflow":{"ref":"refs/heads/main"}}},` +
		`"runDetails":{"builder":{"id":"https://github.com/actions/runner"},"metadata":{"invocationId":"1"}}}`
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	if tmpl.SerialNumber == nil {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = serial
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TamperAttestations rewrites every attestation at the image's .att tag, replacing old with new
// in each signed statement and keeping the signatures: what an attacker with write access to
// the registry, but not the key, can do.
func TamperAttestations(t testing.TB, image, old, replacement string) {
	t.Helper()
	rewriteLayers(t, image, ".att", func(raw []byte, _ map[string]string) []byte {
		var env map[string]any
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatal(err)
		}
		tamperPayload(t, env, old, replacement)
		tampered, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return tampered
	})
}

// rewriteLayers rewrites each layer of the image's cosign tag (.sig, .att) with edit, which may
// also change the layer's annotations.
func rewriteLayers(t testing.TB, image, suffix string, edit func(raw []byte, annotations map[string]string) []byte) {
	t.Helper()
	d := digestRef(t, image)
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + suffix)
	img, err := remote.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := empty.Image
	for i, l := range layers {
		raw := readLayer(t, l)
		annotations := maps.Clone(m.Layers[i].Annotations)
		if annotations == nil {
			annotations = map[string]string{}
		}
		raw = edit(raw, annotations)
		out, err = mutate.Append(out, mutate.Addendum{Layer: static.NewLayer(raw, m.Layers[i].MediaType), Annotations: annotations})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Write(tag, out); err != nil {
		t.Fatal(err)
	}
}

// TamperBundles rewrites every Sigstore bundle attached to the image as an OCI 1.1 referrer,
// replacing old with new in its signed statement and keeping its signature, and removes the
// original: what an attacker with write access to the registry, but not the key, can do. The
// registry must serve the referrers API.
func TamperBundles(t testing.TB, image, old, replacement string) {
	t.Helper()
	d := digestRef(t, image)
	index, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) == 0 {
		t.Fatalf("%s: no referrers to tamper with", image)
	}
	for _, m := range im.Manifests {
		original := d.Context().Digest(m.Digest.String())
		desc, err := remote.Get(original)
		if err != nil {
			t.Fatal(err)
		}
		var manifest map[string]any
		if err := json.Unmarshal(desc.Manifest, &manifest); err != nil {
			t.Fatal(err)
		}
		layer := manifest["layers"].([]any)[0].(map[string]any)
		blob, err := remote.Layer(d.Context().Digest(layer["digest"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		raw := readLayer(t, blob)
		var bundle map[string]any
		if err := json.Unmarshal(raw, &bundle); err != nil {
			t.Fatal(err)
		}
		tamperPayload(t, bundle["dsseEnvelope"].(map[string]any), old, replacement)
		tampered, err := json.Marshal(bundle)
		if err != nil {
			t.Fatal(err)
		}
		newLayer := static.NewLayer(tampered, types.MediaType(layer["mediaType"].(string)))
		if err := remote.WriteLayer(d.Context(), newLayer); err != nil {
			t.Fatal(err)
		}
		digest, err := newLayer.Digest()
		if err != nil {
			t.Fatal(err)
		}
		layer["digest"], layer["size"] = digest.String(), len(tampered)
		rewritten, err := json.Marshal(manifest)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(rewritten)
		target := d.Context().Digest("sha256:" + hex.EncodeToString(sum[:]))
		if err := remote.Put(target, rawManifest{rewritten, desc.MediaType}); err != nil {
			t.Fatal(err)
		}
		if err := remote.Delete(original); err != nil {
			t.Fatal(err)
		}
	}
}

// digestRef parses an image reference that must name a digest.
func digestRef(t testing.TB, image string) name.Digest {
	t.Helper()
	ref, err := name.ParseReference(image, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := ref.(name.Digest)
	if !ok {
		t.Fatalf("%s: want a digest reference", image)
	}
	return d
}

// readLayer reads a layer's content.
func readLayer(t testing.TB, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	raw, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// tamperPayload replaces old with replacement in a DSSE envelope's signed payload, keeping its
// signatures.
func tamperPayload(t testing.TB, env map[string]any, old, replacement string) {
	t.Helper()
	payload, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	env["payload"] = base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(string(payload), old, replacement)))
}

// rawManifest is a manifest as bytes, for remote.Put.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }
