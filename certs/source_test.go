package certs

import (
	"crypto/tls"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestSource: nothing is served, nor ready, until the Secret holds a certificate; then it is
// served; a Secret deleted or damaged keeps the last good one served, and every change is
// passed on (to the rotator, which repairs it).
func TestSource(t *testing.T) {
	cl, key := fakeSecrets(t)
	changes := 0
	s := &Source{Client: cl, Secret: key, Changed: func() { changes++ }}
	reconcileOnce := func() error {
		_, err := s.Reconcile(t.Context(), reconcile.Request{NamespacedName: key})
		return err
	}
	if err := reconcileOnce(); err != nil {
		t.Fatalf("no Secret yet: %v", err)
	}
	if _, err := s.GetCertificate(&tls.ClientHelloInfo{}); err == nil || s.ReadyCheck(nil) == nil {
		t.Fatal("a certificate served, or ready, before the Secret holds one")
	}
	data, _, err := plan(nil, hosts{dnsNames: []string{"portcullis-webhook.portcullis-system.svc"}}, DefaultLifetimes, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: data}
	if err := cl.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	if err := reconcileOnce(); err != nil {
		t.Fatal(err)
	}
	served, err := s.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || served == nil || s.ReadyCheck(nil) != nil {
		t.Fatalf("the Secret's certificate is not served: %v", err)
	}
	secret.Data = map[string][]byte{KeyTLSCert: []byte("garbage")}
	if err := cl.Update(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	if err := reconcileOnce(); err == nil {
		t.Error("a damaged Secret was read without an error")
	}
	if err := cl.Delete(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	if err := reconcileOnce(); err != nil {
		t.Fatalf("a deleted Secret: %v", err)
	}
	if now, _ := s.GetCertificate(&tls.ClientHelloInfo{}); now != served {
		t.Error("the last good certificate is no longer served")
	}
	if changes != 4 {
		t.Errorf("%d changes passed on, want 4", changes)
	}
}
