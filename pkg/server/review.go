package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	gojson "github.com/goccy/go-json"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// MaxReviewBytes bounds a review's body: an object and its old version at the API server's 3 MiB
// request limit each, with room for the envelope.
const MaxReviewBytes = 7 << 20

// ReviewHandler serves admission.k8s.io/v1 AdmissionReviews for an admission.Handler. It does
// what controller-runtime's admission.Webhook does (bounded body, content type, UID, panic
// recovery) but decodes the review in one pass with a fast JSON decoder: the envelope was a
// third of a review's CPU. The object stays raw for the handler to decode once.
type ReviewHandler struct {
	Handler admission.Handler
}

func (h *ReviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s: want POST", r.Method))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: want application/json", ct))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxReviewBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("reading the review: %w", err))
		return
	}
	if len(body) > MaxReviewBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the review exceeds %d bytes", MaxReviewBytes))
		return
	}
	var review admissionv1.AdmissionReview
	if err := gojson.Unmarshal(body, &review); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decoding the review: %w", err))
		return
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" || review.Request == nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want an %s AdmissionReview with a request, got %s %s", admissionv1.SchemeGroupVersion, review.APIVersion, review.Kind))
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	resp := h.handle(r.Context(), req)
	if err := resp.Complete(req); err != nil { // UID, status code, JSON patch
		writeError(w, http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err))
		return
	}
	out, err := gojson.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: &resp.AdmissionResponse})
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("encoding the response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(out); err != nil {
		log.FromContext(r.Context()).V(1).Info("writing the response", "error", err.Error())
	}
}

// handle calls the handler, turning a panic into an error response.
func (h *ReviewHandler) handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if p := recover(); p != nil {
			log.FromContext(ctx).Error(fmt.Errorf("%v", p), "panic while handling a review", "uid", req.UID)
			resp = admission.Errored(http.StatusInternalServerError, errors.New("internal error while evaluating the review"))
		}
	}()
	return h.Handler.Handle(ctx, req)
}

// writeError answers a request that is not a usable review; the API server applies the
// webhook's failurePolicy.
func writeError(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}
