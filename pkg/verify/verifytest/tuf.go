package verifytest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// TUFRepository is a TUF repository made for a test, served over HTTP on loopback, with one
// target, trusted_root.json, in the layout of Sigstore's (consistent snapshots: versioned
// metadata, targets prefixed with their hash).
type TUFRepository struct {
	URL string
	// Root is the repository's root.json, version 1: the initial root a client trusts.
	Root []byte

	mu      sync.Mutex
	files   map[string][]byte
	signers map[string]signature.Signer
	root    *metadata.Metadata[metadata.RootType]
	version int64
}

// NewTUFRepository serves a repository whose trusted_root.json is doc.
func NewTUFRepository(t testing.TB, doc []byte) *TUFRepository {
	t.Helper()
	r := &TUFRepository{files: map[string][]byte{}, signers: map[string]signature.Signer{}}
	expires := time.Now().Add(24 * time.Hour)
	r.root = metadata.Root(expires)
	r.root.Signed.ConsistentSnapshot = true
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		_, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		key, err := metadata.KeyFromPublicKey(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if err := r.root.Signed.AddKey(key, role); err != nil {
			t.Fatal(err)
		}
		if r.signers[role], err = signature.LoadSigner(priv, crypto.Hash(0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.root.Sign(r.signers[metadata.ROOT]); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.Root, err = r.root.ToBytes(false); err != nil {
		t.Fatal(err)
	}
	r.files["/1.root.json"] = r.Root
	r.Publish(t, doc)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		b, ok := r.files[req.URL.Path]
		r.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// Publish makes doc the repository's trusted_root.json, in new targets, snapshot and timestamp
// versions.
func (r *TUFRepository) Publish(t testing.TB, doc []byte) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.version++
	expires := time.Now().Add(24 * time.Hour)
	target, err := metadata.TargetFile().FromBytes("trusted_root.json", doc, "sha256")
	if err != nil {
		t.Fatal(err)
	}
	targets := metadata.Targets(expires)
	targets.Signed.Version = r.version
	targets.Signed.Targets["trusted_root.json"] = target
	snapshot := metadata.Snapshot(expires)
	snapshot.Signed.Version = r.version
	snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.version)
	timestamp := metadata.Timestamp(expires)
	timestamp.Signed.Version = r.version
	timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.version)

	sum := sha256.Sum256(doc)
	r.files["/targets/"+hex.EncodeToString(sum[:])+".trusted_root.json"] = doc
	r.files[fmt.Sprintf("/%d.targets.json", r.version)] = signMetadata(t, targets, r.signers[metadata.TARGETS])
	r.files[fmt.Sprintf("/%d.snapshot.json", r.version)] = signMetadata(t, snapshot, r.signers[metadata.SNAPSHOT])
	r.files["/timestamp.json"] = signMetadata(t, timestamp, r.signers[metadata.TIMESTAMP])
}

// TamperTarget replaces the served trusted_root.json with doc, leaving the signed metadata as
// it was: a mirror that serves what the repository's keys did not sign.
func (r *TUFRepository) TamperTarget(doc []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for path := range r.files {
		if strings.HasSuffix(path, ".trusted_root.json") {
			r.files[path] = doc
		}
	}
}

func signMetadata[T metadata.Roles](t testing.TB, m *metadata.Metadata[T], s signature.Signer) []byte {
	t.Helper()
	if _, err := m.Sign(s); err != nil {
		t.Fatal(err)
	}
	b, err := m.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
