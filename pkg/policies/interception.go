package policies

import (
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// KindSelector is one kind a policy matches: Kind in Group, Kind in any group (AnyGroup), or
// every kind (Any).
type KindSelector struct {
	schema.GroupKind
	AnyGroup, Any bool
}

// String is the selector as a policy writes it in match.kinds.
func (k KindSelector) String() string {
	switch {
	case k.Any:
		return "*"
	case k.AnyGroup:
		return k.Kind
	case k.Group == "":
		return "core/" + k.Kind
	}
	return k.Group + "/" + k.Kind
}

// Selects reports whether k selects gk.
func (k KindSelector) Selects(gk schema.GroupKind) bool {
	return k.Any || (k.Kind == gk.Kind && (k.AnyGroup || k.Group == gk.Group))
}

// Interception is what a policy needs the API server to send it: the requests for these kinds
// and operations. A webhook configuration that leaves one out leaves the policy unenforced there.
type Interception struct {
	// Kinds are the kinds the policy matches, the pod controllers included when its rules for
	// Pods extend to them.
	Kinds []KindSelector
	// Operations are the operations it judges.
	Operations []v1alpha1.Operation
	// Mutates is set when the policy mutates (defaultProbes, verifyImages pinning digests): the
	// mutating webhook must send it its kinds too.
	Mutates bool
	// Namespaced is set for a namespaced Policy: tenant input, which applies in its namespace only.
	Namespaced bool
}

// Interception returns what the policy needs intercepted.
func (p *CompiledPolicy) Interception() Interception {
	in := Interception{Mutates: p.mutating, Namespaced: p.Namespace != ""}
	m := p.match
	if len(m.kinds) == 0 {
		in.Kinds = []KindSelector{{Any: true}}
	}
	in.Kinds = append(in.Kinds, m.kinds...)
	if m.podControllers {
		for gk := range podControllerKinds {
			in.Kinds = append(in.Kinds, KindSelector{GroupKind: gk})
		}
	}
	slices.SortFunc(in.Kinds, func(a, b KindSelector) int { return strings.Compare(a.String(), b.String()) })
	in.Kinds = slices.Compact(in.Kinds)
	if m.ops == nil {
		in.Operations = []v1alpha1.Operation{v1alpha1.Create, v1alpha1.Update, v1alpha1.Delete, v1alpha1.Connect}
	}
	for op := range m.ops {
		in.Operations = append(in.Operations, op)
	}
	slices.Sort(in.Operations)
	return in
}
