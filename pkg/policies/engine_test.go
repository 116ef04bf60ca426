package policies

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

func TestEnforcement(t *testing.T) {
	failing := "rules:\n- name: r\n  cel: {expression: 'false', message: nope}\n"
	tests := []struct {
		name string
		spec string
		ns   string
		nsLb map[string]string
		want string
	}{
		{name: "default is Audit", spec: failing, ns: "shop", want: "p/r=fail:Audit"},
		{name: "Deny", spec: "enforcement: Deny\n" + failing, ns: "shop", want: "p/r=fail:Deny"},
		{name: "override by glob", spec: "enforcement: Deny\nenforcementOverrides:\n- {namespaces: ['dev-*'], enforcement: Warn}\n" + failing, ns: "dev-1", want: "p/r=fail:Warn"},
		{name: "override not selecting", spec: "enforcement: Deny\nenforcementOverrides:\n- {namespaces: ['dev-*'], enforcement: Warn}\n" + failing, ns: "shop", want: "p/r=fail:Deny"},
		{name: "override by selector", spec: "enforcement: Deny\nenforcementOverrides:\n- {namespaceSelector: {matchLabels: {env: staging}}, enforcement: Audit}\n" + failing,
			ns: "shop", nsLb: map[string]string{"env": "staging"}, want: "p/r=fail:Audit"},
		{name: "first override wins", spec: "enforcement: Deny\nenforcementOverrides:\n- {namespaces: ['dev-*'], enforcement: Audit}\n- {namespaces: ['dev-1'], enforcement: Warn}\n" + failing,
			ns: "dev-1", want: "p/r=fail:Audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEngine(t, time.Now(), clusterPolicy("p", tt.spec))
			res := mustResource(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: "+tt.ns+"}\n")
			var nsObj *corev1.Namespace
			if tt.nsLb != nil {
				nsObj = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tt.ns, Labels: tt.nsLb}}
			}
			got := summarize(e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: res, Namespace: nsObj}))
			if !slices.Equal(got, []string{tt.want}) {
				t.Errorf("got %v, want %s", got, tt.want)
			}
		})
	}
}

func TestFailurePolicy(t *testing.T) {
	// A CEL runtime error: the key does not exist.
	rule := "rules:\n- name: r\n  cel: {expression: \"object.data['missing'] == 'x'\"}\n"
	res := mustResource(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n")
	for _, tc := range []struct {
		fp      string
		want    Outcome
		message string
	}{{"Fail", Fail, "evaluation error (failurePolicy Fail): "}, {"Ignore", Error, "expression "}} {
		e := mustEngine(t, time.Now(), clusterPolicy("p", "enforcement: Deny\nfailurePolicy: "+tc.fp+"\n"+rule))
		got := e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: res})
		if len(got) != 1 || got[0].Result != tc.want || !strings.HasPrefix(got[0].Message, tc.message) {
			t.Errorf("failurePolicy %s: got %+v, want %s with message %q...", tc.fp, got, tc.want, tc.message)
		}
	}
}

