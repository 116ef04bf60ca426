package policies

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/verify"
	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

func verifyEngine(t *testing.T, reg *verifytest.Registry, spec string) *Engine {
	t.Helper()
	c, err := NewCompiler(WithVerification(VerificationOptions{
		Cache: verify.NewCache(100, time.Hour, time.Minute, nil), Timeout: time.Second, InsecureRegistries: []string{reg.Host},
	}))
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.ClusterPolicy
	if err := yaml.UnmarshalStrict([]byte(clusterPolicy("signed", spec)), &p); err != nil {
		t.Fatal(err)
	}
	cp, err := c.CompileClusterPolicy(&p)
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine([]*CompiledPolicy{cp}, nil, nil)
}

func verifySpec(enforcement, failurePolicy, host, key string) string {
	return fmt.Sprintf(`enforcement: %s
failurePolicy: %s
match: {kinds: [Pod]}
rules:
- name: signed
  verifyImages:
    images: ["%s/team/*"]
    ignoreTlog: true
    keys: [{publicKey: %q}]
`, enforcement, failurePolicy, host, key)
}

func podWith(images ...string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  initContainers: [{name: init, image: 'docker.io/library/busybox:1.37'}]\n  containers:\n")
	for i, img := range images {
		fmt.Fprintf(&b, "  - {name: c%d, image: '%s'}\n", i, img)
	}
	return b.String()
}

func TestVerifyImagesRule(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	key, other := verifytest.NewKeyPair(t), verifytest.NewKeyPair(t)
	verifytest.Sign(t, reg.Push(t, "team/signed:v1"), key)
	reg.Push(t, "team/unsigned:v1")
	verifytest.Sign(t, reg.Push(t, "team/foreign:v1"), other)
	e := verifyEngine(t, reg, verifySpec("Deny", "Fail", reg.Host, key.PublicKey))

	eval := func(images ...string) Result {
		t.Helper()
		results := e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, podWith(images...))})
		if len(results) != 1 {
			t.Fatalf("%d results", len(results))
		}
		return results[0]
	}
	if r := eval(reg.Host + "/team/signed:v1"); r.Result != Pass {
		t.Errorf("signed: %s", r)
	}
	r := eval(reg.Host+"/team/signed:v1", reg.Host+"/team/unsigned:v1", reg.Host+"/team/foreign:v1")
	for _, want := range []string{
		`spec.containers[1] ("c1"): image ` + reg.Host + `/team/unsigned:v1: no signatures found`,
		`spec.containers[2] ("c2"): image ` + reg.Host + `/team/foreign:v1: signature does not match any trusted key`,
	} {
		if r.Result != Fail || !strings.Contains(r.Message, want) {
			t.Errorf("got %s, want it to contain %s", r, want)
		}
	}

	// required: false reports an unverified image without failing.
	optional := verifyEngine(t, reg, strings.Replace(verifySpec("Deny", "Fail", reg.Host, key.PublicKey), "    ignoreTlog: true\n", "    ignoreTlog: true\n    required: false\n", 1))
	rs := optional.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, podWith(reg.Host+"/team/unsigned:v1"))})
	if len(rs) != 1 || rs[0].Result != Pass || !strings.Contains(rs[0].Message, "not verified (required: false)") {
		t.Errorf("required false: %v", rs)
	}

	// A registry that is down: failurePolicy decides, and says why.
	reg.Down.Store(true)
	if r := eval(reg.Host + "/team/other:v1"); r.Result != Fail || !strings.Contains(r.Message, "evaluation error (failurePolicy Fail): could not verify") {
		t.Errorf("down, Fail: %s", r)
	}
	ignore := verifyEngine(t, reg, verifySpec("Deny", "Ignore", reg.Host, key.PublicKey))
	rs = ignore.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, podWith(reg.Host+"/team/other:v1"))})
	if len(rs) != 1 || rs[0].Result != Error {
		t.Errorf("down, Ignore: %v", rs)
	}
	reg.Down.Store(false)
}

func TestVerifyImagesPinsDigests(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	key := verifytest.NewKeyPair(t)
	digestRef := reg.Push(t, "team/app:v1")
	verifytest.Sign(t, digestRef, key)
	digest := digestRef[strings.Index(digestRef, "@")+1:]
	image := reg.Host + "/team/app:v1"

	for _, tc := range []struct{ enforcement, want string }{
		{"Deny", "applied: pin image " + image + " to " + digest + " in container c0"},
		{"Warn", "would pin image " + image + " to " + digest + " in container c0"},
	} {
		e := verifyEngine(t, reg, verifySpec(tc.enforcement, "Fail", reg.Host, key.PublicKey))
		out, m := mutateJSON(t, e, mustJSON(t, podWith(image)))
		if len(m.Results) != 1 || m.Results[0].Message != tc.want {
			t.Errorf("%s: %v", tc.enforcement, m.Results)
		}
		pinned := strings.Contains(string(out), `"image":"`+image+"@"+digest+`"`)
		if pinned != (tc.enforcement == "Deny") {
			t.Errorf("%s: pinned=%v: %s", tc.enforcement, pinned, out)
		}
		if tc.enforcement == "Deny" {
			// The pinned object verifies by digest, and mutating it again changes nothing.
			if rs := e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: mustResource(t, string(out))}); len(rs) != 1 || rs[0].Result != Pass {
				t.Errorf("pinned object: %v", rs)
			}
			if _, again := mutateJSON(t, e, out); len(again.Patches) != 0 {
				t.Errorf("pinned again: %v", again.Patches)
			}
		}
	}
}
