package policies

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// strictKinds are the scheme's kinds the strict decoder reads, in a fixed order.
func strictKinds(t testing.TB) []schema.GroupVersionKind {
	t.Helper()
	var kinds []schema.GroupVersionKind
	for gvk := range NewDecoder(true).scheme.AllKnownTypes() {
		if gvk.Version != runtime.APIVersionInternal {
			kinds = append(kinds, gvk)
		}
	}
	slices.SortFunc(kinds, func(a, b schema.GroupVersionKind) int { return strings.Compare(a.String(), b.String()) })
	return kinds
}

// strictAgree decodes data into a new object of kind both ways, the fast decoder first with
// sigs.k8s.io/json after it (unmarshalStrict) and sigs.k8s.io/json alone, and fails unless
// both give the same error, or none and equal objects. It returns whether the fast decoder
// accepted data.
func strictAgree(t testing.TB, d *Decoder, where string, data []byte, kind schema.GroupVersionKind) bool {
	t.Helper()
	a, err := d.scheme.New(kind)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := d.scheme.New(kind)
	errA, errB := unmarshalStrict(data, a), unmarshalSigsStrict(data, b)
	switch {
	case (errA == nil) != (errB == nil) || errA != nil && errA.Error() != errB.Error():
		t.Errorf("%s as %s: error %v, sigs.k8s.io/json's %v", where, kind.Kind, errA, errB)
	case errA == nil && !reflect.DeepEqual(a, b):
		t.Errorf("%s as %s: decoded differently:\n fast %+v\n sigs %+v", where, kind.Kind, a, b)
	}
	c, _ := d.scheme.New(kind)
	return fastStrict(reflect.TypeOf(c)) && unmarshalV2(data, c)
}

// strictEdits are changes to make to a document where it holds the first string, to try the
// decoders on what manifests get wrong or write unusually: names in another case, twice or
// unknown, values of another type, numbers and strings at their edges, nulls, escapes, invalid
// UTF-8, and text after the document.
var strictEdits = [][2]string{
	{`"name":`, `"Name":`},
	{`"metadata":{`, `"metadata":{"name":"x","name":"y",`},
	{`"spec":{`, `"spec":{"bogus":1,`},
	{`"spec":{`, `"spec":{"containers":null,`},
	{`"labels":{`, `"labels":{"a":"b","a":"c",`},
	{`"labels":{`, `"labels":{"é\u00e9":"\ud83d\ude00","t":"a\/b\n\"c\""`},
	{`"labels":{`, `"labels":{"bad":"\ud800",`},
	{`"labels":{`, "\"labels\":{\"bad\":\"\xff\xfe\","},
	{`"labels":{`, "\"labels\":{\"ctl\":\"a\tb\","},
	{`"labels":{`, `"labels":{"n":1,`},
	{`"labels":{`, `"labels":{"n":null,`},
	{`"labels":{`, `"labels":null,"x":{`},
	{`"replicas":`, `"replicas":1.0,"x":`},
	{`"replicas":1`, `"replicas":1e0`},
	{`"replicas":1`, `"replicas":-0`},
	{`"replicas":1`, `"replicas":2147483648`},
	{`"replicas":1`, `"replicas":"1"`},
	{`"replicas":1`, `"replicas":null`},
	{`"replicas":1`, `"replicas":true`},
	{`"image":"`, `"image":1,"x":"`},
	{`"image":"`, `"image":null,"x":"`},
	{`"image":"`, `"image":"\u0000`},
	{`"containers":[`, `"containers":{},"x":[`},
	{`"containers":[`, `"containers":[null,`},
	{`"containers":[`, `"containers":[{"name":"a","NAME":"b"},`},
	{`"memory":"`, `"memory":1,"x":"`},
	{`"memory":"`, `"memory":null,"x":"`},
	{`"port":`, `"port":null,"x":`},
	{`"creationTimestamp":`, `"creationTimestamp":1,"x":`},
	{`"memory":"`, `"memory":"1.5Gi","cpu":"`},
	{`"memory":"`, `"memory":"1e3","x":"`},
	{`"memory":"`, `"memory":"-1","x":"`},
	{`"memory":"`, `"memory":"  1Mi","x":"`},
	{`"cpu":"`, `"cpu":0.5,"x":"`},
	{`"runAsUser":`, `"runAsUser":-1,"x":`},
	{`"runAsUser":`, `"runAsUser":9223372036854775808,"x":`},
	{`"runAsUser":`, `"runAsUser":1.5,"x":`},
	{`"privileged":`, `"privileged":"true","x":`},
	{`"privileged":`, `"privileged":0,"x":`},
	{`"creationTimestamp":`, `"creationTimestamp":"2026-12-06T10:00:00Z","x":`},
	{`"creationTimestamp":`, `"creationTimestamp":"yesterday","x":`},
	{`"creationTimestamp":`, `"creationTimestamp":"","x":`},
	{`"port":`, `"port":"http","x":`},
	{`"port":`, `"port":8080.5,"x":`},
	{`"data":{`, `"data":{"k":"\u00ff",`},
	{`"data":{`, `"data":{"k":"not base64!",`},
	{`"data":{`, `"data":{"k":"aGVs\nbG8=",`},
	{`"params":{`, `"params":{"n":1,"f":1.5,"big":12345678901234567890,`},
	{`"params":`, `"params":null,"x":`},
	{`"apiVersion":`, `"apiVersion":"v1","apiVersion":`},
	{`"kind":`, `"Kind":"x","kind":`},
}

