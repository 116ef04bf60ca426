package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	gojson "github.com/goccy/go-json"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/internal/jsonscan"
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
	// The body, before anything is read.
	res, err := h.Budget.reserve(ctx, size)
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
	// The envelope (its objects read in place; copied, within a reservation grown for them, when
	// it is decoded the general way), then the gate, then the memory the object's decoding takes.
	// A review waiting at the gate holds its body's share of the budget only.
	noRoom := false
	review, err := decodeReview(body, func(copied int64) error {
		err := res.grow(ctx, int64(len(body))+copied)
		noRoom = err != nil
		return err
	})
	if noRoom {
		tooBusy(w)
		return
	}
	if err != nil {
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

// reviewEnvelope is an AdmissionReview whose request's object and oldObject the decoder skips:
// decodeReview takes them from the body instead. Decoded as RawExtensions they would be copied
// twice (the decoder copies what it hands to an UnmarshalJSON, which copies it again): two
// copies of the largest part of every review.
type reviewEnvelope struct {
	metav1.TypeMeta
	Request *struct {
		admissionv1.AdmissionRequest
		Object    struct{} `json:"object"`    // shadows AdmissionRequest's
		OldObject struct{} `json:"oldObject"` // shadows AdmissionRequest's
	} `json:"request"`
}

// decodeReview decodes an AdmissionReview; its request's object and oldObject are the body's own
// bytes, which the review must not outlive. An envelope decoded the general way copies them:
// reserve is first called with the bytes that may take, and its error is returned.
func decodeReview(body []byte, reserve func(copied int64) error) (admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	object, oldObject, ok := reviewObjects(body)
	if !ok {
		// An envelope that is not plain enough to read the objects' bytes from: the general
		// way, which copies them (twice: the decoder, then RawExtension), and says what is
		// wrong with it.
		if err := reserve(2 * int64(len(body))); err != nil {
			return review, err
		}
		err := gojson.Unmarshal(body, &review)
		return review, err
	}
	var envelope reviewEnvelope
	if err := gojson.Unmarshal(body, &envelope); err != nil {
		return review, err
	}
	review.TypeMeta = envelope.TypeMeta
	if envelope.Request != nil {
		review.Request = &envelope.Request.AdmissionRequest
		review.Request.Object.Raw, review.Request.OldObject.Raw = object, oldObject
	}
	return review, nil
}

// reviewObjects finds the bytes of a review's request.object and request.oldObject (nil when
// absent or null), as the decoder would read them, in one pass over the body. It returns false
// when it cannot be sure of that: a key written twice, or in another case (the decoder matches
// keys regardless of case), or with an escape; or an object that is not a JSON object.
func reviewObjects(body []byte) (object, oldObject []byte, ok bool) {
	requests, objects, oldObjects := 0, 0, 0
	end := jsonscan.Walk(body, 0, func(key []byte, at int) int {
		if !strings.EqualFold(string(key), "request") {
			return jsonscan.ValueEnd(body, at)
		}
		requests++
		if string(key) != "request" || at == len(body) || body[at] != '{' {
			requests = 2 // not plain, or null, or not an object: the general way says
			return jsonscan.ValueEnd(body, at)
		}
		return jsonscan.Walk(body, at, func(key []byte, at int) int {
			end := jsonscan.ValueEnd(body, at)
			switch k := string(key); {
			case end < 0:
			case k == "object":
				object, objects = body[at:end], objects+1
			case k == "oldObject":
				oldObject, oldObjects = body[at:end], oldObjects+1
			case strings.EqualFold(k, "object") || strings.EqualFold(k, "oldObject"):
				objects = 2
			}
			return end
		})
	})
	if end < 0 || jsonscan.Space(body, end) != len(body) || requests > 1 || objects > 1 || oldObjects > 1 {
		return nil, nil, false
	}
	var objectOK, oldObjectOK bool
	object, objectOK = rawObject(object)
	oldObject, oldObjectOK = rawObject(oldObject)
	return object, oldObject, objectOK && oldObjectOK
}

// rawObject is a member's value as a RawExtension holds it: nil for null or absent; false when
// it is not a JSON object.
func rawObject(value []byte) ([]byte, bool) {
	switch {
	case value == nil, string(value) == "null":
		return nil, true
	case value[0] == '{':
		return value, true
	}
	return nil, false
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
