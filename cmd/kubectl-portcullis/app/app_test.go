package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/internal/golden"
	"github.com/portcullis-dev/portcullis/internal/initgc"

	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

// The examples are the demo's: the library, example platform policies and workloads.
const (
	examples = "../../../examples/workloads"
	library  = "../../../manifests/library"
	platform = "../../../examples/policies"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	now := func() time.Time { return time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) }
	code = run(t.Context(), args, streams{in: strings.NewReader(stdin), out: &out, err: &errb, now: now})
	return code, out.String(), errb.String()
}

func TestGoldenCheck(t *testing.T) {
	for _, format := range []string{"text", "json", "junit", "sarif"} {
		t.Run(format, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "check", "-f", examples, "--policies", library, "--policies", platform, "-o", format)
			if code != ExitViolation || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			golden.Check(t, "check."+format, out)
		})
	}
}

// TestGoldenCheckQuiet: --quiet lists only the resources that fail, and only their failures.
func TestGoldenCheckQuiet(t *testing.T) {
	code, out, errOut := runCLI(t, "", "check", "-f", examples, "--policies", library, "--policies", platform, "--quiet")
	if code != ExitViolation || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	golden.Check(t, "check-quiet.text", out)
}

// TestGoldenCheckReviews: AdmissionReview documents are judged as the requests they recorded,
// with their operation, old object and user: an UPDATE and a DELETE.
func TestGoldenCheckReviews(t *testing.T) {
	code, out, errOut := runCLI(t, "", "check", "-f", "testdata/review/reviews.yaml", "--policies", "testdata/review/policies.yaml")
	if code != ExitViolation || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	golden.Check(t, "check-reviews.text", out)
	for _, bad := range []struct{ review, want string }{
		{"request: {operation: UPDATE, kind: {version: v1, kind: Pod}, object: {apiVersion: v1, kind: Pod, metadata: {name: p}}}",
			"request.oldObject: Required value: an UPDATE has the object before it"},
		{"request: {operation: DELETE, kind: {version: v1, kind: Pod}}", "request.oldObject: Required value: a DELETE judges the object being deleted"},
		{"request: {operation: PATCH}", `request.operation: Unsupported value: "PATCH"`},
		{"{}", "request: Required value"},
	} {
		code, _, errOut := runCLI(t, "apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n"+strings.TrimPrefix(bad.review, "{}"),
			"check", "-f", "-", "--policies", "testdata/review/policies.yaml")
		if code != ExitUsage || !strings.Contains(errOut, "-: AdmissionReview: "+bad.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", bad.review, code, errOut, bad.want)
		}
	}
}

func TestGoldenErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"broken-yaml", []string{"check", "-f", "testdata/bad/broken.yaml", "--policies", library}},
		{"not-an-object", []string{"check", "-f", "testdata/bad/not-an-object.yaml", "--policies", library}},
		{"empty", []string{"check", "-f", "testdata/bad/empty.yaml", "--policies", library}},
		{"removed-api", []string{"check", "-f", "testdata/bad/removed-api.yaml", "--policies", library}},
		{"unknown-field-policy", []string{"check", "-f", examples, "--policies", "testdata/bad/unknown-field-policy.yaml"}},
		{"invalid-policy", []string{"check", "-f", examples, "--policies", "testdata/bad/invalid-policy.yaml"}},
		{"wrong-type-policy", []string{"check", "-f", examples, "--policies", "testdata/bad/wrong-type-policy.yaml"}},
		{"workload-as-policy", []string{"check", "-f", examples, "--policies", examples + "/web.yaml"}},
		{"usage", []string{"check", "-o", "yaml"}},
		{"missing-file", []string{"check", "-f", "testdata/nope.yaml", "--policies", library}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", tt.args...)
			if code != ExitUsage || out != "" {
				t.Fatalf("exit %d, stdout %q", code, out)
			}
			if strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "panic") {
				t.Fatalf("stack trace in %q", errOut)
			}
			golden.Check(t, "error-"+tt.name+".txt", errOut)
		})
	}
}

