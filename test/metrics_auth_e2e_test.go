package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// setupMetricsScraper applies the shipped RBAC, binds the shipped metrics-reader role to a
// scraper's ServiceAccount and keeps a token of it.
func setupMetricsScraper(ctx context.Context) error {
	if _, stderr, err := e2e.cluster.Kubectl(ctx, "", "apply", "-n", systemNamespace, "-f", "../manifests/base/rbac.yaml"); err != nil {
		return fmt.Errorf("applying the shipped RBAC: %w\n%s", err, stderr)
	}
	token, err := serviceAccountToken(ctx, "metrics-scraper")
	if err != nil {
		return err
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-metrics-scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "portcullis-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "metrics-scraper", Namespace: systemNamespace}},
	}
	if err := e2e.client.Create(ctx, binding); err != nil {
		return err
	}
	e2e.metricsToken = token
	return nil
}

// serviceAccountToken creates a ServiceAccount in the system namespace and returns a token of it.
func serviceAccountToken(ctx context.Context, name string) (string, error) {
	if err := e2e.client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: systemNamespace}}); err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(e2e.cluster.Config)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(systemNamespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of %s: %w", name, err)
	}
	return tr.Status.Token, nil
}

func getMetrics(token string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, e2e.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// The metrics certificate is self-signed, as Prometheus scrapes pods with insecure_skip_verify.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed, see above
	return client.Do(req)
}

// TestMetricsAuthentication: metrics are served over HTTPS to a scraper the API server
// authenticates and authorizes through the shipped role, and to nobody else.
func TestMetricsAuthentication(t *testing.T) {
	other, err := serviceAccountToken(t.Context(), "not-a-scraper")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token string
		code        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"bad token", "not-a-token", 0}, // 401, or 500 when the token review fails
		{"authenticated, not authorized", other, http.StatusForbidden},
		{"bound to portcullis-metrics-reader", e2e.metricsToken, http.StatusOK},
	} {
		resp, err := getMetrics(tc.token)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if (tc.code != 0 && resp.StatusCode != tc.code) || (tc.code == 0 && resp.StatusCode == http.StatusOK) {
			t.Errorf("%s: %s, want %d", tc.name, resp.Status, tc.code)
		}
		if served := strings.Contains(string(body), "portcullis_admission_reviews_total"); served != (tc.code == http.StatusOK) {
			t.Errorf("%s: metrics served=%v: %.80s", tc.name, served, body)
		}
	}
}
