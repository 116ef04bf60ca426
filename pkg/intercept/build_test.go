package intercept

import (
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

func res(group, version, resource, kind string) Resource {
	clusterScoped := kind == "Node" || kind == "ClusterPolicy" || kind == "Namespace"
	return Resource{GroupVersionResource: schema.GroupVersionResource{Group: group, Version: version, Resource: resource}, Kind: kind, Namespaced: !clusterScoped}
}

// served is a small API server: core, apps, batch, the excluded kinds, and a custom resource.
var served = Served{Resources: []Resource{
	res("", "v1", "pods", "Pod"),
	res("", "v1", "services", "Service"),
	res("", "v1", "replicationcontrollers", "ReplicationController"),
	res("", "v1", "events", "Event"),
	res("", "v1", "nodes", "Node"),
	res("", "v1", "namespaces", "Namespace"),
	res("apps", "v1", "deployments", "Deployment"),
	res("apps", "v1", "statefulsets", "StatefulSet"),
	res("apps", "v1", "daemonsets", "DaemonSet"),
	res("apps", "v1", "replicasets", "ReplicaSet"),
	res("batch", "v1", "jobs", "Job"),
	res("batch", "v1", "cronjobs", "CronJob"),
	res("events.k8s.io", "v1", "events", "Event"),
	res("coordination.k8s.io", "v1", "leases", "Lease"),
	res("portcullis.dev", "v1alpha1", "clusterpolicies", "ClusterPolicy"),
	res("example.com", "v2", "widgets", "Widget"),
}, FailedGroups: sets.New("metrics.k8s.io")}

func kinds(ss ...string) []policies.KindSelector {
	var out []policies.KindSelector
	for _, s := range ss {
		switch group, kind, grouped := strings.Cut(s, "/"); {
		case s == "*":
			out = append(out, policies.KindSelector{Any: true})
		case !grouped:
			out = append(out, policies.KindSelector{GroupKind: schema.GroupKind{Kind: s}, AnyGroup: true})
		default:
			if group == "core" {
				group = ""
			}
			out = append(out, policies.KindSelector{GroupKind: schema.GroupKind{Group: group, Kind: kind}})
		}
	}
	return out
}

func need(policy string, mutates bool, ops []v1alpha1.Operation, ks ...string) Need {
	return Need{Policy: policy, Interception: policies.Interception{Kinds: kinds(ks...), Operations: ops, Mutates: mutates}}
}

// tenantNeed is need for a namespaced Policy.
func tenantNeed(policy string, ops []v1alpha1.Operation, ks ...string) Need {
	n := need(policy, false, ops, ks...)
	n.Namespaced = true
	return n
}

var createUpdate = []v1alpha1.Operation{v1alpha1.Create, v1alpha1.Update}

// rule is a compact form of one rule: "group/version ops: resources".
func rule(r admissionregistrationv1.RuleWithOperations) string {
	var ops []string
	for _, op := range r.Operations {
		ops = append(ops, string(op))
	}
	return r.APIGroups[0] + "/" + r.APIVersions[0] + " " + strings.Join(ops, ",") + ": " + strings.Join(r.Resources, ",")
}

func compact(rs []admissionregistrationv1.RuleWithOperations) []string {
	out := []string{}
	for _, r := range rs {
		if *r.Scope != admissionregistrationv1.AllScopes {
			panic("scope")
		}
		out = append(out, rule(r))
	}
	return out
}

func TestBuild(t *testing.T) {
	podKinds := []string{"Pod", "apps/Deployment", "apps/StatefulSet", "apps/DaemonSet", "apps/ReplicaSet", "core/ReplicationController", "batch/Job", "batch/CronJob"}
	podRules := []string{"/v1 CREATE,UPDATE: pods,replicationcontrollers", "apps/v1 CREATE,UPDATE: daemonsets,deployments,replicasets,statefulsets", "batch/v1 CREATE,UPDATE: cronjobs,jobs"}
	for _, tc := range []struct {
		name                 string
		tenants              TenantKinds
		needs                []Need
		validating, mutating []string
		problems             map[string][]string // policy -> substrings, one per problem
	}{
		{name: "no policies intercept nothing", validating: []string{}, mutating: []string{}},
		{
			name:       "pods and their controllers",
			needs:      []Need{need("pss", false, createUpdate, podKinds...)},
			validating: podRules, mutating: []string{},
		},
		{
			name:       "a mutating policy is on both webhooks, with only the operations a mutation acts on",
			needs:      []Need{need("probes", true, []v1alpha1.Operation{v1alpha1.Create, v1alpha1.Delete}, "Pod")},
			validating: []string{"/v1 CREATE,DELETE: pods"}, mutating: []string{"/v1 CREATE: pods"},
		},
		{
			name:       "operations of several policies on one resource are merged",
			needs:      []Need{need("a", false, []v1alpha1.Operation{v1alpha1.Create}, "core/Service"), need("b", false, []v1alpha1.Operation{v1alpha1.Delete}, "Service"), need("c", false, createUpdate, "Pod")},
			validating: []string{"/v1 CREATE,DELETE: services", "/v1 CREATE,UPDATE: pods"}, mutating: []string{},
		},
		{
			name:       "custom resources through discovery",
			needs:      []Need{need("widgets", false, createUpdate, "example.com/Widget")},
			validating: []string{"example.com/v2 CREATE,UPDATE: widgets"}, mutating: []string{},
		},
		{
			name:       "a kind not served is reported",
			needs:      []Need{need("typo", false, createUpdate, "apps/Deploymnt", "Service")},
			validating: []string{"/v1 CREATE,UPDATE: services"}, mutating: []string{},
			problems: map[string][]string{"typo": {`kind "apps/Deploymnt" is not served`}},
		},
		{
			name:       "a kind in a group whose discovery failed is reported as unresolved",
			needs:      []Need{need("metrics", false, createUpdate, "metrics.k8s.io/PodMetrics")},
			validating: []string{}, mutating: []string{},
			problems: map[string][]string{"metrics": {`discovery of group "metrics.k8s.io" failed`}},
		},
		{
			name:       "excluded kinds are reported, never intercepted",
			needs:      []Need{need("sys", false, createUpdate, "Lease", "core/Node", "Event", "portcullis.dev/ClusterPolicy")},
			validating: []string{}, mutating: []string{},
			problems: map[string][]string{"sys": {
				`kind "Event" is never intercepted in events (events are written`,
				`kind "Lease" is never intercepted in leases.coordination.k8s.io`,
				`kind "core/Node" is never intercepted in nodes`,
				`kind "portcullis.dev/ClusterPolicy" is never intercepted in clusterpolicies.portcullis.dev (Portcullis's own`,
			}},
		},
		{
			name:       "every kind is every served kind but the excluded ones, silently",
			needs:      []Need{need("all", false, []v1alpha1.Operation{v1alpha1.Delete}, "*")},
			validating: []string{"/v1 DELETE: namespaces,pods,replicationcontrollers,services", "apps/v1 DELETE: daemonsets,deployments,replicasets,statefulsets", "batch/v1 DELETE: cronjobs,jobs", "example.com/v2 DELETE: widgets"},
			mutating:   []string{},
		},
		{
			name:       "tenants' Policies get only the kinds the platform allows them",
			tenants:    TenantKinds(kinds("Pod", "apps/Deployment")),
			needs:      []Need{tenantNeed("shop/svc", createUpdate, "core/Service", "Pod"), need("cluster-svc", false, []v1alpha1.Operation{v1alpha1.Delete}, "core/Service")},
			validating: []string{"/v1 CREATE,UPDATE: pods", "/v1 DELETE: services"}, mutating: []string{},
			problems: map[string][]string{"shop/svc": {`kind "core/Service" is not intercepted for namespaced Policies in services: tenants' Policies may have the webhooks intercept only namespaced kinds among [Pod, apps/Deployment] (--namespaced-policy-kinds)`}},
		},
		{
			name:       "a tenant's every kind is the kinds it is allowed, silently",
			tenants:    TenantKinds(kinds("Pod", "apps/Deployment")),
			needs:      []Need{tenantNeed("shop/all", createUpdate, "*")},
			validating: []string{"/v1 CREATE,UPDATE: pods", "apps/v1 CREATE,UPDATE: deployments"}, mutating: []string{},
		},
		{
			name:       "a tenant's Policy never intercepts a cluster-scoped kind",
			needs:      []Need{tenantNeed("shop/cluster", createUpdate, "*", "example.com/Widget", "portcullis.dev/ClusterPolicy", "core/Namespace")},
			validating: []string{"/v1 CREATE,UPDATE: pods,replicationcontrollers,services", "apps/v1 CREATE,UPDATE: daemonsets,deployments,replicasets,statefulsets", "batch/v1 CREATE,UPDATE: cronjobs,jobs", "example.com/v2 CREATE,UPDATE: widgets"},
			mutating:   []string{},
			problems: map[string][]string{"shop/cluster": {
				`kind "core/Namespace" is not intercepted for namespaced Policies in namespaces: tenants' Policies may have the webhooks intercept only namespaced kinds among every namespaced kind`,
				`kind "portcullis.dev/ClusterPolicy" is never intercepted`,
			}},
		},
		{
			name:       "CONNECT is reported",
			needs:      []Need{need("exec", false, []v1alpha1.Operation{v1alpha1.Connect, v1alpha1.Create}, "Pod")},
			validating: []string{"/v1 CREATE: pods"}, mutating: []string{},
			problems: map[string][]string{"exec": {"operation CONNECT is not intercepted"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Build(served, tc.tenants, tc.needs)
			if got := compact(plan.Validating); !slices.Equal(got, tc.validating) {
				t.Errorf("validating rules\n got %q\nwant %q", got, tc.validating)
			}
			if got := compact(plan.Mutating); !slices.Equal(got, tc.mutating) {
				t.Errorf("mutating rules\n got %q\nwant %q", got, tc.mutating)
			}
			if len(plan.NotIntercepted) != len(tc.problems) {
				t.Errorf("problems %q, want %q", plan.NotIntercepted, tc.problems)
			}
			for policy, want := range tc.problems {
				got := plan.NotIntercepted[policy]
				slices.Sort(got)
				if len(got) != len(want) {
					t.Errorf("%s: problems %q, want %q", policy, got, want)
					continue
				}
				for i := range want {
					if !strings.Contains(got[i], want[i]) {
						t.Errorf("%s: problem %q does not say %q", policy, got[i], want[i])
					}
				}
			}
		})
	}
}

// A plan is stable: the same needs in another order give the same rules, so an unchanged set of
// policies never rewrites a configuration.
func TestBuildIsStable(t *testing.T) {
	needs := []Need{need("a", true, createUpdate, "Pod", "core/Service"), need("b", false, []v1alpha1.Operation{v1alpha1.Delete}, "apps/Deployment", "example.com/Widget")}
	first := Build(served, nil, needs)
	slices.Reverse(needs)
	second := Build(served, nil, needs)
	if !slices.Equal(compact(first.Validating), compact(second.Validating)) || !slices.Equal(compact(first.Mutating), compact(second.Mutating)) {
		t.Errorf("order changed the plan:\n%q\n%q", compact(first.Validating), compact(second.Validating))
	}
}

// Rules for a group whose discovery failed stay in place: an aggregated API that is briefly down
// does not switch off the policies on its kinds.
func TestSetRulesKeepsFailedGroups(t *testing.T) {
	metricsRule := Build(Served{Resources: []Resource{res("metrics.k8s.io", "v1beta1", "podmetrics", "PodMetrics")}}, nil, []Need{need("m", false, createUpdate, "metrics.k8s.io/PodMetrics")}).Validating
	have := slices.Clone(metricsRule)
	want := Build(served, nil, []Need{need("p", false, createUpdate, "Pod")}).Validating
	if !setRules(&have, want, sets.New("metrics.k8s.io")) {
		t.Fatal("no change reported")
	}
	if got := compact(have); !slices.Equal(got, []string{"/v1 CREATE,UPDATE: pods", "metrics.k8s.io/v1beta1 CREATE,UPDATE: podmetrics"}) {
		t.Errorf("rules %q", got)
	}
	if setRules(&have, want, sets.New("metrics.k8s.io")) {
		t.Error("a second identical sync reported a change")
	}
	if !setRules(&have, nil, nil) || len(have) != 0 {
		t.Errorf("no policies left rules %q", compact(have))
	}
}

// TestScopes: the audit lists what the webhooks would be sent, cluster-wide for a ClusterPolicy
// and only in their own namespaces for tenants' Policies, whatever kinds they name.
func TestScopes(t *testing.T) {
	served := Served{Resources: []Resource{
		{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true},
		{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, Kind: "ConfigMap", Namespaced: true},
		{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, Kind: "Secret", Namespaced: true},
		{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "events"}, Kind: "Event", Namespaced: true},
	}}
	kinds := func(ks ...string) policies.Interception {
		in := policies.Interception{Operations: []v1alpha1.Operation{v1alpha1.Create}}
		for _, k := range ks {
			sel, err := policies.ParseKindSelector(k)
			if err != nil {
				t.Fatal(err)
			}
			in.Kinds = append(in.Kinds, sel)
		}
		return in
	}
	tenants := TenantKinds{mustKind(t, "Pod"), mustKind(t, "ConfigMap")}
	ns := func(i policies.Interception) policies.Interception { i.Namespaced = true; return i }
	got := Scopes(served, tenants, []Need{
		{Policy: "pods", Interception: kinds("Pod")},
		{Policy: "a/cms", Namespace: "a", Interception: ns(kinds("ConfigMap", "Pod"))},
		{Policy: "b/all", Namespace: "b", Interception: ns(kinds("*"))},
		{Policy: "events", Interception: kinds("Event")},
	})
	var s []string
	for _, sc := range got {
		where := "everywhere"
		if sc.Namespaces != nil {
			where = strings.Join(sets.List(sc.Namespaces), ",")
		}
		s = append(s, sc.Resource.Resource+"@"+where)
	}
	if want := "configmaps@a,b pods@everywhere"; strings.Join(s, " ") != want {
		t.Errorf("scopes %q, want %q", strings.Join(s, " "), want)
	}
}

func mustKind(t *testing.T, s string) policies.KindSelector {
	t.Helper()
	k, err := policies.ParseKindSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
