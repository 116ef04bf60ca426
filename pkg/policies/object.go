package policies

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// Object is a ClusterPolicy, a Policy or a PolicyException.
type Object interface {
	metav1.Object
	runtime.Object
}

// Kinds of the policy objects, as NewObject and KindOf name them.
const (
	KindClusterPolicy   = "ClusterPolicy"
	KindPolicy          = "Policy"
	KindPolicyException = "PolicyException"
)

// NewObject returns an empty object of a policy kind, to decode into; false for any other kind.
func NewObject(kind string) (Object, bool) {
	switch kind {
	case KindClusterPolicy:
		return &v1alpha1.ClusterPolicy{}, true
	case KindPolicy:
		return &v1alpha1.Policy{}, true
	case KindPolicyException:
		return &v1alpha1.PolicyException{}, true
	}
	return nil, false
}

// KindOf names the kind of a policy object.
func KindOf(obj Object) string {
	switch obj.(type) {
	case *v1alpha1.ClusterPolicy:
		return KindClusterPolicy
	case *v1alpha1.Policy:
		return KindPolicy
	case *v1alpha1.PolicyException:
		return KindPolicyException
	}
	return fmt.Sprintf("%T", obj)
}

// Compile compiles a policy object: a ClusterPolicy or a Policy into a policy, a
// PolicyException into an exception. It is the one place that tells the kinds apart, for the
// policy controller, the policy webhook and the CLI.
func (c *Compiler) Compile(obj Object) (*CompiledPolicy, *CompiledException, error) {
	switch o := obj.(type) {
	case *v1alpha1.ClusterPolicy:
		p, err := c.CompileClusterPolicy(o)
		return p, nil, err
	case *v1alpha1.Policy:
		p, err := c.CompilePolicy(o)
		return p, nil, err
	case *v1alpha1.PolicyException:
		x, err := c.CompileException(o)
		return nil, x, err
	}
	return nil, nil, fmt.Errorf("%T is not a ClusterPolicy, Policy or PolicyException", obj)
}