func TestExitCodes(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'x:1', securityContext: {privileged: true}}]}\n"
	deny := "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterPolicy\nmetadata: {name: p}\nspec:\n  enforcement: %s\n  rules: [{name: pss, podSecurity: {level: baseline}}]\n"
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name   string
		policy string
		want   int
	}{
		{"Deny fails", strings.Replace(deny, "%s", "Deny", 1), ExitViolation},
		{"Warn does not block", strings.Replace(deny, "%s", "Warn", 1), ExitOK},
		{"Audit does not block", strings.Replace(deny, "%s", "Audit", 1), ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, pod, "check", "-f", "-", "--policies", write("p.yaml", tt.policy), "-o", "json")
			if code != tt.want {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.want, out, errOut)
			}
			if !strings.Contains(out, `"file": "-"`) {
				t.Errorf("stdin not named in results: %s", out)
			}
		})
	}
	if code, _, errOut := runCLI(t, "", "check", "-f", "-", "--policies", "-"); code != ExitUsage || !strings.Contains(errOut, "- (stdin) may be given once") {
		t.Errorf("stdin twice: exit %d, %q", code, errOut)
	}
}

func TestPluginHelp(t *testing.T) {
	code, out, _ := runCLI(t, "", "check", "--help")
	if code != ExitOK || !strings.Contains(out, "kubectl portcullis check -f deploy/ --policies manifests/library") || !strings.Contains(out, "Usage:\n  kubectl portcullis check") {
		t.Errorf("exit %d, help:\n%s", code, out)
	}
}

func TestGoldenMutate(t *testing.T) {
	for _, format := range []string{"yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", "mutate", "-f", "testdata/mutate/workloads.yaml", "--policies", "testdata/mutate/policies.yaml", "-o", format)
			// The CronJob has no port to probe and still fails the Deny rule that requires probes.
			if code != ExitViolation || !strings.Contains(errOut, "[require-probes/readiness] containers without a readinessProbe: cleanup") {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			golden.Check(t, "mutate."+format, out)
		})
	}
}

