package certs

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// TestRotatorKick: with checks an hour apart, a Secret that loses its certificate is repaired as
// soon as the rotator is kicked (by the Source, which watches the Secret), not an hour later.
func TestRotatorKick(t *testing.T) {
	cl, key := fakeSecrets(t)
	r := &Rotator{Client: cl, Reader: cl, Secret: key, DNSNames: []string{"portcullis-webhook.portcullis-system.svc"},
		Lifetimes: Lifetimes{Leaf: 90 * 24 * time.Hour, CA: 10 * 365 * 24 * time.Hour}, Interval: time.Hour}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { _ = r.Start(ctx); close(done) }()
	crt := func() []byte {
		var s corev1.Secret
		if err := cl.Get(t.Context(), key, &s); err != nil {
			return nil
		}
		return s.Data[KeyTLSCert]
	}
	waitFor := func(what string, f func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !f(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s", what)
			}
		}
	}
	waitFor("the Secret is created", func() bool { return crt() != nil })
	var s corev1.Secret
	if err := cl.Get(t.Context(), key, &s); err != nil {
		t.Fatal(err)
	}
	delete(s.Data, KeyTLSCert)
	if err := cl.Update(t.Context(), &s); err != nil {
		t.Fatal(err)
	}
	r.Kick()
	waitFor("tls.crt restored after a kick", func() bool { return crt() != nil })
	if err := cl.Delete(t.Context(), &corev1.Secret{ObjectMeta: s.ObjectMeta}); err != nil {
		t.Fatal(err)
	}
	r.Kick()
	r.Kick() // kicks never block
	waitFor("the Secret recreated after a kick", func() bool { return crt() != nil })
	cancel()
	<-done
}

// fakeSecrets is a fake client for Secrets, and the name of the serving certificate's Secret.
func fakeSecrets(t *testing.T) (client.Client, types.NamespacedName) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).Build(), types.NamespacedName{Namespace: "portcullis-system", Name: "portcullis-webhook-tls"}
}
