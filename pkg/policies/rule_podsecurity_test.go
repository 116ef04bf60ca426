package policies

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// upstreamFixtures returns the Pod Security Admission fixtures of the k8s.io/pod-security-admission
// module this build uses: testdata/<level>/v1.N/{pass,fail}/*.yaml, the ones upstream's own
// integration test creates against a real API server.
func upstreamFixtures(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/pod-security-admission").Output()
	if err != nil {
		t.Fatalf("locating k8s.io/pod-security-admission: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "test", "testdata")
}

func decodeFile(t *testing.T, d *Decoder, path string) *Resource {
	t.Helper()
	res, err := d.Decode(readJSON(t, path), nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return res
}

// TestPodSecurityMatchesUpstream runs every upstream fixture through the podSecurity rule at its
// level and version (v1.0 to v1.37) and expects upstream's verdict, and compares the rule's
// checks with upstream's evaluator on every fixture at every level and version.
func TestPodSecurityMatchesUpstream(t *testing.T) {
	root := upstreamFixtures(t)
	d := NewDecoder(true)
	reg := newPSSRegistry()
	upstream, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "*", "v1.*", "*", "*.yaml"))
	if err != nil || len(files) < 1000 {
		t.Fatalf("found %d upstream fixtures under %s (%v)", len(files), root, err)
	}
	pods := map[string]*Resource{}
	versions := map[string]bool{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		parts := strings.Split(rel, string(filepath.Separator)) // level, version, pass|fail, file
		level, version, want := parts[0], parts[1], parts[2]
		versions[version] = true
		res := decodeFile(t, d, f)
		pods[parts[3]] = res
		rule, errs := compilePodSecurity(&v1alpha1.PodSecurityRule{Level: v1alpha1.PodSecurityLevel(level), Version: version}, reg, field.NewPath("rule"))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", rel, errs)
		}
		got := rule.evaluate(&input{ctx: t.Context(), res: res})
		if (want == "pass") != (got.outcome == Pass) {
			t.Errorf("%s: got %s %q, upstream expects %s", rel, got.outcome, got.message, want)
		}
	}
	if !versions["v1.0"] || !versions["v1.37"] {
		t.Fatalf("fixtures do not span v1.0 to v1.37: %v", versions)
	}
	for v := 0; v <= 38; v++ {
		version := api.MajorMinorVersion(1, v)
		if v == 38 {
			version = api.LatestVersion()
		}
		for _, level := range []api.Level{api.LevelBaseline, api.LevelRestricted} {
			checks := reg.resolve(level, version)
			for name, res := range pods {
				var ours []policy.CheckResult
				for _, c := range checks {
					ours = append(ours, c.check(res.Pod.Meta, res.Pod.Spec))
				}
				theirs := upstream.EvaluatePod(api.LevelVersion{Level: level, Version: version}, res.Pod.Meta, res.Pod.Spec)
				if !reflect.DeepEqual(policy.AggregateCheckResults(ours), policy.AggregateCheckResults(theirs)) {
					t.Errorf("%s at %s:%s: ours %+v, upstream %+v", name, level, version, policy.AggregateCheckResults(ours), policy.AggregateCheckResults(theirs))
				}
			}
		}
	}
}

