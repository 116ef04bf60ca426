package mutate

import (
	"context"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// PinDigests pins every verified image of the matching containers to the digest that was
// verified: image:tag becomes image:tag@sha256:…, so what runs is exactly what was verified.
type PinDigests struct {
	// Matches selects the images to pin.
	Matches func(image string) bool
	// Verifier verifies them (through its cache).
	Verifier *verify.Verifier
}

// Mutate implements Mutator. An image that cannot be verified is left alone (the validating
// rule judges it), with a warning when the registry could not be read.
func (m *PinDigests) Mutate(ctx context.Context, pod Pod) Result {
	var res Result
	visit := func(c *corev1.Container, pointer string) {
		if strings.Contains(c.Image, "@") || !m.Matches(c.Image) {
			return
		}
		v, err := m.Verifier.Verify(ctx, c.Image, pod.Keychain)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("container %q: image %s not pinned: %v", c.Name, c.Image, err))
			return
		}
		if !v.Verified {
			return
		}
		pinned := c.Image + "@" + v.Digest
		res.Changes = append(res.Changes, Change{
			Patch:       jsonpatch.JsonPatchOperation{Operation: "replace", Path: pointer + "/image", Value: pinned},
			Description: fmt.Sprintf("pin image %s to %s in container %s", c.Image, v.Digest, c.Name),
			Apply:       func() { c.Image = pinned },
		})
	}
	VisitContainers(pod.Spec, true, func(list string, i int, c *corev1.Container) {
		visit(c, ContainerPointer(pod.SpecPointer, list, i))
	})
	return res
}
