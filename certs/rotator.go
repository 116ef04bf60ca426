package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Rotator keeps the Secret's CA and serving certificate valid and the webhook configurations'
// caBundle current. It runs on the elected leader only (see package leader), so replicas never
// race to renew; Start may be called again after it returns, when leadership comes back.
type Rotator struct {
	// Client writes; Reader reads from the API server directly (no cache of every Secret).
	Client client.Client
	Reader client.Reader
	Secret types.NamespacedName
	// DNSNames and IPs are the names the serving certificate is valid for.
	DNSNames []string
	IPs      []net.IP
	// ValidatingWebhooks and MutatingWebhooks are the configurations whose caBundle is kept.
	ValidatingWebhooks []string
	MutatingWebhooks   []string
	Lifetimes          Lifetimes
	// Interval between checks; renewal happens long before expiry, so minutes are plenty. A
	// change to the Secret (Kick) is checked at once.
	Interval time.Duration
	Now      func() time.Time

	kickOnce sync.Once
	kick     chan struct{}
}

func (r *Rotator) kicks() chan struct{} {
	r.kickOnce.Do(func() { r.kick = make(chan struct{}, 1) })
	return r.kick
}

// Kick asks for a check now: the Secret changed or was deleted. It never blocks; kicks that come
// while one is pending are one.
func (r *Rotator) Kick() {
	select {
	case r.kicks() <- struct{}{}:
	default:
	}
}

// Start checks at once, then on every Kick and every Interval, until ctx ends. A failed check is
// retried within seconds, backing off to Interval.
func (r *Rotator) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("cert-rotator")
	retry := time.Second
	for {
		wait := r.Interval
		if err := r.Ensure(ctx); err != nil {
			wait, retry = min(retry, r.Interval), min(2*retry, r.Interval)
			logger.Error(err, "keeping the serving certificate current; retrying", "in", wait.String())
		} else {
			retry = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.kicks():
		case <-t.C:
		}
		t.Stop()
	}
}

// Ensure renews what is due in the Secret and injects the CA bundle.
func (r *Rotator) Ensure(ctx context.Context) error {
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	var secret corev1.Secret
	err := r.Reader.Get(ctx, r.Secret, &secret)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return fmt.Errorf("reading secret %s: %w", r.Secret, err)
	}
	data, changed, err := plan(secret.Data, hosts{dnsNames: r.DNSNames, ips: r.IPs}, r.Lifetimes, now)
	if err != nil {
		return err
	}
	switch {
	case create:
		secret = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: r.Secret.Name, Namespace: r.Secret.Namespace,
				Labels: map[string]string{"app.kubernetes.io/name": "portcullis", "app.kubernetes.io/component": "webhook-certs"}},
			Type: corev1.SecretTypeOpaque,
			Data: data,
		}
		if err := r.Client.Create(ctx, &secret); err != nil {
			return fmt.Errorf("creating secret %s: %w", r.Secret, err)
		}
		log.FromContext(ctx).Info("created the serving certificate", "secret", r.Secret)
	case changed:
		secret.Data = data // Update carries resourceVersion: a concurrent writer makes it conflict
		if err := r.Client.Update(ctx, &secret); err != nil {
			return fmt.Errorf("updating secret %s: %w", r.Secret, err)
		}
		log.FromContext(ctx).Info("renewed the serving certificate", "secret", r.Secret)
	}
	return r.inject(ctx, data[KeyCABundle])
}

// inject sets caBundle on every webhook of the configured configurations.
func (r *Rotator) inject(ctx context.Context, bundle []byte) error {
	var errs []error
	for _, name := range r.ValidatingWebhooks {
		var cfg admissionregistrationv1.ValidatingWebhookConfiguration
		errs = append(errs, r.patch(ctx, name, &cfg, func() bool {
			changed := false
			for i := range cfg.Webhooks {
				changed = setBundle(&cfg.Webhooks[i].ClientConfig, bundle) || changed
			}
			return changed
		}))
	}
	for _, name := range r.MutatingWebhooks {
		var cfg admissionregistrationv1.MutatingWebhookConfiguration
		errs = append(errs, r.patch(ctx, name, &cfg, func() bool {
			changed := false
			for i := range cfg.Webhooks {
				changed = setBundle(&cfg.Webhooks[i].ClientConfig, bundle) || changed
			}
			return changed
		}))
	}
	return errors.Join(errs...)
}

func setBundle(c *admissionregistrationv1.WebhookClientConfig, bundle []byte) bool {
	if bytes.Equal(c.CABundle, bundle) {
		return false
	}
	c.CABundle = bundle
	return true
}

func (r *Rotator) patch(ctx context.Context, name string, obj client.Object, mutate func() bool) error {
	if err := r.Reader.Get(ctx, types.NamespacedName{Name: name}, obj); err != nil {
		return fmt.Errorf("reading webhook configuration %s: %w", name, err)
	}
	base := obj.DeepCopyObject().(client.Object)
	if !mutate() {
		return nil
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("injecting caBundle into %s: %w", name, err)
	}
	log.FromContext(ctx).Info("injected caBundle", "webhookConfiguration", name)
	return nil
}
