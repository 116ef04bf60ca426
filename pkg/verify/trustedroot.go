package verify

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// publicGoodJSON is the Sigstore public-good TrustedRoot (Fulcio CAs, Rekor and CT log keys) as
// the sigstore module ships it.
//
//go:embed trustedroot/public-good.json
var publicGoodJSON []byte

// MaxTrustedRootBytes bounds a TrustedRoot document (inline, in a ConfigMap or a file).
const MaxTrustedRootBytes = 256 << 10

// ParseTrustedRoot parses a Sigstore TrustedRoot JSON document.
func ParseTrustedRoot(doc []byte) (*root.TrustedRoot, error) {
	if len(doc) > MaxTrustedRootBytes {
		return nil, fmt.Errorf("the trusted root is %d bytes, more than %d", len(doc), MaxTrustedRootBytes)
	}
	tr, err := root.NewTrustedRootFromJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("not a Sigstore TrustedRoot: %w", err)
	}
	return tr, nil
}

// TrustedRoot is a trusted root an attestor checks against, with an identifier for cache keys.
type TrustedRoot struct {
	root.TrustedMaterial
	ID string
}

// NewTrustedRoot parses a TrustedRoot document; its identifier is its content's hash.
func NewTrustedRoot(doc []byte) (*TrustedRoot, error) {
	tr, err := ParseTrustedRoot(doc)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(bytes.TrimSpace(doc))
	return &TrustedRoot{TrustedMaterial: tr, ID: hex.EncodeToString(sum[:8])}, nil
}

// PublicGood is the Sigstore public-good trusted root: the embedded snapshot.
func PublicGood() *TrustedRoot {
	publicGoodOnce.Do(func() {
		tr, err := NewTrustedRoot(publicGoodJSON)
		if err != nil {
			panic("the embedded public-good trusted root does not parse: " + err.Error()) // a build defect; tested
		}
		publicGood = tr
	})
	return publicGood
}

var (
	publicGoodOnce sync.Once
	publicGood     *TrustedRoot
)

// LiveRoot is a trusted root that may be replaced while verifiers use it: the public-good root,
// embedded at first, then as a TUF refresh last delivered it. Every verification reads the root
// in force once, and its verdict is cached under that root's identifier, so a replaced root
// never serves a verdict reached under the old one.
type LiveRoot struct {
	current atomic.Pointer[TrustedRoot]
}

// NewLiveRoot returns a live root holding initial (nil: the embedded public-good root).
func NewLiveRoot(initial *TrustedRoot) *LiveRoot {
	if initial == nil {
		initial = PublicGood()
	}
	l := &LiveRoot{}
	l.current.Store(initial)
	return l
}

// Load returns the root in force.
func (l *LiveRoot) Load() *TrustedRoot { return l.current.Load() }

// Store puts a root in force; it reports whether it differs from the previous one.
func (l *LiveRoot) Store(tr *TrustedRoot) bool {
	return l.current.Swap(tr).ID != tr.ID
}

// chainMaterial is one's own PKI under a trusted root: the chain's certificate authorities in
// place of the root's, no CT logs, and the root's transparency logs and timestamp authorities.
type chainMaterial struct {
	root.TrustedMaterial
	cas []root.CertificateAuthority
}

func (c chainMaterial) FulcioCertificateAuthorities() []root.CertificateAuthority { return c.cas }
func (c chainMaterial) CTLogs() map[string]*root.TransparencyLog                  { return nil }

// MaxChainCertificates bounds a certificateChain.
const MaxChainCertificates = 16

// parseChain parses PEM roots and intermediates: each self-signed certificate is a root, every
// other an intermediate of every root (chains are built by signature, so extra ones are inert).
func parseChain(pemChain string) ([]root.CertificateAuthority, error) {
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(pemChain))
	if err != nil {
		return nil, fmt.Errorf("certificateChain: not PEM certificates: %w", err)
	}
	if len(certs) == 0 {
		return nil, errors.New("certificateChain: no PEM certificate")
	}
	if len(certs) > MaxChainCertificates {
		return nil, fmt.Errorf("certificateChain: %d certificates, more than %d", len(certs), MaxChainCertificates)
	}
	var roots, intermediates []*x509.Certificate
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("certificateChain: %q is not a CA certificate", c.Subject.String())
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots = append(roots, c)
		} else {
			intermediates = append(intermediates, c)
		}
	}
	if len(roots) == 0 {
		return nil, errors.New("certificateChain: no root (self-signed) certificate")
	}
	cas := make([]root.CertificateAuthority, 0, len(roots))
	for _, r := range roots {
		cas = append(cas, &root.FulcioCertificateAuthority{Root: r, Intermediates: intermediates})
	}
	return cas, nil
}