func TestPodSecurityRule(t *testing.T) {
	d := NewDecoder(true)
	reg := newPSSRegistry()
	pod := func(spec string) *Resource {
		js, err := yaml.YAMLToJSON([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n" + spec))
		if err != nil {
			t.Fatal(err)
		}
		res, err := d.Decode(js, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	restrictedOK := `  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: web
    image: ghcr.io/acme/web:1.0
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`
	legacy := `  containers:
  - name: web
    image: ghcr.io/acme/web:1.0
    securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
  - name: legacy
    image: registry.example.com/legacy/app:2
`
	tests := []struct {
		name    string
		rule    v1alpha1.PodSecurityRule
		pod     string
		want    Outcome
		message string
	}{
		{name: "restricted pod passes", rule: v1alpha1.PodSecurityRule{Level: "restricted"}, pod: restrictedOK, want: Pass},
		{name: "privileged fails baseline", rule: v1alpha1.PodSecurityRule{Level: "baseline", Version: "v1.30"},
			pod: "  containers: [{name: c, image: x, securityContext: {privileged: true}}]\n", want: Fail,
			message: `violates PodSecurity "baseline:v1.30": privileged (container "c" must not set securityContext.privileged=true)`},
		{name: "hostNetwork defaults host ports as the API server does", rule: v1alpha1.PodSecurityRule{Level: "baseline"},
			pod: "  hostNetwork: true\n  containers: [{name: c, image: x, ports: [{containerPort: 8080}]}]\n", want: Fail,
			message: `violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPort (container "c" uses hostPort 8080)`},
		{name: "legacy container fails restricted", rule: v1alpha1.PodSecurityRule{Level: "restricted"}, pod: legacy, want: Fail},
		{name: "whole control excluded", rule: v1alpha1.PodSecurityRule{Level: "restricted", Exclude: []v1alpha1.PodSecurityExclusion{
			{Control: "allowPrivilegeEscalation"}, {Control: "capabilities_restricted"}, {Control: "runAsNonRoot"}, {Control: "seccompProfile_restricted"}}},
			pod: legacy, want: Pass},
		{name: "controls excluded for matching images only", rule: v1alpha1.PodSecurityRule{Level: "restricted", Exclude: []v1alpha1.PodSecurityExclusion{
			{Control: "allowPrivilegeEscalation", Images: []string{"registry.example.com/legacy/*"}},
			{Control: "capabilities_restricted", Images: []string{"registry.example.com/legacy/*"}},
			{Control: "runAsNonRoot", Images: []string{"registry.example.com/legacy/*"}},
			{Control: "seccompProfile_restricted", Images: []string{"registry.example.com/legacy/*"}}}},
			pod: legacy, want: Pass},
		{name: "image exclusion does not cover other images", rule: v1alpha1.PodSecurityRule{Level: "restricted", Exclude: []v1alpha1.PodSecurityExclusion{
			{Control: "allowPrivilegeEscalation", Images: []string{"registry.example.com/other/*"}}}},
			pod: legacy, want: Fail},
		{name: "image exclusion keeps pod-level checks", rule: v1alpha1.PodSecurityRule{Level: "baseline", Exclude: []v1alpha1.PodSecurityExclusion{
			{Control: "hostNamespaces", Images: []string{"*"}}}},
			pod: "  hostPID: true\n  containers: [{name: c, image: x}]\n", want: Fail,
			message: `violates PodSecurity "baseline:latest": host namespaces (hostPID=true)`},
		{name: "not a pod", rule: v1alpha1.PodSecurityRule{Level: "baseline"}, want: Skip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, errs := compilePodSecurity(&tt.rule, reg, field.NewPath("r"))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			res := &Resource{}
			if tt.pod != "" {
				res = pod(tt.pod)
			}
			got := rule.evaluate(&input{ctx: t.Context(), res: res})
			if got.outcome != tt.want || (tt.message != "" && got.message != tt.message) {
				t.Errorf("got %s %q, want %s %q", got.outcome, got.message, tt.want, tt.message)
			}
		})
	}
}

func TestPodSecurityCompileErrors(t *testing.T) {
	reg := newPSSRegistry()
	tests := []struct {
		rule v1alpha1.PodSecurityRule
		want string
	}{
		{v1alpha1.PodSecurityRule{Level: "privileged"}, `r.level: Unsupported value: "privileged"`},
		{v1alpha1.PodSecurityRule{Level: "baseline", Version: "1.30"}, `r.version: Invalid value: "1.30"`},
		{v1alpha1.PodSecurityRule{Level: "baseline", Version: "v1.99"}, `must be v1.37 or older`},
		{v1alpha1.PodSecurityRule{Level: "baseline", Exclude: []v1alpha1.PodSecurityExclusion{{Control: "nope"}}}, `r.exclude[0].control: Unsupported value: "nope"`},
		{v1alpha1.PodSecurityRule{Level: "baseline", Exclude: []v1alpha1.PodSecurityExclusion{{Control: "runAsNonRoot"}}}, `is a restricted control`},
		{v1alpha1.PodSecurityRule{Level: "restricted", Exclude: []v1alpha1.PodSecurityExclusion{{Control: "runAsNonRoot", Images: []string{""}}}}, `r.exclude[0].images[0]`},
		// A baseline check that restricted replaces would be excluded for nothing.
		{v1alpha1.PodSecurityRule{Level: "restricted", Exclude: []v1alpha1.PodSecurityExclusion{{Control: "capabilities_baseline"}}},
			`r.exclude[0].control: Invalid value: "capabilities_baseline": is not run at restricted:latest: capabilities_restricted replaces it, exclude that control instead`},
		{v1alpha1.PodSecurityRule{Level: "restricted", Version: "v1.22", Exclude: []v1alpha1.PodSecurityExclusion{{Control: "seccompProfile_baseline", Images: []string{"a/*"}}}},
			`r.exclude[0].control: Invalid value: "seccompProfile_baseline": is not run at restricted:v1.22: seccompProfile_restricted replaces it`},
	}
	for _, tt := range tests {
		_, errs := compilePodSecurity(&tt.rule, reg, field.NewPath("r"))
		if !strings.Contains(errs.ToAggregate().Error(), tt.want) {
			t.Errorf("%+v: got %v, want it to contain %q", tt.rule, errs, tt.want)
		}
	}
}

// TestLenientDecoderAgrees decodes every upstream fixture with the CLI's strict decoder and
// expects the webhook's lenient one to decode the same object from what the API server would
// send it: the object defaulted and prepared (the strict decoder's output, encoded again).
func TestLenientDecoderAgrees(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(upstreamFixtures(t), "restricted", "v1.37", "*", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	files = append(files, "testdata/bench/pod.json", "testdata/bench/deployment.json")
	strict, lenient := NewDecoder(true), NewDecoder(false)
	shared := lenient.SharingInput()
	for _, f := range files {
		js := readJSON(t, f)
		a, err := strict.Decode(js, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		admitted, err := json.Marshal(a.Object)
		if err != nil {
			t.Fatal(err)
		}
		b, err := lenient.Decode(admitted, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !equality.Semantic.DeepEqual(a.Object, b.Object) {
			t.Errorf("%s: decoders disagree", f)
		}
		c, err := shared.Decode(admitted, nil)
		if err != nil {
			t.Fatalf("%s: sharing the input: %v", f, err)
		}
		if !equality.Semantic.DeepEqual(a.Object, c.Object) {
			t.Errorf("%s: the decoder sharing its input disagrees", f)
		}
	}
}