func TestExceptions(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	policy := clusterPolicy("p", "enforcement: Deny\nmatch: {kinds: [Pod]}\nrules:\n- name: a\n  cel: {expression: 'false'}\n- name: b\n  cel: {expression: 'false'}\n")
	exception := func(ns, rules, expires, match string) string {
		return `apiVersion: portcullis.dev/v1alpha1
kind: PolicyException
metadata: {name: x, namespace: ` + ns + `}
spec:
  exceptions: [{policyName: p` + rules + `}]
  match: ` + match + `
  owner: team-a
  reason: migration in progress
  expires: "` + expires + `"
`
	}
	tests := []struct {
		name string
		exc  string
		want []string
	}{
		{"no exception", "", []string{"p/a=fail:Deny", "p/b=fail:Deny"}},
		{"all rules", exception("shop", "", "2027-01-01T00:00:00Z", "{}"), []string{"p/a=skip:Deny", "p/b=skip:Deny"}},
		{"one rule", exception("shop", ", ruleNames: [b]", "2027-01-01T00:00:00Z", "{}"), []string{"p/a=fail:Deny", "p/b=skip:Deny"}},
		{"expired", exception("shop", "", "2026-11-26T11:59:59Z", "{}"), []string{"p/a=fail:Deny", "p/b=fail:Deny"}},
		{"other namespace", exception("other", "", "2027-01-01T00:00:00Z", "{}"), []string{"p/a=fail:Deny", "p/b=fail:Deny"}},
		{"match not selecting", exception("shop", "", "2027-01-01T00:00:00Z", "{objectSelector: {matchLabels: {legacy: 'true'}}}"), []string{"p/a=fail:Deny", "p/b=fail:Deny"}},
		{"match selecting", exception("shop", "", "2027-01-01T00:00:00Z", "{kinds: [Pod], objectSelector: {matchLabels: {app.kubernetes.io/name: web}}}"), []string{"p/a=skip:Deny", "p/b=skip:Deny"}},
	}
	res := mustResource(t, testPod)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs := []string{policy}
			if tt.exc != "" {
				docs = append(docs, tt.exc)
			}
			got := mustEngine(t, now, docs...).Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: res})
			if !slices.Equal(summarize(got), tt.want) {
				t.Errorf("got %v, want %v", summarize(got), tt.want)
			}
			for _, r := range got {
				if r.Result == Skip && !strings.Contains(r.Message, "PolicyException shop/x (owner team-a, expires 2027-01-01T00:00:00Z): migration in progress") {
					t.Errorf("skip message does not name the exception: %q", r.Message)
				}
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{"no rules", "enforcement: Deny\nrules: []\n", []string{"spec.rules: Required value"}},
		{"bad enforcement", "enforcement: Block\n" + alwaysTrue, []string{`spec.enforcement: Unsupported value: "Block"`}},
		{"bad failure policy", "failurePolicy: Maybe\n" + alwaysTrue, []string{`spec.failurePolicy: Unsupported value: "Maybe"`}},
		{"override without selector", "enforcementOverrides: [{enforcement: Warn}]\n" + alwaysTrue, []string{"spec.enforcementOverrides[0]: Required value"}},
		{"override without enforcement", "enforcementOverrides: [{namespaces: [dev]}]\n" + alwaysTrue, []string{"spec.enforcementOverrides[0].enforcement: Required value"}},
		{"bad kind", "match: {kinds: [deployments]}\n" + alwaysTrue, []string{`spec.match.kinds[0]: Invalid value: "deployments"`}},
		{"bad operation", "match: {operations: [PATCH]}\n" + alwaysTrue, []string{`spec.match.operations[0]: Unsupported value: "PATCH"`}},
		{"bad namespace glob", "exclude: {namespaces: ['Kube_*']}\n" + alwaysTrue, []string{`spec.exclude.namespaces[0]: Invalid value: "Kube_*"`}},
		{"bad selector", "match: {objectSelector: {matchExpressions: [{key: a, operator: Near}]}}\n" + alwaysTrue, []string{"spec.match.objectSelector: Invalid value"}},
		{"two rule types", "rules:\n- name: r\n  cel: {expression: 'true'}\n  labels: {required: [a]}\n", []string{`spec.rules[0] (r): Invalid value: "labels, cel": exactly one of`}},
		{"no rule type", "rules:\n- name: r\n", []string{`spec.rules[0] (r): Invalid value: "": exactly one of`}},
		{"duplicate rule", "rules:\n- name: r\n  cel: {expression: 'true'}\n- name: r\n  cel: {expression: 'true'}\n", []string{`spec.rules[1] (r).name: Duplicate value: "r"`}},
		{"every error reported", "enforcement: Nope\nrules:\n- name: a\n  cel: {expression: '1'}\n- name: b\n  labels: {patterns: {team: '[z-a]'}}\n- name: c\n  resources: {requests: ['not a name']}\n",
			[]string{`spec.enforcement`, `spec.rules[0] (a).cel.expression: Invalid value: "1": must evaluate to bool but got int`, `spec.rules[1] (b).labels.patterns[team]`, `spec.rules[2] (c).resources.requests[0]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p v1alpha1.ClusterPolicy
			js := mustJSON(t, clusterPolicy("broken", tt.spec))
			if err := NewDecoder(true).Into(js, &p); err != nil {
				t.Fatal(err)
			}
			_, err := testCompiler.CompileClusterPolicy(&p)
			if err == nil {
				t.Fatal("compiled without error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, `ClusterPolicy "broken":`) {
				t.Errorf("error does not name the policy: %s", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

func TestExceptionCompileErrors(t *testing.T) {
	var x v1alpha1.PolicyException
	js := mustJSON(t, "apiVersion: portcullis.dev/v1alpha1\nkind: PolicyException\nmetadata: {name: x, namespace: shop}\nspec: {exceptions: [], owner: '', reason: ''}\n")
	if err := NewDecoder(true).Into(js, &x); err != nil {
		t.Fatal(err)
	}
	_, err := testCompiler.CompileException(&x)
	for _, w := range []string{"spec.owner: Required", "spec.reason: Required", "spec.expires: Required", "spec.exceptions: Required"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not contain %q", err, w)
		}
	}
}

// TestUpdateThatLeavesThePodAlone: like Pod Security Admission, an UPDATE that does not change
// the pod (here, a label added by a controller) is not judged again by the pod rules; the
// metadata rules still run, and an update that changes the pod is judged.
func TestUpdateThatLeavesThePodAlone(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("p", `enforcement: Deny
rules:
- name: pss
  podSecurity: {level: baseline}
- name: owner
  labels: {required: [owner]}
`))
	privileged := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop%s}\nspec: {containers: [{name: c, image: 'x:1', securityContext: {privileged: %s}}]}\n"
	old := mustResource(t, fmt.Sprintf(privileged, "", "true"))
	relabelled := mustResource(t, fmt.Sprintf(privileged, ", labels: {owner: team-a}", "true"))
	changed := mustResource(t, fmt.Sprintf(privileged, ", labels: {owner: team-a}", "false"))
	got := summarize(e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Update, Object: relabelled, OldObject: old}))
	if !slices.Equal(got, []string{"p/pss=skip:Deny", "p/owner=pass:Deny"}) {
		t.Errorf("relabel: %v", got)
	}
	got = summarize(e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Update, Object: mustResource(t, fmt.Sprintf(privileged, "", "true")), OldObject: changed}))
	if !slices.Equal(got, []string{"p/pss=fail:Deny", "p/owner=fail:Deny"}) {
		t.Errorf("an update that changes the pod: %v", got)
	}
	if got := summarize(e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: relabelled})); !slices.Equal(got, []string{"p/pss=fail:Deny", "p/owner=pass:Deny"}) {
		t.Errorf("create: %v", got)
	}
}

// TestExceptionGovernance: with exception namespaces set, a namespace admin cannot exempt their
// namespace from a ClusterPolicy, the platform team can from its own namespace, a tenant can
// still exempt from its own Policies, and no exception outlives the maximum lifetime.
func TestExceptionGovernance(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	c, err := NewCompiler(WithExceptions(ExceptionOptions{MaxLifetime: 90 * 24 * time.Hour, ClusterPolicyNamespaces: []string{"portcullis-system", "platform-*"}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCompiler(WithExceptions(ExceptionOptions{ClusterPolicyNamespaces: []string{"bad glob"}})); err == nil || !strings.Contains(err.Error(), `exception namespace "bad glob"`) {
		t.Errorf("a bad exception namespace glob: %v", err)
	}
	cluster := clusterPolicy("p", "enforcement: Deny\nmatch: {kinds: [Pod]}\nrules:\n- name: a\n  cel: {expression: 'false'}\n")
	tenant := "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: own, namespace: shop}\nspec:\n  enforcement: Deny\n  rules:\n  - name: a\n    cel: {expression: 'false'}\n"
	exception := func(ns, policy, match string) string {
		return `apiVersion: portcullis.dev/v1alpha1
kind: PolicyException
metadata: {name: x, namespace: ` + ns + `, creationTimestamp: "2026-11-20T00:00:00Z"}
spec:
  exceptions: [{policyName: ` + policy + `}]
  match: ` + match + `
  owner: team-a
  reason: migration in progress
  expires: "2027-01-01T00:00:00Z"
`
	}
	tests := []struct {
		name string
		exc  string
		want []string
	}{
		{"none", "", []string{"p/a=fail:Deny", "shop/own/a=fail:Deny"}},
		{"tenant exempts its namespace from a ClusterPolicy: not honoured", exception("shop", "p", "{}"), []string{"p/a=fail:Deny", "shop/own/a=fail:Deny"}},
		{"tenant exempts from its own Policy", exception("shop", "own", "{}"), []string{"p/a=fail:Deny", "shop/own/a=skip:Deny"}},
		{"platform exception for the namespace", exception("portcullis-system", "p", "{namespaces: [shop]}"), []string{"p/a=skip:Deny", "shop/own/a=fail:Deny"}},
		{"platform exception by glob namespace", exception("platform-exceptions", "p", "{namespaces: ['sh*']}"), []string{"p/a=skip:Deny", "shop/own/a=fail:Deny"}},
		{"platform exception for another namespace", exception("portcullis-system", "p", "{namespaces: [other]}"), []string{"p/a=fail:Deny", "shop/own/a=fail:Deny"}},
		{"platform exception without namespaces: its own only", exception("portcullis-system", "p", "{}"), []string{"p/a=fail:Deny", "shop/own/a=fail:Deny"}},
		{"platform exception cannot reach a tenant's Policy", exception("portcullis-system", "own", "{namespaces: [shop]}"), []string{"p/a=fail:Deny", "shop/own/a=fail:Deny"}},
	}
	res := mustResource(t, testPod)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs := []string{cluster, tenant}
			if tt.exc != "" {
				docs = append(docs, tt.exc)
			}
			got := mustEngineWith(t, c, now, docs...).Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: res})
			if !slices.Equal(summarize(got), tt.want) {
				t.Errorf("got %v, want %v", summarize(got), tt.want)
			}
		})
	}
	for _, tc := range []struct {
		expires string
		ok      bool
		applies string // the expiry in force
	}{
		{"2027-02-18T00:00:00Z", true, "2027-02-18T00:00:00Z"}, // 90 days after its creation
		{"2027-02-18T00:00:01Z", false, "2027-02-18T00:00:00Z"},
		{"9999-12-31T00:00:00Z", false, "2027-02-18T00:00:00Z"},
	} {
		var x v1alpha1.PolicyException
		doc := strings.Replace(exception("shop", "own", "{}"), "2027-01-01T00:00:00Z", tc.expires, 1)
		if err := NewDecoder(true).Into(mustJSON(t, doc), &x); err != nil {
			t.Fatal(err)
		}
		fe := c.ExceptionLifetime(&x, now)
		if ok := fe == nil; ok != tc.ok || (fe != nil && !strings.Contains(fe.Error(), `spec.expires: Invalid value: "`+tc.expires+`": must be at most 90d after the exception's creation`)) {
			t.Errorf("expires %s: %v", tc.expires, fe)
		}
		cx, err := c.CompileException(&x)
		if err != nil || cx.Expires().UTC().Format(time.RFC3339) != tc.applies || cx.Capped == tc.ok {
			t.Errorf("expires %s: applies until %v (capped %v), %v", tc.expires, cx.Expires(), cx.Capped, err)
		}
	}
	// Being created now, with no creation time yet: measured from now.
	var x v1alpha1.PolicyException
	if err := NewDecoder(true).Into(mustJSON(t, strings.Replace(exception("shop", "own", "{}"), `, creationTimestamp: "2026-11-20T00:00:00Z"`, "", 1)), &x); err != nil {
		t.Fatal(err)
	}
	if fe := c.ExceptionLifetime(&x, now); fe != nil {
		t.Errorf("37 days from now: %v", fe)
	}
	if fe := c.ExceptionLifetime(&x, now.Add(-60*24*time.Hour)); fe == nil {
		t.Error("97 days from its creation: accepted")
	}
}

