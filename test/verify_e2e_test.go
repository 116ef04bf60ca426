package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
	"github.com/portcullis-dev/portcullis/test/cluster"
)

const imageDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - {name: app, image: '%[3]s'}
`

// TestVerifyImagesThroughTheAPIServer: a Deployment whose image is signed by the trusted key is
// admitted and stored pinned to the verified digest; an unsigned one is denied with the reason.
func TestVerifyImagesThroughTheAPIServer(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	key := verifytest.NewKeyPair(t)
	signed := reg.Push(t, "team/app:v1")
	verifytest.Sign(t, signed, key)
	reg.Push(t, "team/unsigned:v1")
	ns := newNamespace(t, nil)
	applyPolicy(t, signedImagesPolicy(ns, reg.Host, fmt.Sprintf("{publicKey: %q}", key.PublicKey)))
	defer deletePolicy(t, "signed-images")

	if _, stderr, err := kubectl(t, fmt.Sprintf(imageDeployment, "signed", ns, reg.Host+"/team/app:v1"), "apply", "-f", "-"); err != nil {
		t.Fatalf("the signed image was rejected: %v\n%s", err, stderr)
	}
	var d appsv1.Deployment
	if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "signed"}, &d); err != nil {
		t.Fatal(err)
	}
	digest := signed[strings.Index(signed, "@"):]
	if got, want := d.Spec.Template.Spec.Containers[0].Image, reg.Host+"/team/app:v1"+digest; got != want {
		t.Errorf("stored image %s, want it pinned: %s", got, want)
	}

	_, stderr, err := kubectl(t, fmt.Sprintf(imageDeployment, "unsigned", ns, reg.Host+"/team/unsigned:v1"), "apply", "-f", "-")
	want := fmt.Sprintf(`[signed-images/cosign] spec.template.spec.containers[0] ("app"): image %s/team/unsigned:v1: no signatures found`, reg.Host)
	if err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("unsigned: %v\n%s\nwant %s", err, stderr, want)
	}
	// A signature carrying a timestamp from a TSA the (public-good) root does not name, on which
	// cosign v2 crashes: denied, and the server lives on to judge what follows.
	stamped := reg.Push(t, "team/stamped:v1")
	verifytest.Sign(t, stamped, key, verifytest.Timestamped(verifytest.NewTSA(t)))
	_, stderr, err = kubectl(t, fmt.Sprintf(imageDeployment, "stamped", ns, reg.Host+"/team/stamped:v1"), "apply", "--dry-run=server", "-f", "-")
	if want := "the signature's RFC 3161 timestamp is not from a trusted timestamp authority"; err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("untrusted timestamp: %v\n%s\nwant %s", err, stderr, want)
	}
	// The same key from a Secret (secretRef) verifies the same way.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cosign-key", Namespace: systemNamespace}, Data: map[string][]byte{"cosign.pub": []byte(key.PublicKey)}}
	if err := e2e.client.Create(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e2e.client.Delete(context.Background(), secret) }()
	applyPolicy(t, signedImagesPolicy(ns, reg.Host, "{secretRef: {namespace: "+systemNamespace+", name: cosign-key}}"))
	if _, stderr, err := kubectl(t, fmt.Sprintf(imageDeployment, "from-secret", ns, reg.Host+"/team/app:v1"), "apply", "-f", "-"); err != nil {
		t.Fatalf("secretRef key: %v\n%s", err, stderr)
	}
	if _, _, err := kubectl(t, fmt.Sprintf(imageDeployment, "unsigned-2", ns, reg.Host+"/team/unsigned:v1"), "apply", "-f", "-"); err == nil {
		t.Error("secretRef key: the unsigned image was admitted")
	}
	// Rotating the key in the Secret takes effect without touching the policy: the image signed
	// by the old key is now denied.
	secret.Data["cosign.pub"] = []byte(verifytest.NewKeyPair(t).PublicKey)
	if err := e2e.client.Update(t.Context(), secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		_, stderr, err := kubectl(t, fmt.Sprintf(imageDeployment, "after-rotation", ns, reg.Host+"/team/app:v1"), "apply", "--dry-run=server", "-f", "-")
		switch {
		case err == nil:
			return errors.New("still admitted with the old key")
		case !strings.Contains(stderr, "signature does not match any trusted key"):
			return fmt.Errorf("denied for another reason: %w: %s", err, stderr)
		}
		return nil
	})

	m := scrapeMetrics(t)
	for _, want := range []string{`portcullis_image_verifications_total{check="signature",outcome="verified"}`, `portcullis_image_verifications_total{check="signature",outcome="unsigned"}`,
		`portcullis_image_verification_cache_lookups_total{result="hit"}`, `portcullis_registry_verification_duration_seconds_count`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// signedImagesPolicy requires images of the registry's team/ repositories in ns to be signed.
func signedImagesPolicy(ns, registry, key string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: signed-images}
spec:
  enforcement: Deny
  match: {kinds: [Pod], namespaces: [%s]}
  rules:
    - name: cosign
      verifyImages:
        images: ["%s/team/*"]
        ignoreTlog: true
        keys: [%s]
`, ns, registry, key)
}

