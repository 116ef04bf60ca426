package mutate

import (
	"context"
	"encoding/json"
	"strings"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/google/go-containerregistry/pkg/authn"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// Pod is the pod a mutator may change: Pod spec or a pod controller's template, with the JSON
// pointer of its spec in the object (e.g. /spec/template/spec).
type Pod struct {
	Spec        *corev1.PodSpec
	SpecPointer string
	// Keychain holds the registry credentials of the pod, for mutators that read registries.
	Keychain authn.Keychain
}

// Change is one patch with the sentence that describes it to users, e.g.
// "add readinessProbe (tcpSocket :8080) to container web".
type Change struct {
	Patch       jsonpatch.JsonPatchOperation
	Description string
	// Apply makes the change to the Pod given to Mutate, so that later rules see it.
	Apply func()
}

// Result is what a mutator would do to a pod.
type Result struct {
	Changes []Change
	// Warnings are things the mutator could not do, e.g. a container with no TCP port to probe.
	Warnings []string
}

// Mutator computes the changes of one compiled rule.
type Mutator interface {
	Mutate(ctx context.Context, pod Pod) Result
}

// escape escapes one JSON pointer token (RFC 6901).
func escape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

// Escape is escape for callers building pointers, e.g. to an annotation key.
func Escape(token string) string { return escape(token) }

// Apply applies JSON patches to a JSON document, as the API server applies a webhook's patch.
func Apply(doc []byte, patches []jsonpatch.JsonPatchOperation) ([]byte, error) {
	if len(patches) == 0 {
		return doc, nil
	}
	raw, err := json.Marshal(patches)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatchapply.DecodePatch(raw)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}