// strictSeeds are kinds and fields the repository's documents lack: bytes in base64, an
// int-or-string, a quantity as a number, a time.
var strictSeeds = []string{
	`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"n","labels":{"a":"b"}},"type":"Opaque","data":{"k":"aGVsbG8=","e":""},"stringData":{"x":"y"}}`,
	`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","creationTimestamp":null},"data":{"a":"b"},"binaryData":{"bin":"AAEC"},"immutable":true}`,
	`{"apiVersion":"v1","kind":"Service","metadata":{"name":"svc"},"spec":{"ports":[{"name":"http","port":80,"targetPort":"http"},{"port":443,"targetPort":8443,"protocol":"TCP"}],"selector":{"app":"web"}}}`,
	`{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j","creationTimestamp":"2026-01-02T03:04:05Z"},"spec":{"backoffLimit":3,"activeDeadlineSeconds":60,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox","resources":{"limits":{"cpu":1,"memory":"64Mi"}}}]}}}}`,
	`{"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"l"},"spec":{"limits":[{"type":"Container","default":{"cpu":"500m"},"max":{"memory":1e9}}]}}`,
}

// strictCorpus is every object the package's tests read, with the repository's policies (the
// first originals of it), and each changed by every edit it has the string of; and ends of
// documents.
func strictCorpus(t testing.TB) (corpus [][]byte, originals int) {
	t.Helper()
	docs := corpusJSON(t)
	for _, doc := range yamlDocuments(t, "../../manifests/library/*/*.yaml", "../../examples/policies/*.yaml", "../../test/load/policies/*.yaml", "../../examples/*/*.yaml") {
		if js, err := yaml.YAMLToJSON(doc); err == nil && bytes.HasPrefix(js, []byte("{")) {
			docs = append(docs, js)
		}
	}
	for _, doc := range strictSeeds {
		docs = append(docs, []byte(doc))
	}
	out := slices.Clone(docs)
	for _, doc := range docs {
		for _, e := range strictEdits {
			if bytes.Contains(doc, []byte(e[0])) {
				out = append(out, bytes.Replace(doc, []byte(e[0]), []byte(e[1]), 1))
			}
		}
		out = append(out, append(slices.Clone(doc), " {}"...), append(slices.Clone(doc), " \n"...), doc[:len(doc)/2])
	}
	return out, len(docs)
}