// TestEvaluateLeavesTheNamespaceAsItWas: the engine only reads the request's Namespace, which the
// server takes from its informer cache without a copy (shared by every review in that namespace):
// matching, enforcement overrides, exceptions and CEL over namespaceObject, with every label and
// annotation read, leave it as it was.
func TestEvaluateLeavesTheNamespaceAsItWas(t *testing.T) {
	e := mustEngine(t, time.Now(),
		clusterPolicy("p", `enforcement: Deny
match: {kinds: [Pod], namespaceSelector: {matchLabels: {env: prod}}}
enforcementOverrides:
- {namespaceSelector: {matchExpressions: [{key: tier, operator: In, values: [web]}]}, enforcement: Warn}
rules:
- {name: labels, cel: {expression: "namespaceObject.metadata.labels.all(k, namespaceObject.metadata.labels[k] != '') && namespaceObject.metadata.annotations.exists(k, k == 'owner')"}}
- {name: spec, cel: {expression: "namespaceObject.spec.?finalizers.orValue([]).size() >= 0"}}
- {name: mutate, defaultProbes: {}}
`),
		`apiVersion: portcullis.dev/v1alpha1
kind: PolicyException
metadata: {name: x, namespace: shop}
spec:
  exceptions: [{policyName: p, ruleNames: [spec]}]
  match: {kinds: [Pod], namespaceSelector: {matchLabels: {env: prod}}}
  owner: team-a
  reason: testing
  expires: "2999-01-01T00:00:00Z"
`)
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod", "tier": "web", corev1.LabelMetadataName: "shop"},
			Annotations:   map[string]string{"owner": "team-a"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}},
		Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
	}
	before := ns.DeepCopy()
	res := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: [{name: c, image: nginx, ports: [{containerPort: 80, name: http}]}]}\n")
	req := &Request{Operation: v1alpha1.Create, Object: res, Namespace: ns}
	got := summarize(e.Evaluate(t.Context(), req))
	if want := []string{"p/labels=pass:Warn", "p/spec=skip:Warn"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := e.Mutate(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(ns, before) {
		t.Errorf("the namespace changed:\n got %+v\nwant %+v", ns, before)
	}
}
