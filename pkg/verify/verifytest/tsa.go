package verifytest

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
)

// TSA is an RFC 3161 timestamp authority on loopback, as `cosign sign --timestamp-server-url`
// reaches Sigstore's: requests and responses in the protocol's DER, signed with the
// digitorus/timestamp package that Sigstore's timestamp authority signs with. Its certificate
// chain is a root and a leaf with the critical time-stamping extended key usage.
type TSA struct {
	// URL is where timestamp requests go.
	URL string
	// Chain is the TSA's certificate chain, leaf first.
	Chain []*x509.Certificate
}

// NewTSA starts a timestamp authority for the test.
func NewTSA(t testing.TB) *TSA {
	t.Helper()
	rootKey, leafKey := newKey(t), newKey(t)
	now := time.Now()
	root := createCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test TSA root", Organization: []string{"portcullis test"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}}) // id-kp-timeStamping
	if err != nil {
		t.Fatal(err)
	}
	leaf := createCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test TSA", Organization: []string{"portcullis test"}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
	}, root, leafKey.Public(), rootKey)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := timestamp.ParseRequest(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ts := timestamp.Timestamp{HashAlgorithm: req.HashAlgorithm, HashedMessage: req.HashedMessage, Time: time.Now(),
			Nonce: req.Nonce, Policy: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 2}, AddTSACertificate: req.Certificates,
			Accuracy: time.Second}
		resp, err := ts.CreateResponseWithOpts(leaf, leafKey, crypto.SHA256)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/timestamp-reply")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(srv.Close)
	return &TSA{URL: srv.URL + "/api/v1/timestamp", Chain: []*x509.Certificate{leaf, root}}
}
