package verifytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"slices"
	"testing"
	"time"

	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
)

// Log is a log made for a test. As a transparency log (Rekor), its key signs entries' promises
// of inclusion (signed entry timestamps), as Rekor returns them to `cosign sign` and cosign
// stores them in the signature's bundle; verification offline checks exactly that promise. As
// a certificate-transparency log, it signs the SCTs a CA embeds in certificates (Cert.CTLog).
type Log struct {
	key   *ecdsa.PrivateKey
	keyID []byte
	start time.Time
	index int64
}

// NewLog makes a log whose key is valid from an hour ago.
func NewLog(t testing.TB) *Log {
	t.Helper()
	key := newKey(t)
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(der)
	return &Log{key: key, keyID: id[:], start: time.Now().Add(-time.Hour)}
}

// WithLog names a transparency log (Rekor) in the root.
func WithLog(l *Log) RootOption { return l.inRoot("tlogs") }

// WithCTLog names a certificate-transparency log in the root.
func WithCTLog(l *Log) RootOption { return l.inRoot("ctlogs") }

func (l *Log) inRoot(kind string) RootOption {
	return func(doc map[string]any) {
		der, err := x509.MarshalPKIXPublicKey(l.key.Public())
		if err != nil {
			panic(err) // an ECDSA key always marshals
		}
		doc[kind] = append(doc[kind].([]any), map[string]any{
			"baseUrl": "https://log.test.invalid", "hashAlgorithm": "SHA2_256",
			"publicKey": map[string]any{"rawBytes": base64.StdEncoding.EncodeToString(der), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
				"validFor": map[string]string{"start": l.start.UTC().Format(time.RFC3339)}},
			"logId": map[string]string{"keyId": base64.StdEncoding.EncodeToString(l.keyID)},
		})
	}
}

// issueWithSCT issues the certificate of tmpl as a CA does with a CT log (RFC 6962): a
// precertificate (the poison extension in place of the SCT list) is logged, and the log's SCT
// is embedded in the certificate, whose TBS without the SCT list is the precertificate's
// without the poison.
func (ca *CA) issueWithSCT(t testing.TB, tmpl *x509.Certificate, pub crypto.PublicKey, l *Log) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial
	exts := tmpl.ExtraExtensions
	poison := pkix.Extension{Id: asn1.ObjectIdentifier(ctx509.OIDExtensionCTPoison), Critical: true, Value: asn1.NullBytes}
	pre := *tmpl
	pre.ExtraExtensions = append(slices.Clip(exts), poison)
	precert := createCert(t, &pre, ca.issuer, pub, ca.key)
	tbs, err := ctx509.RemoveCTPoison(precert.RawTBSCertificate)
	if err != nil {
		t.Fatal(err)
	}
	timestamp := uint64(time.Now().UnixMilli())
	leaf := ct.MerkleTreeLeaf{Version: ct.V1, LeafType: ct.TimestampedEntryLeafType, TimestampedEntry: &ct.TimestampedEntry{
		EntryType: ct.PrecertLogEntryType, Timestamp: timestamp,
		PrecertEntry: &ct.PreCert{IssuerKeyHash: sha256.Sum256(ca.issuer.RawSubjectPublicKeyInfo), TBSCertificate: tbs},
	}}
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, LogID: ct.LogID{KeyID: [32]byte(l.keyID)}, Timestamp: timestamp}
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: leaf})
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, l.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	sct.Signature = ct.DigitallySigned{Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA}, Signature: sig}
	serialized, err := cttls.Marshal(sct)
	if err != nil {
		t.Fatal(err)
	}
	list, err := cttls.Marshal(ctx509.SignedCertificateTimestampList{SCTList: []ctx509.SerializedSCT{{Val: serialized}}})
	if err != nil {
		t.Fatal(err)
	}
	value, err := asn1.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	final := *tmpl
	final.ExtraExtensions = append(slices.Clip(exts), pkix.Extension{Id: asn1.ObjectIdentifier(ctx509.OIDExtensionCTSCT), Value: value})
	return createCert(t, &final, ca.issuer, pub, ca.key)
}

// Record enters every signature of the image (its .sig tag) in the log at integratedTime, and
// attaches the entries' bundles to the signatures, as `cosign sign` with the transparency log
// does. publicKeyPEM is the key of signatures without a certificate. With forge, the bundle
// claims another time than the log signed.
func (l *Log) Record(t testing.TB, image, publicKeyPEM string, integratedTime time.Time, forge bool) {
	t.Helper()
	rewriteLayers(t, image, ".sig", func(payload []byte, annotations map[string]string) []byte {
		verifier := annotations["dev.sigstore.cosign/certificate"]
		if verifier == "" {
			verifier = publicKeyPEM
		}
		sum := sha256.Sum256(payload)
		body, err := json.Marshal(map[string]any{"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": map[string]any{
			"data":      map[string]any{"hash": map[string]string{"algorithm": "sha256", "value": hex.EncodeToString(sum[:])}},
			"signature": map[string]any{"content": annotations["dev.cosignproject.cosign/signature"], "publicKey": map[string]string{"content": base64.StdEncoding.EncodeToString([]byte(verifier))}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		l.index++
		// The signed entry timestamp signs the canonical JSON of the entry (keys sorted, as
		// encoding/json writes a map; no character here needs escaping).
		entry := map[string]any{"body": base64.StdEncoding.EncodeToString(body), "integratedTime": integratedTime.Unix(), "logIndex": l.index, "logID": hex.EncodeToString(l.keyID)}
		canonical, err := json.Marshal(entry)
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256(canonical)
		set, err := ecdsa.SignASN1(rand.Reader, l.key, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		if forge {
			entry["integratedTime"] = integratedTime.Add(-time.Minute).Unix()
		}
		bundle, err := json.Marshal(map[string]any{"SignedEntryTimestamp": set, "Payload": entry})
		if err != nil {
			t.Fatal(err)
		}
		annotations["dev.sigstore.cosign/bundle"] = string(bundle)
		return payload
	})
}
