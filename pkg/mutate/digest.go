package mutate

import (
	"context"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// PinDigests pins every verified image of the matching containers and image volumes to the
// digest that was verified: image:tag becomes image:tag@sha256:…, so what runs (or is mounted) is
// exactly what was verified.
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
	visit := func(image *string, what, pointer string) {
		if strings.Contains(*image, "@") || !m.Matches(*image) {
			return
		}
		v, err := m.Verifier.Verify(ctx, *image, pod.Keychain)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: image %s not pinned: %v", what, *image, err))
			return
		}
		if !v.Verified {
			return
		}
		pinned := *image + "@" + v.Digest
		res.Changes = append(res.Changes, Change{
			Patch:       jsonpatch.JsonPatchOperation{Operation: "replace", Path: pointer, Value: pinned},
			Description: fmt.Sprintf("pin image %s to %s in %s", *image, v.Digest, what),
			Apply:       func() { *image = pinned },
		})
	}
	VisitContainers(pod.Spec, true, func(list string, i int, c *corev1.Container) {
		visit(&c.Image, fmt.Sprintf("container %s", c.Name), ContainerPointer(pod.SpecPointer, list, i)+"/image")
	})
	for i := range pod.Spec.Volumes {
		if vol := &pod.Spec.Volumes[i]; vol.Image != nil {
			visit(&vol.Image.Reference, fmt.Sprintf("image volume %s", vol.Name), fmt.Sprintf("%s/volumes/%d/image/reference", pod.SpecPointer, i))
		}
	}
	return res
}
