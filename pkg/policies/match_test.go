package policies

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

const alwaysTrue = "rules:\n- name: r\n  cel: {expression: 'true'}\n"

func TestMatching(t *testing.T) {
	pod := mustResource(t, testPod)
	deploy := mustResource(t, testDeployment)
	cronjob := mustResource(t, `apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: shop}
spec:
  schedule: "@daily"
  jobTemplate: {spec: {template: {spec: {restartPolicy: OnFailure, containers: [{name: c, image: x:1}]}}}}
`)
	service := mustResource(t, "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n")
	widget := mustResource(t, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: dev-1, labels: {tier: gold}}\n")
	clusterRole := mustResource(t, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}\n")
	ns := mustResource(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: dev-2, labels: {env: dev}}\n")

	tests := []struct {
		name   string
		match  string
		extra  string // spec fields besides match
		op     v1alpha1.Operation
		nsObj  *corev1.Namespace
		want   []*Resource
		reject []*Resource
	}{
		{name: "empty match selects every kind on CREATE", match: "", want: []*Resource{pod, deploy, service, widget, clusterRole}},
		{name: "Pod covers pod controllers by default", match: "kinds: [Pod]", want: []*Resource{pod, deploy, cronjob}, reject: []*Resource{service, widget}},
		{name: "podControllers false keeps Pods only", match: "kinds: [Pod]", extra: "podControllers: false\n", want: []*Resource{pod}, reject: []*Resource{deploy, cronjob}},
		{name: "group/Kind", match: "kinds: [apps/Deployment]", want: []*Resource{deploy}, reject: []*Resource{pod, cronjob}},
		{name: "core group spelled core", match: "kinds: [core/Service]", want: []*Resource{service}, reject: []*Resource{pod}},
		{name: "wrong group", match: "kinds: [example.com/Deployment]", reject: []*Resource{deploy}},
		{name: "Kind in any group", match: "kinds: [Widget]", want: []*Resource{widget}},
		{name: "star", match: "kinds: ['*']", want: []*Resource{pod, widget, clusterRole}},
		{name: "default operations exclude DELETE", match: "", op: v1alpha1.Delete, reject: []*Resource{pod}},
		{name: "explicit DELETE", match: "operations: [DELETE]", op: v1alpha1.Delete, want: []*Resource{pod}},
		{name: "UPDATE only", match: "operations: [UPDATE]", reject: []*Resource{pod}},
		{name: "namespace glob", match: "namespaces: ['dev-*']", want: []*Resource{widget}, reject: []*Resource{pod, clusterRole}},
		{name: "namespace glob on a Namespace object uses its name", match: "namespaces: ['dev-*']", want: []*Resource{ns}},
		{name: "exact namespace", match: "namespaces: [shop]", want: []*Resource{pod, deploy}, reject: []*Resource{widget}},
		{name: "object selector", match: "objectSelector: {matchLabels: {tier: gold}}", want: []*Resource{widget}, reject: []*Resource{pod}},
		{name: "namespace selector on the offline metadata.name label", match: "namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}", want: []*Resource{pod}, reject: []*Resource{widget}},
		{name: "namespace selector with the Namespace object's labels", match: "namespaceSelector: {matchLabels: {env: prod}}",
			nsObj: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}}}, want: []*Resource{pod}},
		{name: "namespace selector does not filter cluster-scoped objects", match: "namespaceSelector: {matchLabels: {env: prod}}", want: []*Resource{clusterRole}},
		{name: "namespace selector on a Namespace uses its own labels", match: "namespaceSelector: {matchLabels: {env: dev}}", want: []*Resource{ns}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.extra + alwaysTrue
			if tt.match != "" {
				spec = tt.extra + "match:\n" + indentYAML(tt.match) + alwaysTrue
			}
			e := mustEngine(t, time.Now(), clusterPolicy("p", spec))
			op := tt.op
			if op == "" {
				op = v1alpha1.Create
			}
			check := func(res *Resource, want bool) {
				req := &Request{Operation: op, Object: res, Namespace: tt.nsObj}
				if op == v1alpha1.Delete {
					req = &Request{Operation: op, OldObject: res, Namespace: tt.nsObj}
				}
				got := len(e.Evaluate(t.Context(), req)) > 0
				if got != want {
					t.Errorf("%s: matched=%v, want %v", res.Ref(), got, want)
				}
			}
			for _, r := range tt.want {
				check(r, true)
			}
			for _, r := range tt.reject {
				check(r, false)
			}
		})
	}
}

func TestExclude(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("p", `match: {kinds: [Pod]}
exclude:
  namespaces: [shop]
  objectSelector: {matchLabels: {legacy: "true"}}
`+alwaysTrue))
	legacy := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: shop, labels: {legacy: \"true\"}}\nspec: {containers: [{name: c, image: x:1}]}\n")
	legacyElsewhere := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: other, labels: {legacy: \"true\"}}\nspec: {containers: [{name: c, image: x:1}]}\n")
	plain := mustResource(t, testPod)
	for _, tc := range []struct {
		res  *Resource
		want bool
	}{{legacy, false}, {legacyElsewhere, true}, {plain, true}} {
		got := len(e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: tc.res})) > 0
		if got != tc.want {
			t.Errorf("%s %v: matched=%v, want %v", tc.res.Ref(), tc.res.Meta.GetLabels(), got, tc.want)
		}
	}
}

func TestNamespacedPolicyAppliesInItsNamespaceOnly(t *testing.T) {
	e := mustEngine(t, time.Now(), "apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: p, namespace: shop}\nspec:\n"+indentYAML(alwaysTrue))
	inShop := mustResource(t, testPod)
	elsewhere := mustResource(t, "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: other}\nspec: {containers: [{name: c, image: x:1}]}\n")
	if got := summarize(e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: inShop})); !slices.Equal(got, []string{"shop/p/r=pass:Audit"}) {
		t.Errorf("in its namespace: %v", got)
	}
	if got := e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: elsewhere}); len(got) != 0 {
		t.Errorf("in another namespace: %v", summarize(got))
	}
}
