package intercept

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/utils/ptr"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Resource is a resource the API server serves, in its preferred version, as discovery lists it.
type Resource struct {
	schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// Need is what one policy needs intercepted.
type Need struct {
	// Policy names the policy as its status does: the name of a ClusterPolicy, "namespace/name"
	// of a Policy.
	Policy string
	// Namespace is a Policy's namespace, where alone it applies; empty for a ClusterPolicy.
	Namespace string
	policies.Interception
}

// GroupVersionKind is the kind of the resource's objects.
func (r Resource) GroupVersionKind() schema.GroupVersionKind {
	return r.GroupVersion().WithKind(r.Kind)
}

// NeedOf is what policy p needs intercepted.
func NeedOf(p *policies.CompiledPolicy) Need {
	return Need{Policy: p.Name, Namespace: p.Namespace, Interception: p.Interception()}
}

// Plan is what both workload webhooks must intercept, and what cannot be.
type Plan struct {
	Validating, Mutating []admissionregistrationv1.RuleWithOperations
	// NotIntercepted says, per policy, which kinds or operations it matches that no webhook sends
	// it, and why.
	NotIntercepted map[string][]string
}

// Served is what discovery found: the resources, and the groups whose discovery failed (an
// aggregated API that is down), whose resources are unknown for now.
type Served struct {
	Resources    []Resource
	FailedGroups sets.Set[string]
}

// never lists what is never intercepted, whatever a policy says, and why. Portcullis's own
// namespace and the system namespaces are left out by the webhooks' namespaceSelector.
var never = map[schema.GroupResource]string{
	{Group: v1alpha1.GroupVersion.Group}:                                   "Portcullis's own objects are judged by its policy webhook",
	{Group: "coordination.k8s.io", Resource: "leases"}:                     "leases keep leader election and node heartbeats alive",
	{Group: "", Resource: "events"}:                                        "events are written by every component, often under pressure",
	{Group: "events.k8s.io", Resource: "events"}:                           "events are written by every component, often under pressure",
	{Group: "authentication.k8s.io"}:                                       "token and user reviews authenticate every request, the webhook's own included",
	{Group: "authorization.k8s.io"}:                                        "access reviews authorize every request, the webhook's own included",
	{Group: "", Resource: "nodes"}:                                         "nodes must be able to register and report while the webhook is down",
	{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}: "kubelets need their certificates to rejoin the cluster",
	{Group: "admissionregistration.k8s.io"}:                                "the API server never sends admission configuration to webhooks",
	{Group: "flowcontrol.apiserver.k8s.io"}:                                "the API server keeps its own flow control objects",
}

// Never returns why gr is never intercepted, or "".
func Never(gr schema.GroupResource) string {
	if why, ok := never[gr]; ok {
		return why
	}
	return never[schema.GroupResource{Group: gr.Group}]
}

// mutatingOps are the operations a mutation can act on.
var mutatingOps = sets.New(admissionregistrationv1.Create, admissionregistrationv1.Update)

// TenantKinds bounds what namespaced Policies, which tenants write, can make the webhooks
// intercept: every interception is cluster-wide, and with failurePolicy Fail it is a write that
// waits for Portcullis in every namespace. Nil allows every namespaced kind.
type TenantKinds []policies.KindSelector

func (t TenantKinds) allow(r Resource) bool {
	if !r.Namespaced {
		return false // a Policy applies in its own namespace only
	}
	return t == nil || slices.ContainsFunc(t, func(k policies.KindSelector) bool {
		return k.Selects(schema.GroupKind{Group: r.Group, Kind: r.Kind})
	})
}

func (t TenantKinds) String() string {
	out := make([]string, 0, len(t))
	for _, k := range t {
		out = append(out, k.String())
	}
	return strings.Join(out, ", ")
}

// Build returns the rules that send every policy what it needs, from what the API server serves.
// Namespaced Policies get only the kinds tenants allows them.
func Build(served Served, tenants TenantKinds, needs []Need) Plan {
	byKind := map[string][]Resource{}
	for _, r := range served.Resources {
		byKind[r.Kind] = append(byKind[r.Kind], r)
	}
	validating, mutating := map[schema.GroupVersionResource]sets.Set[admissionregistrationv1.OperationType]{}, map[schema.GroupVersionResource]sets.Set[admissionregistrationv1.OperationType]{}
	plan := Plan{NotIntercepted: map[string][]string{}}
	for _, n := range needs {
		var ops []admissionregistrationv1.OperationType
		for _, op := range n.Operations {
			if op == v1alpha1.Connect {
				plan.NotIntercepted[n.Policy] = append(plan.NotIntercepted[n.Policy],
					"operation CONNECT is not intercepted: it opens a connection through a subresource (pods/exec, pods/portforward), which carries no object of the policy's kinds")
				continue
			}
			ops = append(ops, admissionregistrationv1.OperationType(op))
		}
		resources, notes := n.resolve(served, tenants, byKind)
		if len(notes) > 0 {
			plan.NotIntercepted[n.Policy] = append(plan.NotIntercepted[n.Policy], notes...)
		}
		for _, r := range resources {
			add(validating, r.GroupVersionResource, ops)
			if n.Mutates {
				add(mutating, r.GroupVersionResource, slices.DeleteFunc(slices.Clone(ops), func(op admissionregistrationv1.OperationType) bool { return !mutatingOps.Has(op) }))
			}
		}
	}
	plan.Validating, plan.Mutating = rules(validating), rules(mutating)
	return plan
}

// resolve returns the served resources the need's kinds select that may be intercepted for
// it, and why some it names cannot be.
func (n *Need) resolve(served Served, tenants TenantKinds, byKind map[string][]Resource) (out []Resource, notes []string) {
	for _, k := range n.Kinds {
		resources, why := resolve(k, served, byKind)
		if why != "" {
			notes = append(notes, why)
		}
		if n.Namespaced {
			var refused []string
			resources, refused = bound(resources, tenants)
			if len(refused) > 0 && !k.Any {
				notes = append(notes, fmt.Sprintf(
					"kind %q is not intercepted for namespaced Policies in %s: tenants' Policies may have the webhooks intercept only namespaced kinds among %s (--namespaced-policy-kinds)",
					k.String(), strings.Join(refused, ", "), tenantList(tenants)))
			}
		}
		out = append(out, resources...)
	}
	return out, notes
}

// Scope is a resource some policies match, and where: what a background scan lists.
type Scope struct {
	Resource
	// Namespaces are where the resource is matched; nil is everywhere (a ClusterPolicy matches
	// it). A namespaced Policy matches in its own namespace only.
	Namespaces sets.Set[string]
}

// Scopes returns the resources the policies match, each with where, resolved and bounded as
// for the webhooks: what no webhook could be sent is not scanned either, and tenants' Policies
// never widen a scan past their own namespaces.
func Scopes(served Served, tenants TenantKinds, needs []Need) []Scope {
	byKind := map[string][]Resource{}
	for _, r := range served.Resources {
		byKind[r.Kind] = append(byKind[r.Kind], r)
	}
	scopes := map[schema.GroupVersionResource]*Scope{}
	for _, n := range needs {
		resources, _ := n.resolve(served, tenants, byKind)
		for _, r := range resources {
			sc := scopes[r.GroupVersionResource]
			if sc == nil {
				sc = &Scope{Resource: r, Namespaces: sets.New[string]()}
				scopes[r.GroupVersionResource] = sc
			}
			switch {
			case !n.Namespaced:
				sc.Namespaces = nil
			case sc.Namespaces != nil:
				sc.Namespaces.Insert(n.Namespace)
			}
		}
	}
	out := make([]Scope, 0, len(scopes))
	for _, sc := range scopes {
		out = append(out, *sc)
	}
	slices.SortFunc(out, func(a, b Scope) int {
		return strings.Compare(a.String(), b.String())
	})
	return out
}

// bound keeps the resources tenants may have intercepted and names the others.
func bound(resources []Resource, tenants TenantKinds) (kept []Resource, refused []string) {
	for _, r := range resources {
		if tenants.allow(r) {
			kept = append(kept, r)
		} else {
			refused = append(refused, r.GroupResource().String())
		}
	}
	return kept, refused
}

func tenantList(t TenantKinds) string {
	if t == nil {
		return "every namespaced kind"
	}
	return "[" + t.String() + "]"
}

// resolve returns the resources k selects that may be intercepted, and why some it names cannot.
func resolve(k policies.KindSelector, served Served, byKind map[string][]Resource) ([]Resource, string) {
	if k.Any {
		return slices.DeleteFunc(slices.Clone(served.Resources), func(r Resource) bool { return Never(r.GroupResource()) != "" }), ""
	}
	var found, out []Resource
	for _, r := range byKind[k.Kind] {
		if k.AnyGroup || r.Group == k.Group {
			found = append(found, r)
		}
	}
	var excluded []string
	for _, r := range found {
		if why := Never(r.GroupResource()); why != "" {
			excluded = append(excluded, fmt.Sprintf("%s (%s)", r.GroupResource(), why))
			continue
		}
		out = append(out, r)
	}
	switch {
	case len(found) == 0 && !k.AnyGroup && served.FailedGroups.Has(k.Group):
		return nil, fmt.Sprintf("kind %q could not be resolved: discovery of group %q failed; the rules already in place for it are kept", k.String(), k.Group)
	case len(found) == 0:
		return nil, fmt.Sprintf("kind %q is not served by the API server (a typo, or a CustomResourceDefinition not installed yet)", k.String())
	case len(excluded) > 0:
		return out, fmt.Sprintf("kind %q is never intercepted in %s", k.String(), strings.Join(excluded, ", "))
	}
	return out, ""
}

func add(m map[schema.GroupVersionResource]sets.Set[admissionregistrationv1.OperationType], gvr schema.GroupVersionResource, ops []admissionregistrationv1.OperationType) {
	if len(ops) == 0 {
		return
	}
	if m[gvr] == nil {
		m[gvr] = sets.New[admissionregistrationv1.OperationType]()
	}
	m[gvr].Insert(ops...)
}

// rules groups resources with the same group, version and operations into one rule, in a stable
// order, so that an unchanged plan never rewrites a configuration.
func rules(m map[schema.GroupVersionResource]sets.Set[admissionregistrationv1.OperationType]) []admissionregistrationv1.RuleWithOperations {
	type key struct{ group, version, ops string }
	grouped := map[key][]string{}
	for gvr, ops := range m {
		k := key{gvr.Group, gvr.Version, strings.Join(sortedOps(ops), ",")}
		grouped[k] = append(grouped[k], gvr.Resource)
	}
	keys := make([]key, 0, len(grouped))
	for k := range grouped {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(strings.Compare(a.group, b.group), strings.Compare(a.version, b.version), strings.Compare(a.ops, b.ops))
	})
	out := make([]admissionregistrationv1.RuleWithOperations, 0, len(keys))
	for _, k := range keys {
		resources := grouped[k]
		slices.Sort(resources)
		var ops []admissionregistrationv1.OperationType
		for _, op := range strings.Split(k.ops, ",") {
			ops = append(ops, admissionregistrationv1.OperationType(op))
		}
		out = append(out, admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{k.group}, APIVersions: []string{k.version}, Resources: resources, Scope: ptr.To(admissionregistrationv1.AllScopes)}})
	}
	return out
}

func sortedOps(s sets.Set[admissionregistrationv1.OperationType]) []string {
	out := make([]string, 0, s.Len())
	for op := range s {
		out = append(out, string(op))
	}
	slices.Sort(out)
	return out
}