// TestKeylessAttestationsAndImageVolumesThroughTheAPIServer: a ClusterPolicy trusting a private
// Fulcio (its TrustedRoot in a ConfigMap of portcullis-system) for one workflow identity, and
// requiring SLSA provenance from GitHub. An image volume is verified like a container image: an
// unsigned one is denied, naming the volume; a signed and attested one is stored pinned. A
// provenance from another builder is denied with the condition's message.
func TestKeylessAttestationsAndImageVolumesThroughTheAPIServer(t *testing.T) {
	const (
		issuer   = "https://token.actions.githubusercontent.com"
		workflow = "https://github.com/acme/app/.github/workflows/release.yaml@refs/heads/main"
		slsa     = "https://slsa.dev/provenance/v1"
	)
	reg := verifytest.NewRegistry(t)
	ca := verifytest.NewCA(t, "fulcio", true)
	signer := ca.Issue(t, verifytest.Cert{Subject: workflow, Issuer: issuer})
	good := reg.Push(t, "acme/data:v1")
	verifytest.SignWithCert(t, good, signer)
	verifytest.Attest(t, good, signer.KeyPair, &signer, slsa, verifytest.SLSAProvenance("https://github.com/actions/workflow@v1"), true)
	badBuilder := reg.Push(t, "acme/elsewhere:v1")
	verifytest.SignWithCert(t, badBuilder, signer)
	verifytest.Attest(t, badBuilder, signer.KeyPair, &signer, slsa, verifytest.SLSAProvenance("https://ci.example/builder"), false)
	reg.Push(t, "acme/unsigned:v1")

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "sigstore-root", Namespace: systemNamespace}, Data: map[string]string{"trusted_root.json": string(ca.TrustedRoot(t))}}
	if err := e2e.client.Create(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e2e.client.Delete(context.Background(), cm) }()
	ns := newNamespace(t, nil)
	applyPolicy(t, fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: keyless-provenance}
spec:
  enforcement: Deny
  match: {kinds: [Pod], namespaces: [%s]}
  rules:
    - name: provenance
      verifyImages:
        images: ["%s/acme/*"]
        keyless:
          - issuer: %s
            subjectRegExp: "^https://github\\.com/acme/.+"
        trustedRoot:
          configMapRef: {namespace: %s, name: sigstore-root}
        attestations:
          - predicateType: %s
            conditions:
              - expression: "predicate.buildDefinition.buildType.startsWith('https://github.com/')"
                message: provenance must come from GitHub Actions
`, ns, reg.Host, issuer, systemNamespace, slsa))
	defer deletePolicy(t, "keyless-provenance")

	const podWithVolume = `apiVersion: v1
kind: Pod
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  containers:
  - {name: app, image: registry.example/unrelated:v1, volumeMounts: [{name: data, mountPath: /data}]}
  volumes:
  - {name: data, image: {reference: '%[3]s'}}
