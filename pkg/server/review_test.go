package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// TestReviewDecodingAgrees: the fast decoder reads a review exactly as encoding/json does.
func TestReviewDecodingAgrees(t *testing.T) {
	full := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "u-1", Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Resource: metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, SubResource: "scale",
			RequestKind: &metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, Name: "web", Namespace: "shop",
			Operation: admissionv1.Update,
			UserInfo:  authenticationv1.UserInfo{Username: "alice", UID: "1", Groups: []string{"devs"}, Extra: map[string]authenticationv1.ExtraValue{"scopes": {"a", "b"}}},
			Object:    runtime.RawExtension{Raw: []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"replicas":3}}`)},
			OldObject: runtime.RawExtension{Raw: []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":1}}`)},
			DryRun:    ptr.To(true),
			Options:   runtime.RawExtension{Raw: []byte(`{"apiVersion":"meta.k8s.io/v1","kind":"UpdateOptions","fieldManager":"kubectl"}`)},
		},
	}
	for _, body := range [][]byte{mustMarshal(t, full), loadReview(t)} {
		var std, fast admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatal(err)
		}
		if err := gojson.Unmarshal(body, &fast); err != nil {
			t.Fatal(err)
		}
		if !equality.Semantic.DeepEqual(std, fast) {
			t.Errorf("the decoders disagree:\nstd  %+v\nfast %+v", std.Request, fast.Request)
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type panicking struct{}

func (panicking) Handle(context.Context, admission.Request) admission.Response { panic("boom") }

func TestReviewHandler(t *testing.T) {
	review := loadReview(t)
	tests := []struct {
		name        string
		handler     admission.Handler
		method, ct  string
		body        []byte
		code        int
		allowed     bool
		wantMessage string
	}{
		{"allowed, UID echoed", allowAll{}, http.MethodPost, "application/json", review, http.StatusOK, true, ""},
		{"panic becomes an error response", panicking{}, http.MethodPost, "application/json", review, http.StatusOK, false, "internal error"},
		{"GET", allowAll{}, http.MethodGet, "application/json", review, http.StatusMethodNotAllowed, false, ""},
		{"wrong content type", allowAll{}, http.MethodPost, "text/plain", review, http.StatusUnsupportedMediaType, false, ""},
		{"not JSON", allowAll{}, http.MethodPost, "application/json", []byte("{"), http.StatusBadRequest, false, ""},
		{"v1beta1", allowAll{}, http.MethodPost, "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`), http.StatusBadRequest, false, ""},
		{"no request", allowAll{}, http.MethodPost, "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), http.StatusBadRequest, false, ""},
		{"too large", allowAll{}, http.MethodPost, "application/json", bytes.Repeat([]byte(" "), MaxReviewBytes+1), http.StatusRequestEntityTooLarge, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/validate", bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", tt.ct)
			w := httptest.NewRecorder()
			(&ReviewHandler{Handler: tt.handler}).ServeHTTP(w, req)
			if w.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.code, w.Body)
			}
			if tt.code != http.StatusOK {
				return
			}
			var rv admissionv1.AdmissionReview
			if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil {
				t.Fatal(err)
			}
			if rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" || rv.Response == nil || rv.Response.UID != "3f2a6b0e-6d3c-4b8a-9c1e-2f7d8a9b0c1d" {
				t.Fatalf("response envelope: %s", w.Body)
			}
			if rv.Response.Allowed != tt.allowed || (tt.wantMessage != "" && !strings.Contains(rv.Response.Result.Message, tt.wantMessage)) {
				t.Errorf("response %+v", rv.Response)
			}
		})
	}
}
