package verifytest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"testing"
	"time"
)

// Log is a transparency log made for a test: a Rekor log key that signs entries' promises of
// inclusion (signed entry timestamps), as Rekor returns them to `cosign sign` and cosign stores
// them in the signature's bundle. Verification offline checks exactly that promise.
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
func WithLog(l *Log) RootOption {
	return func(doc map[string]any) {
		der, err := x509.MarshalPKIXPublicKey(l.key.Public())
		if err != nil {
			panic(err) // an ECDSA key always marshals
		}
		doc["tlogs"] = append(doc["tlogs"].([]any), map[string]any{
			"baseUrl": "https://rekor.test.invalid", "hashAlgorithm": "SHA2_256",
			"publicKey": map[string]any{"rawBytes": base64.StdEncoding.EncodeToString(der), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
				"validFor": map[string]string{"start": l.start.UTC().Format(time.RFC3339)}},
			"logId": map[string]string{"keyId": base64.StdEncoding.EncodeToString(l.keyID)},
		})
	}
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
