package policies

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	gojson "github.com/goccy/go-json"
	"github.com/goccy/go-json/jsontext"
	jsonv2 "github.com/goccy/go-json/v2"
	sigsjson "sigs.k8s.io/json"
)

// The strict decoding of what the API server has not seen (the CLI's manifests, policies):
// names matched case-sensitively, and an unknown or duplicate name refused, as the API server's
// own strict decoding (sigs.k8s.io/json) does. That decoder is encoding/json's, reporting every
// fault with its field path; on a 7 KB Pod it takes two and a half times what a decoder with
// the same rules built in takes, goccy's implementation of the JSON v2 semantics configured as
// below (BenchmarkDecodePodStrict: 131 against 54 µs). So a document goes through the fast one
// first, and only when it refuses the document (any fault at all) through sigs.k8s.io/json,
// which says what is wrong in the words it always did. TestStrictDecodersAgree and
// FuzzStrictDecodersAgree hold the two equal on what the fast one accepts.
var strictV2 = jsonv2.JoinOptions(
	gojson.DefaultOptionsV1(),               // encoding/json's semantics (methods, nulls, numbers, bytes)...
	jsonv2.MatchCaseInsensitiveNames(false), // ...but names exactly as written,
	jsonv2.RejectUnknownMembers(true),       // no name the type lacks,
	jsontext.AllowDuplicateNames(false),     // none twice,
	jsontext.AllowInvalidUTF8(false),        // and no invalid UTF-8, which encoding/json replaces.
	// Its errors are never shown (sigs.k8s.io/json's are), so the input is not checked whole
	// before it is decoded, as encoding/json's errors need: 10 µs a Pod.
	gojson.ReportErrorsWithLegacySemantics(false),
)

// unmarshalStrict decodes data into obj, a pointer to a new object, as strictly as
// sigs.k8s.io/json's UnmarshalStrict with duplicate and unknown fields disallowed, and with its
// error.
func unmarshalStrict(data []byte, obj any) error {
	if fastStrict(reflect.TypeOf(obj)) && unmarshalV2(data, obj) {
		return nil
	}
	return unmarshalSigsStrict(data, obj)
}

// unmarshalSigsStrict is sigs.k8s.io/json's strict decoding, every fault in its error.
func unmarshalSigsStrict(data []byte, obj any) error {
	strictErrs, err := sigsjson.UnmarshalStrict(data, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("strict decoding: %s", strings.Join(msgs, "; "))
	}
	return nil
}

// unmarshalV2 is whether the fast decoder accepted data into obj; when it did not, obj is made
// new again for the other.
func unmarshalV2(data []byte, obj any) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
		if !ok {
			reflect.ValueOf(obj).Elem().SetZero()
		}
	}()
	return jsonv2.Unmarshal(data, obj, strictV2) == nil
}

// fastStricts caches fastStrict by type.
var fastStricts sync.Map // reflect.Type → bool

// fastStrict is whether the fast decoder decodes a pointer of type t as sigs.k8s.io/json does
// whenever it accepts the document: whether nothing in it is an interface, whose numbers
// sigs.k8s.io/json reads as int64 where encoding/json's semantics read float64, or decoded
// through encoding.TextUnmarshaler alone or a `,string` field, which the API's types do not use
// and nothing tests. A type with an UnmarshalJSON method decodes itself, the same way in both.
func fastStrict(t reflect.Type) bool {
	if v, ok := fastStricts.Load(t); ok {
		return v.(bool)
	}
	ok := plainForStrict(t, map[reflect.Type]bool{})
	fastStricts.Store(t, ok)
	return ok
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func plainForStrict(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return true // a recursive type: its first visit decides
	}
	seen[t] = true
	p := reflect.PointerTo(t)
	switch {
	case t.Implements(jsonUnmarshaler) || p.Implements(jsonUnmarshaler):
		return true
	case t.Implements(textUnmarshaler) || p.Implements(textUnmarshaler):
		return false
	}
	switch t.Kind() {
	case reflect.Interface, reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return plainForStrict(t.Elem(), seen)
	case reflect.Map:
		return t.Key().Kind() == reflect.String && plainForStrict(t.Key(), seen) && plainForStrict(t.Elem(), seen)
	case reflect.Struct:
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			if tag == "-" || !f.IsExported() && !f.Anonymous {
				continue
			}
			if strings.Contains(tag, ",string") || !plainForStrict(f.Type, seen) {
				return false
			}
		}
	}
	return true
}
