package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/certs"
)

// servedSerial dials the webhook and returns the serial number of the certificate it serves.
func servedSerial(t *testing.T) string {
	t.Helper()
	host := strings.TrimPrefix(strings.Split(e2e.webhookURL, "/validate")[0], "https://")
	conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the serial only
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestCertificateRotationUnderTraffic renews the serving certificate while reviews flow through
// the API server, and expects no failed request and the new certificate served without restart.
func TestCertificateRotationUnderTraffic(t *testing.T) {
	ns := newNamespace(t, nil)
	before := servedSerial(t)

	ctx, stop := context.WithCancel(t.Context())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				pod := testPod(fmt.Sprintf("traffic-%d-%d", w, i), "nginx:1.27")
				pod.Namespace = ns
				// Dry-run creates go through the webhook (sideEffects: None) and store nothing.
				if err := e2e.client.Create(context.Background(), pod, client.DryRunAll); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)

	// Force a renewal: drop the serving certificate from the Secret, as if it had expired. The
	// leader issues a new one from the same CA, and every replica serves it from memory.
	var secret corev1.Secret
	key := client.ObjectKey{Namespace: systemNamespace, Name: "portcullis-webhook-tls"}
	if err := e2e.client.Get(ctx, key, &secret); err != nil {
		t.Fatal(err)
	}
	caBefore := string(secret.Data[certs.KeyCABundle])
	delete(secret.Data, certs.KeyTLSCert)
	delete(secret.Data, certs.KeyTLSKey)
	if err := e2e.client.Update(ctx, &secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		if got := servedSerial(t); got == before {
			return fmt.Errorf("still serving serial %s", got)
		}
		return nil
	})
	time.Sleep(time.Second) // more traffic on the new certificate
	stop()
	wg.Wait()

	if err := e2e.client.Get(t.Context(), key, &secret); err != nil {
		t.Fatal(err)
	}
	if string(secret.Data[certs.KeyCABundle]) != caBefore {
		t.Error("renewing the serving certificate changed the CA bundle")
	}
	t.Logf("%d reviews succeeded, %d failed during the rotation", ok.Load(), failed.Load())
	if failed.Load() > 0 || ok.Load() < 10 {
		t.Fatalf("%d failed, %d succeeded; first error: %v", failed.Load(), ok.Load(), firstErr.Load())
	}
}

// TestCABundleRestored: a webhook configuration re-applied without caBundle gets it back, and
// the server's patch leaves every other field manager's entry in place.
func TestCABundleRestored(t *testing.T) {
	managers := func() map[string]bool {
		var cfg admissionregistrationv1.ValidatingWebhookConfiguration
		if err := e2e.client.Get(t.Context(), client.ObjectKey{Name: "portcullis-validating"}, &cfg); err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, f := range cfg.ManagedFields {
			m[f.Manager+"/"+string(f.Operation)] = true
		}
		return m
	}
	// A field manager of its own: kubectl-label, owning the label.
	if out, _, err := kubectl(t, "", "label", "validatingwebhookconfiguration", "portcullis-validating", "e2e.portcullis.dev/managed=yes"); err != nil {
		t.Fatalf("kubectl label: %v %s", err, out)
	}
	t.Cleanup(func() {
		_, _, _ = e2e.cluster.Kubectl(context.Background(), "", "label", "validatingwebhookconfiguration", "portcullis-validating", "e2e.portcullis.dev/managed-")
	})
	before := managers()
	out, _, err := kubectl(t, "", "patch", "validatingwebhookconfiguration", "portcullis-validating", "--type=json",
		"-p", `[{"op":"remove","path":"/webhooks/0/clientConfig/caBundle"}]`)
	if err != nil {
		t.Fatalf("kubectl patch: %v %s", err, out)
	}
	eventually(t, 10*time.Second, func() error { return readyOnce(t.Context()) })
	after := managers()
	for m := range before {
		if !after[m] {
			t.Errorf("the field manager %s lost its entry once the server restored the caBundle: before %v, after %v", m, before, after)
		}
	}
	if !before["kubectl-label/Update"] {
		t.Errorf("kubectl label left no field manager's entry: %v", before)
	}
}

// TestTLSSettings: TLS 1.2 at least, and HTTP/1.1 only unless --enable-http2.
func TestTLSSettings(t *testing.T) {
	host := strings.TrimPrefix(strings.Split(e2e.webhookURL, "/validate")[0], "https://")
	if conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil { //nolint:gosec // probing the server's minimum
		_ = conn.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // probing ALPN
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Errorf("negotiated %q: HTTP/2 must be off by default", p)
	}
}