// TestStrictDecodersAgree: on every document of strictCorpus, decoded as its own kind and as
// the kinds that share most of its fields, the fast strict decoder with sigs.k8s.io/json after
// it gives what sigs.k8s.io/json alone gives: the same error, word for word, or the same object.
// And the fast decoder does accept the repository's documents as they are.
func TestStrictDecodersAgree(t *testing.T) {
	d := NewDecoder(true)
	corpus, originals := strictCorpus(t)
	decoded, fast, valid, validFast := 0, 0, 0, 0
	for i, doc := range corpus {
		gvk, err := TypeMeta(doc)
		if err != nil || !d.scheme.Recognizes(gvk) {
			continue
		}
		kinds := []schema.GroupVersionKind{gvk}
		switch gvk.Kind { // a pod spec and a template where the document has the other
		case "Pod":
			kinds = append(kinds, schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
			kinds = append(kinds, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, schema.GroupVersionKind{Version: "v1", Kind: "PodTemplate"})
		}
		for _, k := range kinds {
			decoded++
			accepted := strictAgree(t, d, fmt.Sprintf("document %d (%.60s)", i, doc), doc, k)
			if accepted {
				fast++
			}
			if obj, _ := d.scheme.New(k); i < originals && k == gvk && unmarshalSigsStrict(doc, obj) == nil {
				valid++
				if accepted {
					validFast++
				}
			}
		}
	}
	t.Logf("%d decodings of %d documents; the fast decoder accepted %d, and %d of the %d valid documents as they are", decoded, len(corpus), fast, validFast, valid)
	if valid < 100 || validFast < valid*9/10 {
		t.Errorf("the fast decoder accepted %d of the %d valid documents of the corpus", validFast, valid)
	}
}

// TestFastStrictTypes: the fast decoder takes the workloads' kinds and the policies; a type
// with an interface in it (whose numbers sigs.k8s.io/json reads as integers) is left to
// sigs.k8s.io/json.
func TestFastStrictTypes(t *testing.T) {
	d := NewDecoder(true)
	for _, kind := range []string{"Pod", "Deployment", "CronJob", "ConfigMap", "Secret", "ClusterPolicy", "Policy"} {
		var found bool
		for _, k := range strictKinds(t) {
			if k.Kind == kind {
				obj, _ := d.scheme.New(k)
				if found = true; !fastStrict(reflect.TypeOf(obj)) {
					t.Errorf("%s is not decoded by the fast decoder", kind)
				}
			}
		}
		if !found {
			t.Errorf("no kind %s in the scheme", kind)
		}
	}
	type withAny struct {
		A struct{ B []map[string]any }
	}
	// Left to sigs.k8s.io/json, a number in an interface is an int64, as the fast decoder would
	// not make it.
	var got, want withAny
	data := []byte(`{"A":{"B":[{"n":1,"f":1.5}]}}`)
	if err := unmarshalStrict(data, &got); err != nil {
		t.Fatal(err)
	}
	if err := unmarshalSigsStrict(data, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || got.A.B[0]["n"] != int64(1) {
		t.Errorf("an interface decoded as %#v, sigs.k8s.io/json's %#v", got, want)
	}
	type recursive struct{ Next *recursive }
	for typ, want := range map[reflect.Type]bool{
		reflect.TypeFor[*withAny]():   false,
		reflect.TypeFor[*recursive](): true,
		reflect.TypeFor[*struct {
			N int `json:",string"`
		}](): false,
		reflect.TypeFor[*map[int]string]():                   false,
		reflect.TypeFor[*struct{ X runtime.RawExtension }](): true,
	} {
		if got := fastStrict(typ); got != want {
			t.Errorf("fastStrict(%v) = %v, want %v", typ, got, want)
		}
	}
}

// FuzzStrictDecodersAgree: on any document, as a Pod, a Deployment, a ClusterPolicy and the
// kind it names, the fast strict decoder with sigs.k8s.io/json after it gives what
// sigs.k8s.io/json alone gives.
func FuzzStrictDecodersAgree(f *testing.F) {
	corpus, originals := strictCorpus(f)
	for i, doc := range corpus {
		if i < originals || i%16 == 0 { // the documents, and some of their edits: the fuzzer makes more
			f.Add(doc)
		}
	}
	d := NewDecoder(true)
	kinds := []schema.GroupVersionKind{{Version: "v1", Kind: "Pod"}, {Group: "apps", Version: "v1", Kind: "Deployment"},
		{Group: "portcullis.dev", Version: "v1alpha1", Kind: "ClusterPolicy"}}
	f.Fuzz(func(t *testing.T, doc []byte) {
		for _, k := range kinds {
			strictAgree(t, d, "the document", doc, k)
		}
		if gvk, err := TypeMeta(doc); err == nil && d.scheme.Recognizes(gvk) {
			strictAgree(t, d, "the document", doc, gvk)
		}
	})
}
