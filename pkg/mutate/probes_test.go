package mutate

import (
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

func podSpec(t *testing.T, y string) *corev1.PodSpec {
	t.Helper()
	var s corev1.PodSpec
	if err := yaml.UnmarshalStrict([]byte(y), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// summary renders changes as "path=value" and warnings, for compact assertions.
func summary(t *testing.T, r Result) []string {
	t.Helper()
	var out []string
	for _, c := range r.Changes {
		v, err := json.Marshal(c.Patch.Value)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Patch.Operation+" "+c.Patch.Path+"="+string(v)+" | "+c.Description)
	}
	for _, w := range r.Warnings {
		out = append(out, "warning: "+w)
	}
	return out
}

func TestDefaultProbes(t *testing.T) {
	tests := []struct {
		name    string
		rule    v1alpha1.DefaultProbesRule
		pointer string
		spec    string
		want    []string
	}{
		{name: "named http port, tcpSocket by default", pointer: "/spec", spec: `containers: [{name: web, image: x, ports: [{name: metrics, containerPort: 9090}, {name: http, containerPort: 8080}]}]`,
			want: []string{
				`add /spec/containers/0/readinessProbe={"tcpSocket":{"port":"http"},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (tcpSocket :8080) to container web`,
				`add /spec/containers/0/livenessProbe={"tcpSocket":{"port":"http"},"initialDelaySeconds":15,"periodSeconds":20} | add livenessProbe (tcpSocket :8080) to container web`,
			}},
		{name: "http-* port name", pointer: "/spec", spec: `containers: [{name: web, image: x, ports: [{containerPort: 9000}, {name: http-api, containerPort: 8081}]}]`,
			rule: v1alpha1.DefaultProbesRule{Liveness: &v1alpha1.ProbeDefaults{Disabled: true}},
			want: []string{`add /spec/containers/0/readinessProbe={"tcpSocket":{"port":"http-api"},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (tcpSocket :8081) to container web`}},
		{name: "unnamed port listed in httpPorts: httpGet with paths", pointer: "/spec",
			rule: v1alpha1.DefaultProbesRule{HTTPPorts: []intstr.IntOrString{intstr.FromInt32(8080)},
				Readiness: &v1alpha1.ProbeDefaults{Path: "/readyz"}, Liveness: &v1alpha1.ProbeDefaults{Path: "/healthz", PeriodSeconds: ptr.To[int32](30), FailureThreshold: ptr.To[int32](5)}},
			spec: `containers: [{name: api, image: x, ports: [{containerPort: 53, protocol: UDP}, {containerPort: 8080}]}]`,
			want: []string{
				`add /spec/containers/0/readinessProbe={"httpGet":{"path":"/readyz","port":8080},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (httpGet :8080/readyz) to container api`,
				`add /spec/containers/0/livenessProbe={"httpGet":{"path":"/healthz","port":8080},"initialDelaySeconds":15,"periodSeconds":30,"failureThreshold":5} | add livenessProbe (httpGet :8080/healthz) to container api`,
			}},
		{name: "a port not known to serve HTTP: tcpSocket, with a warning", pointer: "/spec",
			rule: v1alpha1.DefaultProbesRule{Readiness: &v1alpha1.ProbeDefaults{Path: "/ready"}, Liveness: &v1alpha1.ProbeDefaults{Disabled: true}},
			spec: `containers: [{name: cache, image: redis, ports: [{name: redis, containerPort: 6379}]}]`,
			want: []string{
				`add /spec/containers/0/readinessProbe={"tcpSocket":{"port":"redis"},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (tcpSocket :6379) to container cache`,
				`warning: container "cache": port redis (6379) is not known to serve HTTP (name it http, http-*, *-http, web or https, or list it in httpPorts): readinessProbe is a tcpSocket probe, not httpGet /ready`,
			}},
		{name: "the HTTP port is chosen over an earlier one; https by name", pointer: "/spec",
			rule: v1alpha1.DefaultProbesRule{Readiness: &v1alpha1.ProbeDefaults{Path: "/ready"}, Liveness: &v1alpha1.ProbeDefaults{Disabled: true}},
			spec: `containers: [{name: api, image: x, ports: [{name: grpc, containerPort: 9000}, {name: https, containerPort: 8443}]}]`,
			want: []string{
				`add /spec/containers/0/readinessProbe={"httpGet":{"path":"/ready","port":"https","scheme":"HTTPS"},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (httpGet https :8443/ready) to container api`,
			}},
		{name: "a port named in httpPorts", pointer: "/spec",
			rule: v1alpha1.DefaultProbesRule{HTTPPorts: []intstr.IntOrString{intstr.FromString("admin")}, Readiness: &v1alpha1.ProbeDefaults{Path: "/ready"}, Liveness: &v1alpha1.ProbeDefaults{Disabled: true}},
			spec: `containers: [{name: api, image: x, ports: [{name: grpc, containerPort: 9000}, {name: admin, containerPort: 8081}]}]`,
			want: []string{
				`add /spec/containers/0/readinessProbe={"httpGet":{"path":"/ready","port":"admin"},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (httpGet :8081/ready) to container api`,
			}},
		{name: "UDP-only: no probe, a warning", pointer: "/spec", spec: `containers: [{name: dns, image: x, ports: [{containerPort: 53, protocol: UDP}]}]`,
			want: []string{`warning: container "dns" declares no TCP port: no probe added; declare a containerPort or write its probes`}},
		{name: "no ports at all: never an exec placeholder", pointer: "/spec", spec: `containers: [{name: worker, image: x}]`,
			want: []string{`warning: container "worker" declares no TCP port: no probe added; declare a containerPort or write its probes`}},
		{name: "existing probes are never overwritten", pointer: "/spec",
			spec: `containers: [{name: web, image: x, ports: [{containerPort: 80}], readinessProbe: {exec: {command: [check]}}}]`,
			want: []string{`add /spec/containers/0/livenessProbe={"tcpSocket":{"port":80},"initialDelaySeconds":15,"periodSeconds":20} | add livenessProbe (tcpSocket :80) to container web`}},
		{name: "both probes present: nothing", pointer: "/spec",
			spec: `containers: [{name: web, image: x, ports: [{containerPort: 80}], readinessProbe: {tcpSocket: {port: 80}}, livenessProbe: {tcpSocket: {port: 80}}}]`},
		{name: "startup only when asked", pointer: "/spec", rule: v1alpha1.DefaultProbesRule{Startup: &v1alpha1.ProbeDefaults{}},
			spec: `containers: [{name: web, image: x, ports: [{containerPort: 80}], readinessProbe: {tcpSocket: {port: 80}}, livenessProbe: {tcpSocket: {port: 80}}}]`,
			want: []string{`add /spec/containers/0/startupProbe={"tcpSocket":{"port":80},"periodSeconds":10,"failureThreshold":30} | add startupProbe (tcpSocket :80) to container web`}},
		{name: "sidecar probed, run-to-completion init and ephemeral untouched", pointer: "/spec/template/spec",
			rule: v1alpha1.DefaultProbesRule{Liveness: &v1alpha1.ProbeDefaults{Disabled: true}},
			spec: `initContainers:
- {name: migrate, image: x, ports: [{containerPort: 5432}]}
- {name: proxy, image: x, restartPolicy: Always, ports: [{containerPort: 15001}]}
containers: [{name: app, image: x, ports: [{containerPort: 8080}]}]
ephemeralContainers: [{name: debug, image: x}]`,
			want: []string{
				`add /spec/template/spec/initContainers/1/readinessProbe={"tcpSocket":{"port":15001},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (tcpSocket :15001) to container proxy`,
				`add /spec/template/spec/containers/0/readinessProbe={"tcpSocket":{"port":8080},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (tcpSocket :8080) to container app`,
			}},
		{name: "CronJob template path", pointer: "/spec/jobTemplate/spec/template/spec", rule: v1alpha1.DefaultProbesRule{Liveness: &v1alpha1.ProbeDefaults{Disabled: true}},
			spec: `containers: [{name: job, image: x, ports: [{containerPort: 8080}]}]`,
			want: []string{`add /spec/jobTemplate/spec/template/spec/containers/0/readinessProbe={"tcpSocket":{"port":8080},"initialDelaySeconds":5,"periodSeconds":10} | add readinessProbe (tcpSocket :8080) to container job`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewDefaultProbes(&tt.rule)
			pod := Pod{Spec: podSpec(t, tt.spec), SpecPointer: tt.pointer}
			res := m.Mutate(t.Context(), pod)
			if got := summary(t, res); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// Applying the changes to the pod makes a second run a no-op.
			for _, c := range res.Changes {
				c.Apply()
			}
			if again := m.Mutate(t.Context(), pod); len(again.Changes) != 0 {
				t.Errorf("not idempotent: %v", summary(t, again))
			}
		})
	}
}
