package policies_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// decodedPlain is what the webhook's decoder made of data before presizing: data decoded into a
// new object of its kind.
func decodedPlain(data []byte, gvk schema.GroupVersionKind) (runtime.Object, error) {
	obj, err := scheme.Scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	if err := gojson.UnmarshalWithOption(data, obj, gojson.DecodeNoCopyString()); err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	return obj, nil
}

// presizeAgrees fails when decoding data with presizing (the webhook's decoder) and without it
// do not make the same object, error for error; reflect.DeepEqual tells a nil slice from an
// empty one.
func presizeAgrees(t *testing.T, name string, data []byte, gvk schema.GroupVersionKind) {
	t.Helper()
	want, wantErr := decodedPlain(data, gvk)
	res, err := policies.NewDecoder(false).SharingInput().Decode(data, &gvk)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s: error %v, want %v", name, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(res.Object, want) {
		t.Fatalf("%s: presized decoding differs:\n got %+v\nwant %+v", name, res.Object, want)
	}
}

// presizeCases are pod specs that presizing must follow or leave alone: keys written twice or
// in another case or escaped, arrays empty, null or of another type, more containers than it
// sizes the arrays of, more elements than it sizes.
func presizeCases() []string {
	env := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":"E%d","value":"v"}`, i)
		}
		return "[" + b.String() + "]"
	}
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":"c%d","image":"i","env":%s,"args":["a","b"]}`, i, env(i%3))
		}
		return "[" + b.String() + "]"
	}
	return []string{
		`{"containers":[{"name":"a","env":` + env(3) + `,"ports":[{"containerPort":80}],"command":["sh"],"args":["-c","x"]}],"volumes":[{"name":"v","emptyDir":{}}]}`,
		`{"containers":[{"name":"a","env":` + env(2) + `}],"containers":[{"name":"b"},{"name":"c","env":` + env(1) + `}]}`,
		`{"containers":[{"name":"a"},{"name":"b","env":` + env(2) + `}],"containers":[{"name":"c","env":` + env(5) + `}]}`,
		`{"containers":[{"name":"a","env":` + env(2) + `}],"Containers":[{"name":"b"}]}`,
		`{"Containers":[{"name":"a","env":` + env(2) + `}],"containers":[{"name":"b","ENV":` + env(3) + `}]}`,
		`{"containers":[{"name":"a","env":` + env(2) + `,"env":null}]}`,
		`{"containers":[{"name":"a","env":null,"env":` + env(2) + `}]}`,
		`{"containers":[{"name":"a","env":` + env(2) + `,"env":[]}]}`,
		`{"containers":[{"name":"a","env":[],"ports":[],"volumeMounts":[ ]}],"volumes":[],"tolerations":null}`,
		`{"containers":[{"name":"a","\u0065nv":` + env(2) + `}],"\u0076olumes":[{"name":"v"}]}`,
		`{"containers":[{"name":"a","env":` + env(2) + `,"\u0065nv":[]}]}`,
		`{"containers":[],"initContainers":[{"name":"i","env":` + env(4) + `}]}`,
		`{"containers":null,"initContainers":` + many(2) + `}`,
		`{"containers":` + many(20) + `,"initContainers":` + many(17) + `}`,
		`{"containers":[{"name":"a","env":` + env(1100) + `}],"tolerations":[{"key":"k"},{"key":"l"}],"topologySpreadConstraints":[{"maxSkew":1}],"imagePullSecrets":[{"name":"s"}]}`,
		`{"containers":[{"name":"a","env":{"name":"x"}}]}`,
		`{"containers":{"name":"a"}}`,
		`{"containers":["a"]}`,
		`{"containers":[null,{"name":"b","env":` + env(2) + `}]}`,
		`{"containers":[{"name":"a","env":` + env(2) + `}],"containers":"x"}`,
		`{"volumes":[{"name":"v"}],"volumes":[{"name":"w"},{"name":"x"}],"VOLUMES":[]}`,
	}
}

