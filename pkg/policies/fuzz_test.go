package policies_test

import (
	"encoding/json"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// libraryEngine compiles the starter library in manifests/library plus more policy files.
func libraryEngine(tb testing.TB, paths ...string) *policies.Engine {
	tb.Helper()
	e, err := manifest.LoadEngine(append([]string{"../../manifests/library"}, paths...), nil, time.Now)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// FuzzDecodeEvaluate reads arbitrary manifests, decodes them strictly and leniently and
// evaluates whatever decodes against the library: nothing may panic, and every result must be
// one of the four outcomes with an action.
func FuzzDecodeEvaluate(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {hostNetwork: true, containers: [{name: c, image: nginx, ports: [{containerPort: 80}], securityContext: {privileged: true, capabilities: {add: [NET_ADMIN]}}}]}\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, labels: {app.kubernetes.io/name: d}}\nspec: {selector: {}, template: {spec: {containers: [{name: c, image: 'x:1', resources: {limits: {memory: 1Gi}}}]}}}\n",
		"apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: {spec: {template: {spec: {containers: [{image: ''}]}}}}}\n",
		"apiVersion: v1\nkind: ReplicationController\nmetadata: {name: r}\nspec: {}\n",
		"apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: [1, 2]\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'a/b/c:d@e'}], ephemeralContainers: [{name: e, image: x}], volumes: [{name: v}]}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: null}\n",
	} {
		f.Add([]byte(seed))
	}
	engine := libraryEngine(f)
	strict, lenient := policies.NewDecoder(true), policies.NewDecoder(false).SharingInput() // the webhook's
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, _ := manifest.Split("fuzz.yaml", data)
		for _, doc := range docs {
			strictRes, strictErr := strict.Decode(doc.JSON, nil)
			// The webhook's decoder reads what the API server sends: the object it admitted,
			// defaulted; and never fails on what the CLI accepts.
			admitted := doc.JSON
			if strictErr == nil {
				var err error
				if admitted, err = json.Marshal(strictRes.Object); err != nil {
					t.Fatal(err)
				}
			}
			lenientRes, lenientErr := lenient.Decode(admitted, nil)
			if strictErr == nil && (lenientErr != nil || !equality.Semantic.DeepEqual(strictRes.Object, lenientRes.Object)) {
				t.Fatalf("the lenient decoder disagrees with the strict one (%v):\nstrict  %#v\nlenient %#v", lenientErr, strictRes.Object, lenientRes)
			}
			for _, res := range []*policies.Resource{strictRes, lenientRes} {
				if res == nil {
					continue
				}
				for _, r := range engine.Evaluate(t.Context(), &policies.Request{Operation: v1alpha1.Create, Object: res}) {
					switch r.Result {
					case policies.Pass, policies.Fail, policies.Error, policies.Skip:
					default:
						t.Fatalf("result %q", r.Result)
					}
					if r.Action == "" {
						t.Fatalf("no action in %+v", r)
					}
				}
			}
		}
	})
}
