package mutate

import (
	"context"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// probeKind is one of the probes the rule can add.
type probeKind struct {
	field    string // readinessProbe, livenessProbe, startupProbe
	defaults v1alpha1.ProbeDefaults
	get      func(*corev1.Container) **corev1.Probe
	spec     *v1alpha1.ProbeDefaults // nil: use defaults
}

func (k probeKind) has(c *corev1.Container) bool             { return *k.get(c) != nil }
func (k probeKind) set(c *corev1.Container, p *corev1.Probe) { *k.get(c) = p }

// DefaultProbes adds readiness and liveness probes (and startup probes when asked) derived from
// each container's declared ports. It never overwrites a probe and never invents an exec probe.
type DefaultProbes struct {
	kinds []probeKind
}

// NewDefaultProbes is the mutator of a defaultProbes rule the compiler has validated
// (policies' rule_defaultprobes.go): readiness and liveness probes unless disabled, a startup
// probe when asked.
func NewDefaultProbes(r *v1alpha1.DefaultProbesRule) *DefaultProbes {
	m := &DefaultProbes{}
	add := func(fieldName string, spec *v1alpha1.ProbeDefaults, defaults v1alpha1.ProbeDefaults, get func(*corev1.Container) **corev1.Probe, always bool) {
		if (spec == nil && !always) || (spec != nil && spec.Disabled) {
			return
		}
		m.kinds = append(m.kinds, probeKind{field: fieldName, defaults: defaults, get: get, spec: spec})
	}
	add("readinessProbe", r.Readiness, v1alpha1.ProbeDefaults{InitialDelaySeconds: ptr.To[int32](5), PeriodSeconds: ptr.To[int32](10)},
		func(c *corev1.Container) **corev1.Probe { return &c.ReadinessProbe }, true)
	add("livenessProbe", r.Liveness, v1alpha1.ProbeDefaults{InitialDelaySeconds: ptr.To[int32](15), PeriodSeconds: ptr.To[int32](20)},
		func(c *corev1.Container) **corev1.Probe { return &c.LivenessProbe }, true)
	add("startupProbe", r.Startup, v1alpha1.ProbeDefaults{PeriodSeconds: ptr.To[int32](10), FailureThreshold: ptr.To[int32](30)},
		func(c *corev1.Container) **corev1.Probe { return &c.StartupProbe }, false)
	return m
}

// Mutate implements Mutator.
func (m *DefaultProbes) Mutate(_ context.Context, pod Pod) Result {
	var res Result
	visit := func(c *corev1.Container, pointer string) {
		var missing []probeKind
		for _, k := range m.kinds {
			if !k.has(c) {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			return
		}
		port, ok := probePort(c)
		if !ok {
			res.Warnings = append(res.Warnings, fmt.Sprintf("container %q declares no TCP port: no probe added; declare a containerPort or write its probes", c.Name))
			return
		}
		for _, k := range missing {
			probe, what := k.probe(port)
			res.Changes = append(res.Changes, Change{
				Patch:       jsonpatch.JsonPatchOperation{Operation: "add", Path: pointer + "/" + k.field, Value: probe},
				Description: fmt.Sprintf("add %s (%s) to container %s", k.field, what, c.Name),
				Apply:       func() { k.set(c, probe) },
			})
		}
	}
	VisitContainers(pod.Spec, false, func(list string, i int, c *corev1.Container) {
		// Only sidecars run alongside the app; init containers that run to completion take no probes.
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		if list == Containers || sidecar {
			visit(c, ContainerPointer(pod.SpecPointer, list, i))
		}
	})
	return res
}

// probePort is the port named http (or http-*), else the first TCP port.
func probePort(c *corev1.Container) (corev1.ContainerPort, bool) {
	var first *corev1.ContainerPort
	for i := range c.Ports {
		p := &c.Ports[i]
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Name == "http" || strings.HasPrefix(p.Name, "http-") {
			return *p, true
		}
		if first == nil {
			first = p
		}
	}
	if first == nil {
		return corev1.ContainerPort{}, false
	}
	return *first, true
}

// probe builds the probe for the port, and describes it: "tcpSocket :8080", "httpGet :8080/readyz".
func (k probeKind) probe(port corev1.ContainerPort) (*corev1.Probe, string) {
	d := k.defaults
	if s := k.spec; s != nil {
		d.Path = s.Path
		for _, f := range []struct{ dst, src **int32 }{{&d.InitialDelaySeconds, &s.InitialDelaySeconds}, {&d.PeriodSeconds, &s.PeriodSeconds}, {&d.TimeoutSeconds, &s.TimeoutSeconds}, {&d.FailureThreshold, &s.FailureThreshold}} {
			if *f.src != nil {
				*f.dst = *f.src
			}
		}
	}
	target := intstr.FromInt32(port.ContainerPort)
	if port.Name != "" {
		target = intstr.FromString(port.Name) // follows the port if its number changes
	}
	p := &corev1.Probe{
		InitialDelaySeconds: ptr.Deref(d.InitialDelaySeconds, 0),
		PeriodSeconds:       ptr.Deref(d.PeriodSeconds, 0),
		TimeoutSeconds:      ptr.Deref(d.TimeoutSeconds, 0),
		FailureThreshold:    ptr.Deref(d.FailureThreshold, 0),
	}
	if d.Path != "" {
		p.HTTPGet = &corev1.HTTPGetAction{Path: d.Path, Port: target}
		return p, fmt.Sprintf("httpGet :%d%s", port.ContainerPort, d.Path)
	}
	p.TCPSocket = &corev1.TCPSocketAction{Port: target}
	return p, fmt.Sprintf("tcpSocket :%d", port.ContainerPort)
}
