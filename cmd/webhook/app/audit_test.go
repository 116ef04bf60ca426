package app

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// TestPagesAreReadOverHTTP1: the scan's pages are read over HTTP/1.1, uncompressed, from an API
// server that offers HTTP/2 (as every API server does), so that the goroutine reading a page, on
// the scan's lowered thread, is the one that decrypts it; the configuration it is made from, the
// server's other clients', keeps HTTP/2.
func TestPagesAreReadOverHTTP1(t *testing.T) {
	var proto string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto = r.Proto
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{
		CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}}
	pages := pagesConfig(cfg)
	readOver := func(cfg *rest.Config) string {
		cfg = rest.CopyConfig(cfg)
		cfg.NegotiatedSerializer = pages.NegotiatedSerializer
		client, err := rest.UnversionedRESTClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		proto = ""
		if err := client.Get().AbsPath("/api/v1/pods").Do(t.Context()).Error(); err != nil {
			t.Fatal(err)
		}
		return proto
	}
	if got := readOver(cfg); got != "HTTP/2.0" {
		t.Fatalf("the server's own configuration reads over %s, want HTTP/2.0: the test server offers no HTTP/2", got)
	}
	if got := readOver(pages); got != "HTTP/1.1" {
		t.Errorf("the pages are read over %s, want HTTP/1.1", got)
	}
	if !pages.DisableCompression {
		t.Error("the pages are asked for compressed")
	}
}

// TestAuditGOGC: scans raise GOGC to --audit-gogc unless GOGC is set in the environment, and
// the flag is bounded.
func TestAuditGOGC(t *testing.T) {
	o := NewOptions()
	if o.Audit.GOGC != 200 || scanGOGC(o.Audit.GOGC) != 200 {
		t.Fatalf("default: --audit-gogc %d, scans at %d; want 200", o.Audit.GOGC, scanGOGC(o.Audit.GOGC))
	}
	t.Setenv("GOGC", "50")
	if got := scanGOGC(200); got != 0 {
		t.Errorf("with GOGC=50 in the environment, scans set GOGC %d; want 0 (kept)", got)
	}
	for _, bad := range []int{-1, 1001} {
		o.Audit.GOGC = bad
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--audit-gogc=") {
			t.Errorf("--audit-gogc=%d: %v, want an error naming the flag", bad, err)
		}
	}
}

// TestKubeconfigHasNoClientRateLimit: out of the cluster (--kubeconfig), as in it, the server's
// clients have no client-side rate limit (client-go's default of 5 requests a second held the
// audit's scan to 5 pages a second); the API server's priority and fairness decides.
func TestKubeconfigHasNoClientRateLimit(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := rest.UnversionedRESTClientFor(pagesConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.QPS >= 0 || client.GetRateLimiter() != nil {
		t.Errorf("QPS %v, rate limiter %v: want none", cfg.QPS, client.GetRateLimiter())
	}
}
