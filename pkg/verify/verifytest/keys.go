package verifytest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/kms"
)

// KeyPair is a signing key: its private half, held in memory and found by cosign through KeyRef,
// and its public half in PEM, as `cosign generate-key-pair` writes it to cosign.pub.
type KeyPair struct {
	KeyRef    string
	PublicKey string
}

// keyScheme is the scheme of a KeyPair's KeyRef. cosign finds the key as it finds a KMS key
// (`cosign sign --key awskms://...`), from a provider registered for the scheme. A key file, as
// `cosign generate-key-pair` writes it, is encrypted with scrypt, which took 2.7 s to decrypt for
// every signature under the race detector, most of the time of the tests that sign.
const keyScheme = "portcullis-test://"

var (
	memKeys   sync.Map // KeyRef -> *ecdsa.PrivateKey
	memKeyIDs atomic.Int64
)

func init() {
	kms.AddProvider(keyScheme, func(_ context.Context, ref string, _ crypto.Hash, _ ...signature.RPCOption) (kms.SignerVerifier, error) {
		k, ok := memKeys.Load(ref)
		if !ok {
			return nil, fmt.Errorf("no key %s", ref)
		}
		key := k.(*ecdsa.PrivateKey)
		sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
		if err != nil {
			return nil, err
		}
		return memKey{ECDSASignerVerifier: sv, key: key}, nil
	})
}

// NewKeyPair generates an ECDSA P-256 key pair, the kind `cosign generate-key-pair` makes.
func NewKeyPair(t testing.TB) KeyPair {
	t.Helper()
	key := newKey(t)
	pub, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	ref := fmt.Sprintf("%skey-%d", keyScheme, memKeyIDs.Add(1))
	memKeys.Store(ref, key)
	return KeyPair{KeyRef: ref, PublicKey: string(pub)}
}

// memKey is a key in memory, as the KMS signer cosign asks for.
type memKey struct {
	*signature.ECDSASignerVerifier
	key *ecdsa.PrivateKey
}

func (m memKey) CreateKey(context.Context, string) (crypto.PublicKey, error) {
	return m.key.Public(), nil
}

func (m memKey) CryptoSigner(context.Context, func(error)) (crypto.Signer, crypto.SignerOpts, error) {
	return m.key, crypto.SHA256, nil
}

func (memKey) SupportedAlgorithms() []string { return []string{"ecdsa-p256-sha256"} }
func (memKey) DefaultAlgorithm() string      { return "ecdsa-p256-sha256" }
