package policies

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/verify"
	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

func verifyEngine(t *testing.T, reg *verifytest.Registry, spec string) *Engine {
	t.Helper()
	c, err := NewCompiler(WithVerification(VerificationOptions{
		Cache: verify.NewCache(100, time.Hour, time.Minute, nil), Timeout: time.Second, InsecureRegistries: []string{reg.Host},
		Transport: verify.NewTransport(verify.EgressOptions{Insecure: []string{reg.Host}, Private: []string{reg.Host}}),
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

// secretsTable is a SecretReader over a table of namespace/name/key → value.
type secretsTable map[string]string

func (s secretsTable) PublicKey(_ context.Context, namespace, name, key string) (string, error) {
	v, ok := s[namespace+"/"+name+"/"+key]
	if !ok {
		return "", fmt.Errorf("secrets %q not found", name)
	}
	return v, nil
}

// TestVerifyImagesTenancy: a Policy reads keys only from its own namespace and verifies only
// allowed registries; a ClusterPolicy reads only from the allowed namespaces; and no error tells
// whether another namespace's Secret exists or what it holds.
func TestVerifyImagesTenancy(t *testing.T) {
	key := verifytest.NewKeyPair(t).PublicKey
	secrets := secretsTable{
		"team-a/cosign/cosign.pub":            key,
		"portcullis-system/cosign/cosign.pub": key,
		"kube-system/cosign/cosign.pub":       key,
		"team-a/private/cosign.pub":           "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n",
	}
	c, err := NewCompiler(WithVerification(VerificationOptions{
		Secrets: secrets, KeyNamespaces: []string{"portcullis-system"}, NamespacedRegistries: []string{"ghcr.io/acme", "registry.example.com:5000"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	spec := func(image string, ref v1alpha1.SecretKeyRef) v1alpha1.PolicySpec {
		return v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{{Name: "signed", VerifyImages: &v1alpha1.VerifyImagesRule{
			Images: []string{image}, Keys: []v1alpha1.KeyRef{{SecretRef: &ref}}}}}}
	}
	ref := func(ns, name string) v1alpha1.SecretKeyRef { return v1alpha1.SecretKeyRef{Namespace: ns, Name: name} }
	tests := []struct {
		name      string
		namespace string // of a Policy; empty: a ClusterPolicy
		image     string
		ref       v1alpha1.SecretKeyRef
		want      string // in the error; empty: compiles
	}{
		{"policy, own namespace", "team-a", "ghcr.io/acme/*", ref("", "cosign"), ""},
		{"policy, own namespace named", "team-a", "ghcr.io/acme/app", ref("team-a", "cosign"), ""},
		{"policy, another namespace", "team-a", "ghcr.io/acme/*", ref("kube-system", "cosign"), "may read keys only from Secrets in its own namespace"},
		{"policy, another namespace, missing", "team-a", "ghcr.io/acme/*", ref("victim", "nothing"), "may read keys only from Secrets in its own namespace"},
		{"policy, missing Secret", "team-a", "ghcr.io/acme/*", ref("", "nothing"), "no such Secret or key, or not a PEM public key"},
		{"policy, private key", "team-a", "ghcr.io/acme/*", ref("", "private"), "no such Secret or key, or not a PEM public key"},
		{"policy, registry not allowed", "team-a", "*", ref("", "cosign"), "may verify images only from ghcr.io/acme, registry.example.com:5000"},
		{"policy, look-alike registry", "team-a", "ghcr.io/acme*", ref("", "cosign"), "may verify images only from"},
		{"policy, other host", "team-a", "ghcr.io.evil.com/acme/*", ref("", "cosign"), "may verify images only from"},
		{"policy, port", "team-a", "registry.example.com:5000/x/*", ref("", "cosign"), ""},
		{"cluster policy, default namespace", "", "*", ref("", "cosign"), ""},
		{"cluster policy, allowed namespace", "", "*", ref("portcullis-system", "cosign"), ""},
		{"cluster policy, kube-system", "", "*", ref("kube-system", "cosign"), "may read keys only from Secrets in portcullis-system (--key-secret-namespaces)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.namespace == "" {
				_, err = c.CompileClusterPolicy(&v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: spec(tt.image, tt.ref)})
			} else {
				_, err = c.CompilePolicy(&v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: tt.namespace}, Spec: spec(tt.image, tt.ref)})
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("compile error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), "PRIVATE") || strings.Contains(err.Error(), "not found")) {
				t.Errorf("the error tells what the Secret holds or whether it exists: %v", err)
			}
		})
	}
}

// Every field of keyless, certificateChain, trustedRoot and attestations is checked when the
// policy compiles, and each error names its field.
func TestVerifyImagesSupplyChainCompileErrors(t *testing.T) {
	c, err := NewCompiler()
	if err != nil {
		t.Fatal(err)
	}
	const head = "enforcement: Deny\nmatch: {kinds: [Pod]}\nrules:\n- name: signed\n  verifyImages:\n    images: [\"registry.example/*\"]\n"
	for _, tt := range []struct{ name, rule, want string }{
		{"no attestor", "    ignoreTlog: true\n",
			`spec.rules[0] (signed).verifyImages: Required value: name at least one attestor: keys, keyless or certificateChain`},
		{"issuer twice", "    keyless: [{issuer: a, issuerRegExp: b, subject: c}]\n",
			`spec.rules[0] (signed).verifyImages.keyless[0]: Invalid value: "": set exactly one of issuer or issuerRegExp`},
		{"no subject", "    keyless: [{issuer: a}]\n",
			`spec.rules[0] (signed).verifyImages.keyless[0]: Invalid value: "": set exactly one of subject or subjectRegExp`},
		{"bad regexp", "    keyless: [{issuer: a, subjectRegExp: '^(x'}]\n",
			`spec.rules[0] (signed).verifyImages.keyless[0].subjectRegExp: Invalid value: "^(x": not an RE2 regular expression`},
		{"unknown extension", "    keyless: [{issuer: a, subject: b, extensions: {githubRepo: acme/app}}]\n",
			`spec.rules[0] (signed).verifyImages.keyless[0].extensions[githubRepo]: Unsupported value: "githubRepo": supported values: "buildConfigDigest"`},
		{"bad chain", "    certificateChain: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"\n",
			`spec.rules[0] (signed).verifyImages.certificateChain: Invalid value: "(PEM)": not PEM certificates`},
		{"bad root", "    keyless: [{issuer: a, subject: b}]\n    trustedRoot: {json: '{\"mediaType\": 1}'}\n",
			`spec.rules[0] (signed).verifyImages.trustedRoot.json: Invalid value: "(TrustedRoot)": not a Sigstore TrustedRoot`},
		{"root in a ConfigMap, offline", "    keyless: [{issuer: a, subject: b}]\n    trustedRoot: {configMapRef: {name: root}}\n",
			`spec.rules[0] (signed).verifyImages.trustedRoot.configMapRef: Invalid value: "root": trusted roots in ConfigMaps are read in the cluster; offline, pass --trusted-root`},
		{"condition not bool", "    keyless: [{issuer: a, subject: b}]\n    attestations: [{predicateType: x, conditions: [{expression: 'predicate.builder'}]}]\n",
			`spec.rules[0] (signed).verifyImages.attestations[0].conditions[0].expression: Invalid value: "predicate.builder": must evaluate to bool`},
		{"condition reads the object", "    keyless: [{issuer: a, subject: b}]\n    attestations: [{predicateType: x, conditions: [{expression: 'object.metadata.name == \"x\"'}]}]\n",
			`undeclared reference to 'object'`},
		{"no predicate type", "    keyless: [{issuer: a, subject: b}]\n    attestations: [{predicateType: ''}]\n",
			`spec.rules[0] (signed).verifyImages.attestations[0].predicateType: Required value`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p v1alpha1.ClusterPolicy
			if err := yaml.UnmarshalStrict([]byte(clusterPolicy("signed", head+tt.rule)), &p); err != nil {
				t.Fatal(err)
			}
			_, err := c.CompileClusterPolicy(&p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v\nwant an error containing %s", err, tt.want)
			}
		})
	}
}

// A tenant's attestation conditions count against its rule budget: each is a compiled program.
func TestBudgetRulesCountAttestationConditions(t *testing.T) {
	spec := &v1alpha1.PolicySpec{Rules: []v1alpha1.Rule{{Name: "r", VerifyImages: &v1alpha1.VerifyImagesRule{
		Attestations: []v1alpha1.AttestationCheck{{PredicateType: "x", Conditions: make([]v1alpha1.AttestationCondition, 3)}, {PredicateType: "y", Conditions: make([]v1alpha1.AttestationCondition, 2)}},
	}}}}
	if got := BudgetRules(spec); got != 6 {
		t.Errorf("BudgetRules = %d, want 6 (1 rule + 5 conditions)", got)
	}
}
