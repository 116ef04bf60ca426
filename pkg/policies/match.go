package policies

import (
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// matchesPod reports whether the entry selects core Pods, which pulls in the pod controllers.
func (k KindSelector) matchesPod() bool {
	return k.Selects(schema.GroupKind{Kind: "Pod"})
}

// matcher is a compiled MatchResources.
type matcher struct {
	kinds          []KindSelector
	warnings       []string // what may be wrong but cannot be known offline: kinds no built-in group has
	podControllers bool     // a kind entry selects Pods and the policy extends Pod rules to controllers
	ops            map[v1alpha1.Operation]bool
	namespaces     []glob
	nsSelector     labels.Selector // nil: not set
	objSelector    labels.Selector // nil: not set
	empty          bool            // nothing set at all
}

var kindPattern = regexp.MustCompile(`^[A-Z][A-Za-z0-9]*$`)

// compileMatch compiles m. defaultOps are the operations when m lists none (nil: any).
func compileMatch(m *v1alpha1.MatchResources, podControllers bool, defaultOps []v1alpha1.Operation, path *field.Path) (*matcher, field.ErrorList) {
	var errs field.ErrorList
	c := &matcher{}
	for i, k := range m.Kinds {
		p := path.Child("kinds").Index(i)
		km, err := ParseKindSelector(k)
		if err != nil {
			errs = append(errs, field.Invalid(p, k, err.Error()))
			continue
		}
		switch bad, warning := checkKind(km); {
		case bad != "":
			errs = append(errs, field.Invalid(p, k, bad))
			continue
		case warning != "":
			c.warnings = append(c.warnings, fmt.Sprintf("%s: %s", p, warning))
		}
		c.kinds = append(c.kinds, km)
		if podControllers && km.matchesPod() {
			c.podControllers = true
		}
	}
	ops := m.Operations
	if len(ops) == 0 {
		ops = defaultOps
	}
	if len(ops) > 0 {
		c.ops = map[v1alpha1.Operation]bool{}
	}
	for i, op := range ops {
		switch op {
		case v1alpha1.Create, v1alpha1.Update, v1alpha1.Delete, v1alpha1.Connect:
			c.ops[op] = true
		default:
			errs = append(errs, field.NotSupported(path.Child("operations").Index(i), op, []string{"CREATE", "UPDATE", "DELETE", "CONNECT"}))
		}
	}
	var gerrs field.ErrorList
	c.namespaces, gerrs = compileNamespaceGlobs(m.Namespaces, path.Child("namespaces"))
	errs = append(errs, gerrs...)
	var err error
	if m.NamespaceSelector != nil {
		if c.nsSelector, err = metav1.LabelSelectorAsSelector(m.NamespaceSelector); err != nil {
			errs = append(errs, field.Invalid(path.Child("namespaceSelector"), m.NamespaceSelector, err.Error()))
		}
	}
	if m.ObjectSelector != nil {
		if c.objSelector, err = metav1.LabelSelectorAsSelector(m.ObjectSelector); err != nil {
			errs = append(errs, field.Invalid(path.Child("objectSelector"), m.ObjectSelector, err.Error()))
		}
	}
	c.empty = len(m.Kinds) == 0 && len(m.Operations) == 0 && len(m.Namespaces) == 0 && m.NamespaceSelector == nil && m.ObjectSelector == nil
	return c, errs
}

func compileNamespaceGlobs(patterns []string, path *field.Path) ([]glob, field.ErrorList) {
	var errs field.ErrorList
	out := make([]glob, 0, len(patterns))
	for i, ns := range patterns {
		p := path.Index(i)
		g, err := compileGlob(ns)
		if err != nil {
			errs = append(errs, field.Invalid(p, ns, err.Error()))
			continue
		}
		probe := strings.NewReplacer("*", "a", "?", "a").Replace(ns)
		if msgs := validation.IsDNS1123Label(probe); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p, ns, "must be a namespace name or a glob of one: "+strings.Join(msgs, "; ")))
			continue
		}
		out = append(out, g)
	}
	return out, errs
}

// ParseKindSelector parses an entry of match.kinds: "*", "Kind", "group/Kind" or "core/Kind".
func ParseKindSelector(s string) (KindSelector, error) {
	if s == "*" {
		return KindSelector{Any: true}, nil
	}
	group, kind, grouped := strings.Cut(s, "/")
	if !grouped {
		kind, group = group, ""
	}
	if !kindPattern.MatchString(kind) {
		return KindSelector{}, fmt.Errorf(`must be "*", "Kind" or "group/Kind", with Kind in CamelCase`)
	}
	if grouped {
		if group == "core" {
			group = ""
		} else if msgs := validation.IsDNS1123Subdomain(group); len(msgs) > 0 {
			return KindSelector{}, fmt.Errorf("group: %s", strings.Join(msgs, "; "))
		}
	}
	return KindSelector{AnyGroup: !grouped, GroupKind: schema.GroupKind{Group: group, Kind: kind}}, nil
}

// matchKind reports whether the kind is selected, directly or as a pod controller.
func (m *matcher) matchKind(gk schema.GroupKind) bool {
	if len(m.kinds) == 0 {
		return true
	}
	for _, k := range m.kinds {
		if k.Selects(gk) {
			return true
		}
	}
	return m.podControllers && podControllerKinds[gk]
}

// matches reports whether every field that is set selects the request.
func (m *matcher) matches(req *Request, res *Resource, nsLabels labels.Set) bool {
	if !m.matchKind(res.GVK.GroupKind()) {
		return false
	}
	if m.ops != nil && !m.ops[req.Operation] {
		return false
	}
	ns := res.Meta.GetNamespace()
	isNamespace := res.GVK.Group == "" && res.GVK.Kind == "Namespace"
	if len(m.namespaces) > 0 {
		name := ns
		if isNamespace {
			name = res.Meta.GetName()
		}
		if name == "" || !matchAny(m.namespaces, name) {
			return false
		}
	}
	if m.nsSelector != nil {
		switch {
		case isNamespace:
			if !m.nsSelector.Matches(labels.Set(res.Meta.GetLabels())) {
				return false
			}
		case ns != "":
			if !m.nsSelector.Matches(nsLabels) {
				return false
			}
		}
		// Other cluster-scoped resources are not filtered by namespaceSelector, as in webhooks.
	}
	if m.objSelector != nil && !m.objSelector.Matches(labels.Set(res.Meta.GetLabels())) {
		return false
	}
	return true
}

// namespaceLabels returns the labels of the request's namespace; when the namespace object is
// unknown (offline), the immutable kubernetes.io/metadata.name label the API server sets.
func namespaceLabels(ns *corev1.Namespace, name string) labels.Set {
	if ns != nil {
		return labels.Set(ns.Labels)
	}
	if name == "" {
		return nil
	}
	return labels.Set{corev1.LabelMetadataName: name}
}