// TestPresizedDecodeAgrees: a pod spec's slices made to their JSON arrays' lengths before decoding
// (presize.go) leave the decoded object as it was, for Pods, Deployments and CronJobs, on every
// Pod and pod controller of the repository's examples and library suites and on presizeCases; and
// the benchmark Pod's slices have their lengths as capacity, so that presizing did happen.
func TestPresizedDecodeAgrees(t *testing.T) {
	kinds := map[string]schema.GroupVersionKind{
		"Pod":        {Version: "v1", Kind: "Pod"},
		"Deployment": {Group: "apps", Version: "v1", Kind: "Deployment"},
		"CronJob":    {Group: "batch", Version: "v1", Kind: "CronJob"},
	}
	for i, spec := range presizeCases() {
		for kind, gvk := range kinds {
			presizeAgrees(t, fmt.Sprintf("case %d as a %s", i, kind), wrapSpec(kind, spec), gvk)
		}
	}
	var files []string
	for _, glob := range []string{"../../examples/*/*.yaml", "../../manifests/library/tests/*/*.yaml", "../../manifests/library/*/*.yaml"} {
		m, _ := filepath.Glob(glob)
		files = append(files, m...)
	}
	seen := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := manifest.Split(file, data)
		if err != nil {
			continue // not every file is a manifest the reader takes; the library's own tests say so
		}
		for _, doc := range docs {
			gvk, err := policies.TypeMeta(doc.JSON)
			if err != nil || !scheme.Scheme.Recognizes(gvk) {
				continue
			}
			if res, err := policies.NewDecoder(false).Decode(doc.JSON, &gvk); err != nil || res.Pod == nil {
				continue
			}
			presizeAgrees(t, doc.Where(), doc.JSON, gvk)
			seen++
		}
	}
	if seen < 50 {
		t.Errorf("only %d pod-bearing objects read from %d files", seen, len(files))
	}
	data, err := os.ReadFile("testdata/bench/pod.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := policies.NewDecoder(false).SharingInput().Decode(data, &schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
	if err != nil {
		t.Fatal(err)
	}
	spec := res.Object.(*corev1.Pod).Spec
	for _, c := range append(spec.Containers, spec.InitContainers...) {
		if cap(c.Env) != len(c.Env) || cap(c.VolumeMounts) != len(c.VolumeMounts) || len(c.Env) == 0 {
			t.Errorf("container %s: env %d of capacity %d, volume mounts %d of %d: not presized", c.Name, len(c.Env), cap(c.Env), len(c.VolumeMounts), cap(c.VolumeMounts))
		}
	}
	if cap(spec.Containers) != len(spec.Containers) || cap(spec.Volumes) != len(spec.Volumes) {
		t.Errorf("containers %d of capacity %d, volumes %d of %d: not presized", len(spec.Containers), cap(spec.Containers), len(spec.Volumes), cap(spec.Volumes))
	}
}

// wrapSpec is a kind's object with the pod spec spec where the kind has it.
func wrapSpec(kind, spec string) []byte {
	switch kind {
	case "Deployment":
		return []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"replicas":1,"template":{"metadata":{"labels":{"a":"b"}},"spec":` + spec + `}}}`)
	case "CronJob":
		return []byte(`{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"j"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"spec":` + spec + `}}}}}`)
	}
	return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"n"},"spec":` + spec + `,"status":{}}`)
}

// FuzzPresizedDecodeAgrees: on any pod spec, as a Pod's and a Deployment's, decoding with
// presizing makes what decoding without it makes, error for error.
func FuzzPresizedDecodeAgrees(f *testing.F) {
	for _, c := range presizeCases() {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		presizeAgrees(t, "Pod", wrapSpec("Pod", spec), schema.GroupVersionKind{Version: "v1", Kind: "Pod"})
		presizeAgrees(t, "Deployment", wrapSpec("Deployment", spec), schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"})
	})
}
