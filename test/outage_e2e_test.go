package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/cmd/webhook/app"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// TestAPIServerOutage: the API server is killed with SIGKILL for 40 s. Every replica stays ready
// and keeps serving with its engine; none exits. Once the API server is back, a new policy is
// enforced by every replica, leader and follower alike, within 5 s, and the leader writes its
// status again.
func TestAPIServerOutage(t *testing.T) {
	f := startFleet(t, 2)
	f.applyPolicy(teamPolicy)

	var notReady atomic.Int64
	var notReadySample atomic.Value
	watchCtx, stopWatch := context.WithCancel(t.Context())
	var watching sync.WaitGroup
	watching.Go(func() {
		for watchCtx.Err() == nil {
			for i, port := range f.probe {
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
				if err == nil {
					_ = resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					notReady.Add(1)
					notReadySample.Store(fmt.Sprintf("replica %d: %v %v", i, err, resp))
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	})

	restart, err := f.c.KillAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	downAt := time.Now()
	// Throughout the outage, every replica still judges with the engine it has.
	for time.Since(downAt) < 40*time.Second {
		for i := range f.procs {
			if got := f.review(t, i, nil); !strings.Contains(got, "[needs-team/team]") {
				t.Fatalf("replica %d during the outage: %s, want the team policy's denial", i, got)
			}
		}
		time.Sleep(2 * time.Second)
	}
	if err := restart(); err != nil {
		t.Fatal(err)
	}
	healthy := rest.CopyConfig(f.c.Config)
	rc, err := rest.RESTClientFor(withCodec(healthy))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() error {
		return rc.Get().AbsPath("/readyz").Do(t.Context()).Error()
	})
	backAt := time.Now()
	t.Logf("API server down for %s", backAt.Sub(downAt).Round(time.Millisecond))

	eventually(t, 20*time.Second, func() error {
		var p v1alpha1.ClusterPolicy
		if err := yaml.UnmarshalStrict([]byte(ownerPolicy), &p); err != nil {
			t.Fatal(err)
		}
		return f.client.Create(t.Context(), &p)
	})
	createdAt := time.Now()
	var wg sync.WaitGroup
	enforced := make([]time.Duration, len(f.procs))
	for i := range f.procs {
		wg.Go(func() {
			for time.Since(backAt) < 30*time.Second {
				if strings.Contains(f.review(t, i, map[string]string{"team": "a"}), "[needs-owner/owner]") {
					enforced[i] = time.Since(backAt)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			enforced[i] = -1
		})
	}
	wg.Wait()
	f.waitPolicyReady("needs-owner", 30*time.Second)
	statusAfter := time.Since(backAt)
	stopWatch()
	watching.Wait()

	t.Logf("policy created %s after the API server's return; enforced by each replica after %v; Ready in status after %s",
		createdAt.Sub(backAt).Round(time.Millisecond), enforced, statusAfter.Round(time.Millisecond))
	for i, d := range enforced {
		if d < 0 || d > 5*time.Second {
			t.Errorf("replica %d enforced the new policy %v after the API server's return, want within 5s (log: %s)", i, d, f.logs[i].Name())
		}
		if f.procs[i].Exited() {
			t.Errorf("replica %d exited (log: %s):\n%s", i, f.logs[i].Name(), f.tail(i))
		}
	}
	if n := notReady.Load(); n > 0 {
		t.Errorf("%d readiness probes failed through the outage, e.g. %v; want every replica ready", n, notReadySample.Load())
	}
}

func withCodec(cfg *rest.Config) *rest.Config {
	cfg.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	cfg.GroupVersion = &corev1.SchemeGroupVersion
	cfg.APIPath = "/api"
	return cfg
}

// podReview is an AdmissionReview of the creation of a Pod named probe in ns, with labels, as
// the API server sends it.
func podReview(t *testing.T, ns string, labels map[string]string) []byte {
	t.Helper()
	pod := corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}}}
	raw, err := json.Marshal(&pod)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(&admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID("probe"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: ns, Name: "probe",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// review posts a review of a Pod with labels straight to replica i and says what it answered:
// "allowed", "denied: " and the message, or the failure.
func (f *fleet) review(t *testing.T, i int, labels map[string]string) string {
	t.Helper()
	body := podReview(t, "default", labels)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // the replica's self-signed certificate
	resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", f.webhook[i], app.ValidatePath), "application/json", bytes.NewReader(body))
	if err != nil {
		return err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
		return fmt.Sprintf("status %d, undecodable answer (%v)", resp.StatusCode, err)
	}
	if out.Response.Allowed {
		return "allowed"
	}
	if out.Response.Result == nil {
		return "denied"
	}
	return "denied: " + out.Response.Result.Message
}
