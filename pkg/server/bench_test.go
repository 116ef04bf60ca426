package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/source"
)

// loadReview is the load harness's review: the ~7 KB benchmark Pod as the API server sends it.
func loadReview(tb testing.TB) []byte {
	tb.Helper()
	raw, err := os.ReadFile("../policies/testdata/bench/pod.json")
	if err != nil {
		tb.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		tb.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("3f2a6b0e-6d3c-4b8a-9c1e-2f7d8a9b0c1d"), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Name: "checkout", Namespace: "shop",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: compact.Bytes()},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return body
}

// loadEngine compiles the load harness's policy set (test/load/policies).
func loadEngine(tb testing.TB) *policies.Engine {
	tb.Helper()
	e, err := manifest.LoadEngine([]string{"../../test/load/policies"}, nil, time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

type allowAll struct{}

func (allowAll) Handle(context.Context, admission.Request) admission.Response {
	return admission.Allowed("")
}

func benchServe(b *testing.B, h http.Handler) {
	body := loadReview(b)
	serve := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(serve().Body.Bytes(), &rv); err != nil || rv.Response == nil || !rv.Response.Allowed || len(rv.Response.Warnings) > 0 {
		b.Fatalf("the review was not simply allowed: %v %+v", err, rv.Response)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		serve()
	}
}

// BenchmarkServeNoop is the floor: the HTTP entry point with a handler that admits everything.
func BenchmarkServeNoop(b *testing.B) {
	benchServe(b, &ReviewHandler{Handler: allowAll{}})
}

// BenchmarkServeValidate is the validating webhook's server CPU per review, without the
// network: the benchmark policy set of test/load/policies (PSS restricted, resources, labels, 20 CEL rules).
func BenchmarkServeValidate(b *testing.B) {
	engines := &source.EngineHolder{}
	engines.Store(loadEngine(b))
	v := &Validator{Config{Engines: engines, Decoder: policies.NewDecoder(false).SharingInput(), Metrics: metrics.New(prometheus.NewRegistry()), Timeout: time.Second}}
	benchServe(b, &ReviewHandler{Handler: v})
}
