package server

import (
	"context"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	kauth "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// PullSecrets builds a pod's registry keychain the way the kubelet resolves credentials: the
// pod's imagePullSecrets and those of its service account.
type PullSecrets struct {
	Client kubernetes.Interface
}

// keychainFor returns a keychain that reads the secrets on first use only, so that reviews that
// verify no image cost no API call.
func (p *PullSecrets) keychainFor(ctx context.Context, namespace string, spec *corev1.PodSpec) authn.Keychain {
	if p == nil || p.Client == nil {
		return authn.NewMultiKeychain() // anonymous
	}
	opts := kauth.Options{Namespace: namespace}
	if spec != nil {
		opts.ServiceAccountName = spec.ServiceAccountName
		for _, s := range spec.ImagePullSecrets {
			opts.ImagePullSecrets = append(opts.ImagePullSecrets, s.Name)
		}
	}
	ctx = context.WithoutCancel(ctx) // a coalesced verification may outlive the request that started it
	return &lazyKeychain{build: func() (authn.Keychain, error) { return kauth.New(ctx, p.Client, opts) }}
}

type lazyKeychain struct {
	once  sync.Once
	build func() (authn.Keychain, error)
	kc    authn.Keychain
	err   error
}

// Resolve implements authn.Keychain.
func (l *lazyKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	l.once.Do(func() { l.kc, l.err = l.build() })
	if l.err != nil {
		return nil, l.err
	}
	return l.kc.Resolve(r)
}
