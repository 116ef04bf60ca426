package server

import (
	"reflect"
	"testing"
	"unsafe"

	gojson "github.com/goccy/go-json"
	admissionv1 "k8s.io/api/admission/v1"
)

// reviewBodies are envelopes decodeReview reads from the body and envelopes it must leave to the
// general decoding: keys in another case or written twice, escapes, objects that are not objects.
func reviewBodies(tb testing.TB) []string {
	const head = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","name":"p","operation":"UPDATE","userInfo":{"username":"alice","groups":["g"]},"dryRun":true,"options":{"kind":"UpdateOptions"}`
	return []string{
		string(loadReview(tb)),
		head + `,"object":{"metadata":{"name":"p"}},"oldObject":{"metadata":{"name":"old"}}}}`,
		head + `,"object":{"a":1},"oldObject":null}}`,
		head + `,"object":null}}`,
		head + `}}`,
		head + `,"object":{"a":1},"object":{"b":2}}}`,       // twice: the decoder takes the last
		head + `,"Object":{"a":1}}}`,                        // the decoder matches any case
		head + `,"object":{"a":1},"OLDOBJECT":{"b":2}}}`,    // the same
		head + `,"\u006fbject":{"a":1}}}`,                   // an escaped key
		head + `,"object":"a string"}}`,                     // not an object
		head + `,"object":[1,2]}}`,                          // nor this
		head + `,"object":{"a":1}}, "Request":{"uid":"v"}}`, // the request twice
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		"{\n  \"request\": {\n    \"uid\": \"u\",\n    \"object\": {\"a\": [1, {\"b\": \"}\"}]}\n  }\n}",
		`{"request":{"object":{"a":1}`, // truncated
		`[]`,
		``,
	}
}

// TestDecodeReviewAgrees: decodeReview reads every review as decoding it whole does, error for
// error, and takes a plain review's objects from the body instead of copying them.
func TestDecodeReviewAgrees(t *testing.T) {
	for _, body := range reviewBodies(t) {
		want, wantErr := decodeWhole([]byte(body))
		got, err := decodeReview([]byte(body), noReserve)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%.80s: error %v, want %v", body, err, wantErr)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%.80s:\n got %+v\nwant %+v", body, got.Request, want.Request)
		}
	}
	body := loadReview(t)
	review, err := decodeReview(body, noReserve)
	if err != nil {
		t.Fatal(err)
	}
	raw := review.Request.Object.Raw
	start, end := uintptr(unsafe.Pointer(unsafe.SliceData(body))), uintptr(unsafe.Pointer(unsafe.SliceData(body)))+uintptr(len(body))
	if p := uintptr(unsafe.Pointer(unsafe.SliceData(raw))); len(raw) < 1000 || p < start || p >= end {
		t.Errorf("the object (%d bytes) is a copy, not the body's own bytes", len(raw))
	}
	if n := testing.AllocsPerRun(50, func() { _, _ = decodeReview(body, noReserve) }); n > 25 {
		t.Errorf("decoding the review's envelope allocates %v times", n)
	}
}

// noReserve is a memory budget without bound, for decodeReview.
func noReserve(int64) error { return nil }

// decodeWhole is the general decoding decodeReview must agree with.
func decodeWhole(body []byte) (admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	err := gojson.Unmarshal(body, &review)
	return review, err
}

// FuzzDecodeReview: on any body, decodeReview agrees with decoding the review whole.
func FuzzDecodeReview(f *testing.F) {
	for _, body := range reviewBodies(f) {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, wantErr := decodeWhole(body)
		got, err := decodeReview(body, noReserve)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nwant %+v", got.Request, want.Request)
		}
	})
}

// BenchmarkDecodeReview decodes the benchmark review's envelope: with its objects read from the
// body (what the server does), and whole, the objects copied (decodeReview's reference).
func BenchmarkDecodeReview(b *testing.B) {
	body := loadReview(b)
	for _, bb := range []struct {
		name   string
		decode func([]byte) (admissionv1.AdmissionReview, error)
	}{{"in-place", func(body []byte) (admissionv1.AdmissionReview, error) { return decodeReview(body, noReserve) }}, {"whole", decodeWhole}} {
		b.Run(bb.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bb.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
