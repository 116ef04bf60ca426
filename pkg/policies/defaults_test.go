package policies

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestDefaults(t *testing.T) {
	pod := mustResource(t, `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  hostNetwork: true
  volumes: [{name: scratch}]
  containers:
  - name: a
    image: nginx
    ports: [{containerPort: 80}]
    resources: {limits: {cpu: "1"}}
    readinessProbe: {httpGet: {port: 80}}
  - {name: b, image: "nginx:1.27"}
  - {name: c, image: "registry:5000/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000"}
  - {name: d, image: "nginx:latest@sha256:0000000000000000000000000000000000000000000000000000000000000000"}
`).Object.(*corev1.Pod)
	s := pod.Spec
	checks := []struct {
		what      string
		got, want any
	}{
		{"restartPolicy", s.RestartPolicy, corev1.RestartPolicyAlways},
		{"dnsPolicy", s.DNSPolicy, corev1.DNSClusterFirst},
		{"securityContext set", s.SecurityContext != nil, true},
		{"schedulerName", s.SchedulerName, corev1.DefaultSchedulerName},
		{"terminationGracePeriodSeconds", *s.TerminationGracePeriodSeconds, int64(30)},
		{"enableServiceLinks (Pod only)", *s.EnableServiceLinks, true},
		{"source-less volume is emptyDir", s.Volumes[0].EmptyDir != nil, true},
		{"hostNetwork host port (Pod only)", s.Containers[0].Ports[0].HostPort, int32(80)},
		{"port protocol", s.Containers[0].Ports[0].Protocol, corev1.ProtocolTCP},
		{"requests from limits (Pod only)", s.Containers[0].Resources.Requests.Cpu().String(), "1"},
		{"untagged image pulls Always", s.Containers[0].ImagePullPolicy, corev1.PullAlways},
		{"tagged image pulls IfNotPresent", s.Containers[1].ImagePullPolicy, corev1.PullIfNotPresent},
		{"digest with a registry port pulls IfNotPresent", s.Containers[2].ImagePullPolicy, corev1.PullIfNotPresent},
		{"latest tag with digest pulls Always", s.Containers[3].ImagePullPolicy, corev1.PullAlways},
		{"probe defaults", [4]int32{s.Containers[0].ReadinessProbe.TimeoutSeconds, s.Containers[0].ReadinessProbe.PeriodSeconds, s.Containers[0].ReadinessProbe.SuccessThreshold, s.Containers[0].ReadinessProbe.FailureThreshold}, [4]int32{1, 10, 1, 3}},
		{"httpGet path and scheme", s.Containers[0].ReadinessProbe.HTTPGet.Path + " " + string(s.Containers[0].ReadinessProbe.HTTPGet.Scheme), "/ HTTP"},
		{"terminationMessagePath", s.Containers[1].TerminationMessagePath, corev1.TerminationMessagePathDefault},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}

	d := mustResource(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: d}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      hostNetwork: true
      containers: [{name: a, image: x:1, ports: [{containerPort: 80}], resources: {limits: {cpu: "1"}}}]
`).Object.(*appsv1.Deployment)
	ts := d.Spec.Template.Spec
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || *d.Spec.RevisionHistoryLimit != 10 || *d.Spec.ProgressDeadlineSeconds != 600 {
		t.Errorf("deployment defaults: %+v", d.Spec)
	}
	if ts.Containers[0].Ports[0].HostPort != 0 {
		t.Error("templates must not get the Pod-only host port default")
	}
	if _, ok := ts.Containers[0].Resources.Requests[corev1.ResourceCPU]; ok {
		t.Error("templates must not get the Pod-only requests-from-limits default")
	}
	if ts.RestartPolicy != corev1.RestartPolicyAlways || ts.EnableServiceLinks != nil {
		t.Errorf("template PodSpec defaults: restartPolicy %q, enableServiceLinks %v", ts.RestartPolicy, ts.EnableServiceLinks)
	}
}

func TestPodTemplatePaths(t *testing.T) {
	tmpl := "{metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: x:1}]}}"
	tests := []struct{ manifest, spec, meta string }{
		{"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: x:1}]}\n", "spec", "metadata"},
		{"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {selector: {}, template: " + tmpl + "}\n", "spec.template.spec", "spec.template.metadata"},
		{"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {selector: {}, template: " + tmpl + "}\n", "spec.template.spec", "spec.template.metadata"},
		{"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec: {selector: {}, template: " + tmpl + "}\n", "spec.template.spec", "spec.template.metadata"},
		{"apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: x}\nspec: {selector: {}, template: " + tmpl + "}\n", "spec.template.spec", "spec.template.metadata"},
		{"apiVersion: v1\nkind: ReplicationController\nmetadata: {name: x}\nspec: {template: " + tmpl + "}\n", "spec.template.spec", "spec.template.metadata"},
		{"apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec: {template: " + tmpl + "}\n", "spec.template.spec", "spec.template.metadata"},
		{"apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: x}\nspec: {schedule: '@daily', jobTemplate: {spec: {template: " + tmpl + "}}}\n", "spec.jobTemplate.spec.template.spec", "spec.jobTemplate.spec.template.metadata"},
	}
	for _, tt := range tests {
		res := mustResource(t, tt.manifest)
		if res.Pod == nil {
			t.Errorf("%s: no pod template", res.GVK.Kind)
			continue
		}
		if res.Pod.SpecPath.String() != tt.spec || res.Pod.MetaPath.String() != tt.meta || res.Pod.Spec.Containers[0].Name != "c" {
			t.Errorf("%s: spec at %s, metadata at %s", res.GVK.Kind, res.Pod.SpecPath, res.Pod.MetaPath)
		}
		// The state the rules and mutations use, not the paths' text: the same places.
		if want := "/" + strings.ReplaceAll(tt.spec, ".", "/"); res.Pod.SpecPointer != want {
			t.Errorf("%s: spec pointer %s, want %s", res.GVK.Kind, res.Pod.SpecPointer, want)
		}
		if res.Pod.Template != (tt.spec != "spec") {
			t.Errorf("%s: Template is %t", res.GVK.Kind, res.Pod.Template)
		}
	}
	for _, m := range []string{"apiVersion: v1\nkind: ReplicationController\nmetadata: {name: x}\nspec: {}\n", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"} {
		if res := mustResource(t, m); res.Pod != nil {
			t.Errorf("%s: unexpected pod template", res.GVK.Kind)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	d := NewDecoder(true)
	for _, tc := range []struct{ in, want string }{
		{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns"},"spec":{"containerz":[]}}`, `v1 Pod "ns/p": strict decoding: unknown field "spec.containerz"`},
		{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":"no"}}`, `v1 Pod "p": json: cannot unmarshal string`},
		{`{"kind":"Pod"}`, "apiVersion and kind must be set"},
		{`[1]`, "not a Kubernetes object"},
		{`{"apiVersion":"a/b/c","kind":"X"}`, "apiVersion"},
		{`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{},"spec":{}}`, `duplicate field "spec"`},
	} {
		_, err := d.Decode([]byte(tc.in), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := NewDecoder(false).Decode([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containerz":[]}}`), nil); err != nil {
		t.Errorf("the lenient decoder rejected an unknown field: %v", err)
	}
}

// TestPrepareForCreateAppArmor: the deprecated AppArmor annotations become fields as the API
// server's pod strategy makes them on CREATE, for the CLI; the webhook's decoder leaves prepared
// objects alone.
func TestPrepareForCreateAppArmor(t *testing.T) {
	const manifest = `apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations:
    container.apparmor.security.beta.kubernetes.io/runtime: runtime/default
    container.apparmor.security.beta.kubernetes.io/local: localhost/my-profile
    container.apparmor.security.beta.kubernetes.io/open: unconfined
    container.apparmor.security.beta.kubernetes.io/bad: localhost/
    container.apparmor.security.beta.kubernetes.io/same: runtime/default
    container.apparmor.security.beta.kubernetes.io/set: unconfined
    container.apparmor.security.beta.kubernetes.io/init: runtime/default
spec:
  securityContext: {appArmorProfile: {type: RuntimeDefault}}
  initContainers: [{name: init, image: x}]
  containers:
  - {name: runtime, image: x}
  - {name: local, image: x}
  - {name: open, image: x}
  - {name: bad, image: x}
  - {name: none, image: x}
  - {name: set, image: x, securityContext: {appArmorProfile: {type: RuntimeDefault}}}
`
	pod := mustResource(t, strings.Replace(manifest, "    container.apparmor.security.beta.kubernetes.io/same: runtime/default\n", "", 1)).Object.(*corev1.Pod)
	profile := func(c corev1.Container) string {
		if c.SecurityContext == nil || c.SecurityContext.AppArmorProfile == nil {
			return "none"
		}
		p := c.SecurityContext.AppArmorProfile
		if p.LocalhostProfile != nil {
			return string(p.Type) + ":" + *p.LocalhostProfile
		}
		return string(p.Type)
	}
	got := map[string]string{"init": profile(pod.Spec.InitContainers[0])}
	for _, c := range pod.Spec.Containers {
		got[c.Name] = profile(c)
	}
	want := map[string]string{
		"runtime": "none", // equal to the pod's profile: not copied, as upstream
		"init":    "none",
		"local":   "Localhost:my-profile",
		"open":    "Unconfined",
		"bad":     "none", // not a valid profile
		"none":    "none",
		"set":     "RuntimeDefault", // the field wins over the annotation
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: %s, want %s", name, got[name], w)
		}
	}
	// Without a pod-level profile, runtime/default is copied; a Windows pod is left alone.
	bare := strings.Replace(manifest, "  securityContext: {appArmorProfile: {type: RuntimeDefault}}\n", "", 1)
	if p := mustResource(t, bare).Object.(*corev1.Pod); profile(p.Spec.Containers[0]) != "RuntimeDefault" || profile(p.Spec.InitContainers[0]) != "RuntimeDefault" {
		t.Errorf("runtime/default without a pod profile: %s, %s", profile(p.Spec.Containers[0]), profile(p.Spec.InitContainers[0]))
	}
	windows := strings.Replace(bare, "spec:\n", "spec:\n  os: {name: windows}\n", 1)
	if p := mustResource(t, windows).Object.(*corev1.Pod); profile(p.Spec.Containers[1]) != "none" {
		t.Errorf("a Windows pod was prepared: %s", profile(p.Spec.Containers[1]))
	}
	// The webhook's decoder (lenient: the API server prepared the object) changes nothing.
	if p := mustDecode(t, NewDecoder(false), bare).Object.(*corev1.Pod); profile(p.Spec.Containers[1]) != "none" {
		t.Errorf("the webhook's decoder prepared a reviewed object: %s", profile(p.Spec.Containers[1]))
	}
}