`
	_, stderr, err := kubectl(t, fmt.Sprintf(podWithVolume, "unsigned", ns, reg.Host+"/acme/unsigned:v1"), "apply", "-f", "-")
	want := fmt.Sprintf(`[keyless-provenance/provenance] spec.volumes[0].image.reference ("data"): image %s/acme/unsigned:v1: no signatures found`, reg.Host)
	if err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("unsigned image volume: %v\n%s\nwant %s", err, stderr, want)
	}
	_, stderr, err = kubectl(t, fmt.Sprintf(podWithVolume, "elsewhere", ns, reg.Host+"/acme/elsewhere:v1"), "apply", "-f", "-")
	if want := "attestation https://slsa.dev/provenance/v1: keyless: provenance must come from GitHub Actions"; err == nil || !strings.Contains(stderr, want) {
		t.Fatalf("provenance from another builder: %v\n%s\nwant %s", err, stderr, want)
	}
	if _, stderr, err := kubectl(t, fmt.Sprintf(podWithVolume, "good", ns, reg.Host+"/acme/data:v1"), "apply", "-f", "-"); err != nil {
		t.Fatalf("the signed, attested image volume was rejected: %v\n%s", err, stderr)
	}
	var pod corev1.Pod
	if err := e2e.client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "good"}, &pod); err != nil {
		t.Fatal(err)
	}
	digest := good[strings.Index(good, "@"):]
	if got, want := pod.Spec.Volumes[0].Image.Reference, reg.Host+"/acme/data:v1"+digest; got != want {
		t.Errorf("stored image volume %s, want it pinned: %s", got, want)
	}
	m := scrapeMetrics(t)
	for _, want := range []string{`portcullis_image_verifications_total{check="attestation",outcome="verified"}`, `portcullis_image_verifications_total{check="attestation",outcome="untrusted"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestTrustedRootRefreshedThroughTUF: the real binary refreshes the default trusted root from
// a TUF mirror on loopback (--tuf-mirror, --tuf-root, as an air-gapped cluster would), so a
// keyless rule that names no trustedRoot trusts the CA only the refreshed root names.
func TestTrustedRootRefreshedThroughTUF(t *testing.T) {
	const issuer, workflow = "https://token.actions.githubusercontent.com", "https://github.com/acme/app/.github/workflows/release.yaml@refs/heads/main"
	reg := verifytest.NewRegistry(t)
	ca := verifytest.NewCA(t, "private-fulcio", true)
	good := reg.Push(t, "acme/app:v1")
	verifytest.SignWithCert(t, good, ca.Issue(t, verifytest.Cert{Subject: workflow, Issuer: issuer}))
	foreign := reg.Push(t, "acme/foreign:v1")
	verifytest.SignWithCert(t, foreign, verifytest.NewCA(t, "other", false).Issue(t, verifytest.Cert{Subject: workflow, Issuer: issuer}))
	repo := verifytest.NewTUFRepository(t, ca.TrustedRoot(t))
	rootFile := filepath.Join(t.TempDir(), "root.json")
	if err := os.WriteFile(rootFile, repo.Root, 0o600); err != nil {
		t.Fatal(err)
	}
	metricsPort, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f := startFleet(t, 1, "--tuf-mirror", repo.URL, "--tuf-root", rootFile,
		"--insecure-registries", "127.0.0.1", "--private-registries", "127.0.0.1",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort), "--metrics-secure=false")
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	eventually(t, 30*time.Second, func() error {
		if m := scrapePlain(t, metricsURL); !strings.Contains(m, `portcullis_trusted_root_refreshes_total{outcome="success"}`) {
			return errors.New("no successful trusted root refresh yet")
		}
		return nil
	})
	f.applyPolicy(fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: keyless-default-root}
spec:
  enforcement: Deny
  match: {kinds: [Pod]}
  rules:
    - name: signed
      verifyImages:
        images: ["%s/acme/*"]
        mutateDigest: false
        keyless:
          - {issuer: %s, subject: %s}
`, reg.Host, issuer, workflow))
	pod := func(name, image string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}}}
	}
	if err := f.client.Create(t.Context(), pod("good", good), client.DryRunAll); err != nil {
		t.Fatalf("an image signed under the refreshed root was denied: %v", err)
	}
	err = f.client.Create(t.Context(), pod("foreign", foreign), client.DryRunAll)
	if want := "keyless: the certificate does not chain to a trusted certificate authority"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("an image signed by another CA: %v; want a denial containing %q", err, want)
	}
	if m := scrapePlain(t, metricsURL); !strings.Contains(m, "portcullis_trusted_root_last_refresh_success_timestamp_seconds 1") {
		t.Errorf("the last refresh is not dated:\n%s", grepLines(m, "portcullis_trusted_root"))
	}
}

// grepLines returns the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
