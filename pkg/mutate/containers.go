package mutate

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// The container lists of a pod spec, by their field names.
const (
	InitContainers      = "initContainers"
	Containers          = "containers"
	EphemeralContainers = "ephemeralContainers"
)

// VisitContainers calls visit with every container of spec, in order: the init containers, the
// containers, then, when ephemeral is set, the ephemeral containers (seen as Containers: they
// share the fields). Each comes with its list's field name and its index in it, from which a
// caller makes its path or pointer. It is the one loop over a pod's containers, as Pod Security
// Admission's visitContainers is.
func VisitContainers(spec *corev1.PodSpec, ephemeral bool, visit func(list string, i int, c *corev1.Container)) {
	for i := range spec.InitContainers {
		visit(InitContainers, i, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		visit(Containers, i, &spec.Containers[i])
	}
	if !ephemeral {
		return
	}
	for i := range spec.EphemeralContainers {
		visit(EphemeralContainers, i, (*corev1.Container)(&spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
}

// ContainerPointer is the JSON pointer of container i of list in the spec at specPointer.
func ContainerPointer(specPointer, list string, i int) string {
	return specPointer + "/" + list + "/" + strconv.Itoa(i)
}
