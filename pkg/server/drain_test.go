package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/transport"
)

// testServingCert is a self-signed certificate for 127.0.0.1.
func testServingCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestWebhookServerCertificateAndDrain: the server listens only once its certificate is loaded;
// told to stop, it turns not ready, keeps accepting for the lame-duck period, answers the review
// in flight on its own time, and only then refuses connections.
func TestWebhookServerCertificateAndDrain(t *testing.T) {
	cert := testServingCert(t)
	var loaded atomic.Bool
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if !loaded.Load() {
			return nil, errors.New("no certificate yet")
		}
		return &cert, nil
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	o := DefaultWebhookServerOptions
	o.Host, o.Port, o.TLSConfig, o.LameDuck, o.ShutdownTimeout = "127.0.0.1", port, tlsConfig, 600*time.Millisecond, 5*time.Second
	s := NewWebhookServer(o)
	s.Register("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Second):
			_, _ = fmt.Fprint(w, "answered")
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
		}
	}))
	s.Register("/fast", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "answered") }))
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Start(ctx) }()

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	time.Sleep(300 * time.Millisecond)
	if c, err := net.Dial("tcp", addr); err == nil {
		_ = c.Close()
		t.Fatal("the server listened before its certificate was loaded")
	}
	if s.ReadyChecker()(nil) == nil {
		t.Error("ready before listening")
	}
	loaded.Store(true)
	client := func() *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConns: 1,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // a test certificate
	}
	// get makes a review; when the server is stopping, the answer must close the connection,
	// so that the client opens its next one to a replica that stays.
	get := func(path string, wantClose bool) error {
		resp, err := client().Get("https://" + addr + path)
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		if resp.Close != wantClose {
			return fmt.Errorf("Connection: close is %t, want %t", resp.Close, wantClose)
		}
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.ReadyChecker()(nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("not ready once the certificate was loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := get("/fast", false); err != nil {
		t.Fatalf("a review before stopping: %v", err)
	}
	inFlight := make(chan error, 1)
	go func() { inFlight <- get("/slow", true) }()
	time.Sleep(100 * time.Millisecond) // the review is in flight
	stop()
	time.Sleep(50 * time.Millisecond)
	if s.ReadyChecker()(nil) == nil {
		t.Error("still ready while stopping")
	}
	if err := get("/fast", true); err != nil {
		t.Errorf("a review in the lame-duck period: %v", err)
	}
	if err := <-inFlight; err != nil {
		t.Errorf("the review in flight was not answered: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		_ = c.Close()
		t.Error("still accepting after the drain")
	}
}

// TestIdleTimeoutOutlastsTheAPIServers: the server keeps an idle connection open longer than
// the API server's client does (client-go's transport, which the API server's webhook client is
// built on), so that the client closes it first. Were the server to close first, a review the
// API server sent on the connection as it closed would fail (a POST is not retried), and
// failurePolicy would decide the object.
func TestIdleTimeoutOutlastsTheAPIServers(t *testing.T) {
	rt, err := transport.New(&transport.Config{TLS: transport.TLSConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	for w, ok := rt.(utilnet.RoundTripperWrapper); ok; w, ok = rt.(utilnet.RoundTripperWrapper) {
		rt = w.WrappedRoundTripper()
	}
	ht, ok := rt.(*http.Transport)
	if !ok {
		t.Fatalf("client-go's transport is a %T, want an *http.Transport", rt)
	}
	const margin = 10 * time.Second // the client's clock starts after the server's, a round trip later
	if ht.IdleConnTimeout == 0 || DefaultWebhookServerOptions.IdleTimeout < ht.IdleConnTimeout+margin {
		t.Errorf("the server closes a connection idle for %v; the API server keeps one %v: want at least %v more",
			DefaultWebhookServerOptions.IdleTimeout, ht.IdleConnTimeout, margin)
	}
}
