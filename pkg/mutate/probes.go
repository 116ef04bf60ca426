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
	// httpPorts are the ports, by name or number, the rule says serve HTTP.
	httpPorts []intstr.IntOrString
}

// NewDefaultProbes is the mutator of a defaultProbes rule the compiler has validated
// (policies' rule_defaultprobes.go): readiness and liveness probes unless disabled, a startup
// probe when asked.
func NewDefaultProbes(r *v1alpha1.DefaultProbesRule) *DefaultProbes {
	m := &DefaultProbes{httpPorts: r.HTTPPorts}
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
		port, ok := m.probePort(c)
		if !ok {
			res.Warnings = append(res.Warnings, fmt.Sprintf("container %q declares no TCP port: no probe added; declare a containerPort or write its probes", c.Name))
			return
		}
		scheme, http := m.serves(port)
		for _, k := range missing {
			probe, what, path := k.probe(port, http, scheme)
			if path != "" && !http {
				res.Warnings = append(res.Warnings, fmt.Sprintf("container %q: port %s is not known to serve HTTP (name it http, http-*, *-http, web or https, or list it in httpPorts): %s is a tcpSocket probe, not httpGet %s",
					c.Name, portName(port), k.field, path))
			}
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

// probePort is the first TCP port that serves HTTP, else the first TCP port.
func (m *DefaultProbes) probePort(c *corev1.Container) (corev1.ContainerPort, bool) {
	var first *corev1.ContainerPort
	for i := range c.Ports {
		p := &c.Ports[i]
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if _, http := m.serves(*p); http {
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

// serves reports whether a port serves HTTP, and with which scheme: by its name (http, http-*,
// *-http, web; https, https-*), or because the rule lists it in httpPorts.
func (m *DefaultProbes) serves(p corev1.ContainerPort) (corev1.URIScheme, bool) {
	name := strings.ToLower(p.Name)
	switch {
	case name == "https" || strings.HasPrefix(name, "https-") || strings.HasSuffix(name, "-https"):
		return corev1.URISchemeHTTPS, true
	case name == "http" || name == "web" || strings.HasPrefix(name, "http-") || strings.HasSuffix(name, "-http"):
		return corev1.URISchemeHTTP, true
	}
	for _, h := range m.httpPorts {
		if (h.Type == intstr.String && h.StrVal != "" && h.StrVal == p.Name) || (h.Type == intstr.Int && h.IntVal == p.ContainerPort) {
			return corev1.URISchemeHTTP, true
		}
	}
	return "", false
}

// portName names a port in a message: "6379" or "redis (6379)".
func portName(p corev1.ContainerPort) string {
	if p.Name == "" {
		return fmt.Sprint(p.ContainerPort)
	}
	return fmt.Sprintf("%s (%d)", p.Name, p.ContainerPort)
}

// probe builds the probe for the port, and describes it: "tcpSocket :8080", "httpGet :8080/readyz".
// A probe with a path is an httpGet only on a port that serves HTTP; it returns the path it
// asked for.
func (k probeKind) probe(port corev1.ContainerPort, http bool, scheme corev1.URIScheme) (*corev1.Probe, string, string) {
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
	if d.Path != "" && http {
		p.HTTPGet = &corev1.HTTPGetAction{Path: d.Path, Port: target}
		what := fmt.Sprintf("httpGet :%d%s", port.ContainerPort, d.Path)
		if scheme == corev1.URISchemeHTTPS {
			p.HTTPGet.Scheme = scheme
			what = fmt.Sprintf("httpGet https :%d%s", port.ContainerPort, d.Path)
		}
		return p, what, d.Path
	}
	p.TCPSocket = &corev1.TCPSocketAction{Port: target}
	return p, fmt.Sprintf("tcpSocket :%d", port.ContainerPort), d.Path
}