// TestCheckMutatesFirst: check runs the mutating rules before the validating ones, as the API
// server does, so a policy requiring probes passes what defaultProbes fixes.
func TestCheckMutatesFirst(t *testing.T) {
	code, out, _ := runCLI(t, "", "check", "-f", "testdata/mutate/workloads.yaml", "--policies", "testdata/mutate/policies.yaml")
	if code != ExitViolation {
		t.Fatalf("exit %d", code)
	}
	golden.Check(t, "check-mutates-first.text", out)
	for _, want := range []string{
		"testdata/mutate/workloads.yaml: apps/v1 Deployment shop/api: MUTATED (2 pass, 0 fail, 0 error, 0 skip)",
		"  PASS  Deny  [probes/defaults] applied: add readinessProbe (httpGet :8080/readyz) to container api; add livenessProbe (httpGet :8080/healthz) to container api",
		`  PASS  Deny  [probes/defaults] container "cleanup" declares no TCP port: no probe added; declare a containerPort or write its probes`,
		"  FAIL  Deny  [require-probes/readiness] containers without a readinessProbe: cleanup",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestCheckVerifiesImages: check verifies signatures against the registries the manifests name,
// so CI sees the verdict the cluster gives.
func TestCheckVerifiesImages(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	key := verifytest.NewKeyPair(t)
	verifytest.Sign(t, reg.Push(t, "team/signed:v1"), key)
	reg.Push(t, "team/unsigned:v1")
	dir := t.TempDir()
	policy := fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: signed-images}
spec:
  enforcement: Deny
  match: {kinds: [Pod]}
  rules:
    - name: cosign
      verifyImages: {images: ["%s/team/*"], ignoreTlog: true, mutateDigest: false, keys: [{publicKey: %q}]}
`, reg.Host, key.PublicKey)
	pods := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: app, image: '%[1]s/team/signed:v1'}]}\n---\n"+
		"apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec: {containers: [{name: app, image: '%[1]s/team/unsigned:v1'}]}\n", reg.Host)
	for name, content := range map[string]string{"policy.yaml": policy, "pods.yaml": pods} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "", "check", "-f", filepath.Join(dir, "pods.yaml"), "--policies", filepath.Join(dir, "policy.yaml"), "--insecure-registry", reg.Host)
	want := fmt.Sprintf(`FAIL  Deny  [signed-images/cosign] spec.containers[0] ("app"): image %s/team/unsigned:v1: no signatures found`, reg.Host)
	if code != ExitViolation || !strings.Contains(out, want) || !strings.Contains(out, "v1 Pod default/ok: PASSED") {
		t.Fatalf("exit %d\n%s%s\nwant %s", code, out, errOut, want)
	}
}

// TestCheckTrustedRoot: offline, --trusted-root stands in for a rule's trustedRoot in a
// ConfigMap: a keyless signature from the private Fulcio it names verifies, and without it the
// rule says what to pass. A file that is not a TrustedRoot is named.
func TestCheckTrustedRoot(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	ca := verifytest.NewCA(t, "fulcio", true)
	const issuer, subject = "https://token.actions.githubusercontent.com", "https://github.com/acme/app/.github/workflows/release.yaml@refs/heads/main"
	verifytest.SignWithCert(t, reg.Push(t, "acme/app:v1"), ca.Issue(t, verifytest.Cert{Subject: subject, Issuer: issuer}))
	dir := t.TempDir()
	policy := fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: keyless}
spec:
  enforcement: Deny
  match: {kinds: [Pod]}
  rules:
    - name: workflow
      verifyImages:
        images: ["%s/acme/*"]
        mutateDigest: false
        keyless: [{issuer: %q, subject: %q}]
        trustedRoot: {configMapRef: {namespace: portcullis-system, name: sigstore-root}}
`, reg.Host, issuer, subject)
	pod := fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: app, image: '%s/acme/app:v1'}]}\n", reg.Host)
	for name, content := range map[string]string{"policy.yaml": policy, "pod.yaml": pod, "root.json": string(ca.TrustedRoot(t)), "bad.json": `{"mediaType": "x"}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"check", "-f", filepath.Join(dir, "pod.yaml"), "--policies", filepath.Join(dir, "policy.yaml"), "--insecure-registry", reg.Host}
	code, out, errOut := runCLI(t, "", append(args, "--trusted-root", filepath.Join(dir, "root.json"))...)
	if code != ExitOK || !strings.Contains(out, "v1 Pod default/ok: PASSED") {
		t.Fatalf("with --trusted-root: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "", args...)
	if want := "trusted roots in ConfigMaps are read in the cluster; offline, pass --trusted-root"; code != ExitUsage || !strings.Contains(out+errOut, want) {
		t.Fatalf("without --trusted-root: exit %d\n%s%s\nwant %s", code, out, errOut, want)
	}
	code, out, errOut = runCLI(t, "", append(args, "--trusted-root", filepath.Join(dir, "bad.json"))...)
	if want := "--trusted-root " + filepath.Join(dir, "bad.json") + ": not a Sigstore TrustedRoot"; code != ExitUsage || !strings.Contains(errOut, want) {
		t.Fatalf("a bad root: exit %d\n%s%s\nwant %s", code, out, errOut, want)
	}
}

// TestTestCommand: the library's suites pass; a copy of the library with one policy broken on
// purpose turns the run red, naming the expectations that no longer hold; the exit codes are
// 0, 1 and 2.
func TestTestCommand(t *testing.T) {
	code, out, errOut := runCLI(t, "", "test", library)
	if code != ExitOK || !strings.Contains(out, " 0 failed\n") {
		t.Fatalf("the library's suites: exit %d\n%s%s", code, out, errOut)
	}

	broken := t.TempDir()
	if err := os.CopyFS(broken, os.DirFS(library)); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(broken, "disallow-privileged-containers.yaml")
	data, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	// The policy now forgets init containers.
	if err := os.WriteFile(policy, []byte(strings.Replace(string(data),
		"podSpec.containers + podSpec.?initContainers.orValue([]) + podSpec.?ephemeralContainers.orValue([])", "podSpec.containers", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "", "test", broken)
	if code != ExitViolation || !strings.Contains(out, "FAIL  "+filepath.Join(broken, "tests/disallow-privileged-containers/portcullis-test.yaml")) ||
		!strings.Contains(out, "CREATE Pod privileged-init [disallow-privileged-containers/privileged] fail\n        want fail, got pass") {
		t.Fatalf("a broken policy: exit %d\n%s", code, out)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"test", "testdata"}, "error: no test suites (portcullis-test.yaml) found in testdata"},
		{[]string{"test", "-o", "xml", library}, `-o "xml": want text, json or junit`},
		{[]string{"test", "nowhere"}, "nowhere: no such file or directory"},
	} {
		if code, _, errOut := runCLI(t, "", tt.args...); code != ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tt.args, code, errOut, tt.want)
		}
	}
}

// TestKindWarning: a kind that may be a custom resource's is a warning on stderr, naming the
// file, the policy and the field; the check runs.
func TestKindWarning(t *testing.T) {
	policy := "apiVersion: portcullis.dev/v1alpha1\nkind: ClusterPolicy\nmetadata: {name: p}\nspec:\n  match: {kinds: [Pood]}\n  rules: [{name: r, cel: {expression: 'true'}}]\n"
	code, _, errOut := runCLI(t, policy, "check", "-f", examples+"/web.yaml", "--policies", "-")
	want := `warning: -: ClusterPolicy "p": spec.match.kinds[0]: no built-in group has a kind Pood (did you mean Pod?)`
	if code != ExitOK || !strings.Contains(errOut, want) {
		t.Errorf("exit %d, stderr %q, want %q", code, errOut, want)
	}
}

// TestCIFlags: --fail-on sets the action from which a failure fails the check; --quiet prints
// the failures only; --namespace-labels and --namespaces give namespaceSelectors their labels;
// --exclude leaves files out; a kustomize tree's documents that are not objects are skipped,
// saying why.
func TestCIFlags(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	policy := write("policies.yaml", `apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: prod-team}
spec:
  enforcement: Warn
  match: {kinds: [Pod], namespaceSelector: {matchLabels: {env: production}}}
  rules: [{name: team, labels: {required: [team]}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: tagged}
spec:
  enforcement: Audit
  rules: [{name: tag, cel: {expression: "podSpec.containers.all(c, c.image.contains(':'))"}}]
`)
	pod := write("app/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {containers: [{name: c, image: nginx}]}\n")
	write("app/skip-me.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: other, namespace: shop}\nspec: {containers: [{name: c, image: nginx}]}\n")
	write("app/kustomization.yaml", "resources: [pod.yaml]\npatches: [{path: patch.yaml}]\n")
	write("app/patch.yaml", "- op: add\n  path: /metadata/labels\n  value: {team: a}\n")
	app := filepath.Dir(pod)

	for _, tt := range []struct {
		args       []string
		code       int
		out, notIn string
	}{
		// The selector does not match without the namespace's labels; the Audit failure does not fail.
		{[]string{}, ExitOK, "v1 Pod shop/web: AUDITED (0 pass, 1 fail, 0 error, 0 skip)", "prod-team"},
		{[]string{"--fail-on", "audit"}, ExitViolation, "", ""},
		{[]string{"--namespace-labels", "shop=env=production,tier=web"}, ExitOK, "FAIL  Warn  [prod-team/team]", ""},
		{[]string{"--namespace-labels", "shop=env=production", "--fail-on", "warn"}, ExitViolation, "", ""},
		{[]string{"--namespaces", write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: production}}\n"), "--fail-on=warn"}, ExitViolation, "[prod-team/team]", ""},
		{[]string{"--quiet", "--namespace-labels", "shop=env=staging"}, ExitOK, "FAIL  Audit [tagged/tag]", "PASS"},
	} {
		args := append([]string{"check", "-f", app, "--policies", policy, "--exclude", "skip-*"}, tt.args...)
		code, out, errOut := runCLI(t, "", args...)
		if code != tt.code || !strings.Contains(out, tt.out) || (tt.notIn != "" && strings.Contains(out, tt.notIn)) || strings.Contains(out, "shop/other") {
			t.Errorf("%v: exit %d (want %d)\n%s%s", tt.args, code, tt.code, out, errOut)
		}
		if want := "skipped: " + filepath.Join(app, "patch.yaml") + ": not a Kubernetes object: a list, want an object, in a kustomize tree"; !strings.Contains(errOut, want) {
			t.Errorf("%v: stderr %q, want %q", tt.args, errOut, want)
		}
	}
	for _, bad := range [][]string{{"--fail-on", "error"}, {"--namespace-labels", "shop"}, {"--namespace-labels", "Shop=a=b"}, {"--exclude", "[x"}} {
		if code, _, errOut := runCLI(t, "", append([]string{"check", "-f", app, "--policies", policy}, bad...)...); code != ExitUsage || !strings.Contains(errOut, bad[0]) {
			t.Errorf("%v: exit %d, stderr %q", bad, code, errOut)
		}
	}
	// Outside a kustomize tree, the same document is an error.
	if code, _, errOut := runCLI(t, "", "check", "-f", filepath.Join(app, "patch.yaml"), "--policies", policy); code != ExitUsage || !strings.Contains(errOut, "not a Kubernetes object") {
		t.Errorf("a patch given as a file: exit %d, stderr %q", code, errOut)
	}
}

// TestVersion: version prints the build's version, as text and JSON.
func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", "version")
	if code != ExitOK || !strings.HasPrefix(out, "kubectl-portcullis ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: exit %d, %q", code, out)
	}
	code, out, _ = runCLI(t, "", "version", "-o", "json")
	var info struct{ Version, GoVersion string }
	if code != ExitOK || json.Unmarshal([]byte(out), &info) != nil || info.Version == "" || info.GoVersion != runtime.Version() {
		t.Errorf("version -o json: exit %d, %q", code, out)
	}
}

// TestMutateInPlace: -i writes the changed file in place, as mutate prints it: the fields added,
// and every other byte of the file kept; a file nothing changes is not written.
func TestMutateInPlace(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/mutate/workloads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "workloads.yaml")
	untouched := filepath.Join(dir, "other.yaml")
	other := "# nothing to probe\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n"
	for name, content := range map[string]string{file: string(src), untouched: other} {
		if err := os.WriteFile(name, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.Stat(untouched)
	_, printed, _ := runCLI(t, "", "mutate", "-f", file, "--policies", "testdata/mutate/policies.yaml")
	code, out, errOut := runCLI(t, "", "mutate", "-f", dir, "--policies", "testdata/mutate/policies.yaml", "-i")
	if code != ExitViolation || out != "" || !strings.Contains(errOut, file+": 1 object(s) changed") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != printed {
		t.Errorf("the file written in place differs from what mutate prints:\n%s\n---\n%s", got, printed)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o640 {
		t.Errorf("the file's mode became %v", st.Mode().Perm())
	}
	after, _ := os.Stat(untouched)
	if content, _ := os.ReadFile(untouched); string(content) != other || !after.ModTime().Equal(before.ModTime()) {
		t.Error("a file nothing changes was written")
	}
	if code, _, errOut := runCLI(t, "", "mutate", "-f", "-", "--policies", "testdata/mutate/policies.yaml", "-i"); code != ExitUsage || !strings.Contains(errOut, "-i writes the files given with -f") {
		t.Errorf("-i with stdin: exit %d, %q", code, errOut)
	}
}

// TestMain turns the collector on for the tests that do not call Main, as Main does.
func TestMain(m *testing.M) {
	initgc.Restore()
	os.Exit(m.Run())
}

// Main turns the garbage collector back on, which internal/initgc holds off while the
// program's packages initialize: without it, check would never collect.
func TestMainTurnsTheCollectorOn(t *testing.T) {
	prev := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(prev)
	var out, errOut bytes.Buffer
	if code := Main(t.Context(), []string{"version"}, strings.NewReader(""), &out, &errOut); code != ExitOK {
		t.Fatalf("version: exit %d: %s", code, errOut.String())
	}
	if got := debug.SetGCPercent(prev); got < 0 {
		t.Errorf("GOGC %d after Main: the collector is still off", got)
	}
}
