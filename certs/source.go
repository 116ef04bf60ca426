package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Source serves the certificate stored in the Secret. It watches the Secret through the
// manager's cache on every replica, so a renewed certificate is served within moments, with no
// restart and no wait for the kubelet to refresh a mounted volume.
type Source struct {
	Client client.Reader // the manager's cache
	Secret types.NamespacedName
	// Changed, when set, is told of every change to the Secret, its deletion included: the
	// Rotator's Kick, so that a damaged Secret is repaired at once, not at the next check.
	Changed func()
	cert    atomic.Pointer[tls.Certificate]
}

// GetCertificate is tls.Config.GetCertificate.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("the serving certificate is not loaded yet")
}

// ReadyCheck is a healthz checker: ready once a certificate is loaded.
func (s *Source) ReadyCheck(*http.Request) error {
	if s.cert.Load() == nil {
		return fmt.Errorf("serving certificate from secret %s not loaded yet", s.Secret)
	}
	return nil
}

// SetupWithManager watches the Secret on every replica.
func (s *Source) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("serving-certificate").
		For(&corev1.Secret{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetNamespace() == s.Secret.Namespace && o.GetName() == s.Secret.Name
		}))).
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		Complete(s)
}

// Reconcile loads the Secret's certificate.
func (s *Source) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	if s.Changed != nil {
		s.Changed()
	}
	var secret corev1.Secret
	if err := s.Client.Get(ctx, s.Secret, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil // the leader creates it; keep serving what we have
		}
		return reconcile.Result{}, err
	}
	cert, err := servingCertificate(secret.Data)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("secret %s: %w", s.Secret, err)
	}
	s.cert.Store(cert)
	return reconcile.Result{}, nil
}
