package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	gojson "github.com/goccy/go-json"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
//
// Every review is bounded: its memory by Budget (reserved before the body is read, and again
// before it is decoded), its time by Timeout (from its arrival: waiting for the budget, reading,
// decoding, evaluating), its nesting by MaxDepth.
type ReviewHandler struct {
	Handler admission.Handler
	// Budget bounds the memory of the reviews in flight; nil: unbounded.
	Budget *Budget
	// Timeout bounds one review from its arrival; zero: none.
	Timeout time.Duration
}

// Gater is a handler that may make a review wait for its namespace before the memory its object's
// decoding takes is reserved (the TenantGate): waiting reviews then hold only their body's share
// of the budget. It returns the release, or why the review is turned away.
type Gater interface {
	Gate(ctx context.Context, namespace string) (release func(), why string)
}

// Refuser answers a review that is too large or too complex to evaluate; a handler that is not
// one denies it.
type Refuser interface {
	Refuse(req admission.Request, why string, code int32) admission.Response
}

func (h *ReviewHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s: want POST", r.Method))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q: want application/json", r.Header.Get("Content-Type")))
		return
	}
	if r.ContentLength > MaxReviewBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the review exceeds %d bytes", MaxReviewBytes))
		return
	}
	ctx := r.Context()
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	size := r.ContentLength
	if size < 0 {
		size = MaxReviewBytes
	}
	// The body and the envelope's copy of the object, before anything is read.
	res, err := h.Budget.reserve(ctx, 2*size)
	if err != nil {
		tooBusy(w)
		return
	}
	defer res.release()
	body, err := readBody(r.Body, r.ContentLength)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the review exceeds %d bytes", MaxReviewBytes))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("reading the review: %w", err))
		return
	}
	s := scanShape(body)
	if why := s.check(len(body), h.Budget); why != "" {
		h.refuse(ctx, w, body, "is too large to evaluate: "+why, http.StatusRequestEntityTooLarge)
		return
	}
	// The envelope (its copy of the object is within the body's reservation), then the gate,
	// then the memory the object's decoding takes.
	var review admissionv1.AdmissionReview
	if err := gojson.Unmarshal(body, &review); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("decoding the review: %w", err))
		return
	}
	if !isReview(review.TypeMeta) || review.Request == nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want an %s AdmissionReview with a request, got %s %s", admissionv1.SchemeGroupVersion, review.APIVersion, review.Kind))
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	if g, ok := h.Handler.(Gater); ok {
		release, why := g.Gate(ctx, req.Namespace)
		if why != "" {
			h.refuseRequest(ctx, w, review.TypeMeta, req, why, http.StatusTooManyRequests)
			return
		}
		defer release()
	}
	if err := res.grow(ctx, s.decodeCost(len(body))); err != nil {
		tooBusy(w)
		return
	}
	h.respond(ctx, w, review.TypeMeta, req, h.handle(ctx, req))
}

func isReview(tm metav1.TypeMeta) bool {
	return tm.APIVersion == admissionv1.SchemeGroupVersion.String() && tm.Kind == "AdmissionReview"
}

// readBody reads a body of the announced length (or up to MaxReviewBytes when unannounced) into
// one buffer of its size.
func readBody(r io.Reader, announced int64) ([]byte, error) {
	limited := http.MaxBytesReader(nil, io.NopCloser(r), MaxReviewBytes)
	if announced < 0 {
		return io.ReadAll(limited)
	}
	buf := make([]byte, announced)
	if _, err := io.ReadFull(limited, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// refuse answers a review that is not decoded (too large or complex, or its namespace busy), after
// reading only its envelope's identity; why completes "Kind "ns/name" …".
func (h *ReviewHandler) refuse(ctx context.Context, w http.ResponseWriter, body []byte, why string, code int32) {
	var envelope struct {
		metav1.TypeMeta
		Request *struct {
			UID       types.UID               `json:"uid"`
			Kind      metav1.GroupVersionKind `json:"kind"`
			Namespace string                  `json:"namespace"`
			Name      string                  `json:"name"`
			Operation admissionv1.Operation   `json:"operation"`
		} `json:"request"`
	}
	if err := gojson.Unmarshal(body, &envelope); err != nil || !isReview(envelope.TypeMeta) || envelope.Request == nil {
		writeError(w, int(code), fmt.Errorf("the review %s", why))
		return
	}
	e := envelope.Request
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: e.UID, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name, Operation: e.Operation}}
	h.refuseRequest(ctx, w, envelope.TypeMeta, req, why, code)
}

// refuseRequest answers req without evaluating it: why completes "Kind "ns/name" …"; a handler
// that is a Refuser says what that means (denied, or admitted with a warning).
func (h *ReviewHandler) refuseRequest(ctx context.Context, w http.ResponseWriter, tm metav1.TypeMeta, req admission.Request, why string, code int32) {
	why = fmt.Sprintf("portcullis: %s %q %s", req.Kind.Kind, objectName(req), why)
	var resp admission.Response
	if rf, ok := h.Handler.(Refuser); ok {
		resp = rf.Refuse(req, why, code)
	} else {
		resp = admission.Denied(why)
		resp.Result.Code = code
	}
	h.respond(ctx, w, tm, req, resp)
}

func (h *ReviewHandler) respond(ctx context.Context, w http.ResponseWriter, tm metav1.TypeMeta, req admission.Request, resp admission.Response) {
	boundResponse(&resp)
	if err := resp.Complete(req); err != nil { // UID, status code, JSON patch
		writeError(w, http.StatusInternalServerError, fmt.Errorf("encoding the patch: %w", err))
		return
	}
	out, err := gojson.Marshal(admissionv1.AdmissionReview{TypeMeta: tm, Response: &resp.AdmissionResponse})
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("encoding the response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(out); err != nil {
		log.FromContext(ctx).V(1).Info("writing the response", "error", err.Error())
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

// tooBusy answers a review that could not get its share of the memory budget before its
// deadline: the API server applies the webhook's failurePolicy.
func tooBusy(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(1))
	writeError(w, http.StatusTooManyRequests, errors.New("portcullis: too many reviews in flight (--max-review-memory)"))
}

// writeError answers a request that is not a usable review; the API server applies the
// webhook's failurePolicy.
func writeError(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}
