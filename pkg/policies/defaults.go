package policies

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/portcullis-dev/portcullis/pkg/mutate"
)

// applyDefaults applies the API server's defaulting (k8s.io/kubernetes/pkg/apis/{core,apps,batch}/v1)
// to the fields that policies read, so that the CLI sees an object as the webhook sees it on
// CREATE. Pod-only defaults (requests from limits, host ports under hostNetwork) are applied to
// Pods only, exactly as upstream, where PodTemplates are not defaulted that way.
func applyDefaults(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Pod:
		defaultPodSpec(&o.Spec)
		defaultPodOnly(&o.Spec)
	case *appsv1.Deployment:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr.To[int32](1)
		}
		if o.Spec.Strategy.Type == "" {
			o.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
		}
		if o.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
			if o.Spec.Strategy.RollingUpdate == nil {
				o.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
			}
			ru := o.Spec.Strategy.RollingUpdate
			if ru.MaxUnavailable == nil {
				ru.MaxUnavailable = ptr.To(intstr.FromString("25%"))
			}
			if ru.MaxSurge == nil {
				ru.MaxSurge = ptr.To(intstr.FromString("25%"))
			}
		}
		if o.Spec.RevisionHistoryLimit == nil {
			o.Spec.RevisionHistoryLimit = ptr.To[int32](10)
		}
		if o.Spec.ProgressDeadlineSeconds == nil {
			o.Spec.ProgressDeadlineSeconds = ptr.To[int32](600)
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *appsv1.StatefulSet:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr.To[int32](1)
		}
		if o.Spec.PodManagementPolicy == "" {
			o.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *appsv1.DaemonSet:
		if o.Spec.UpdateStrategy.Type == "" {
			o.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *appsv1.ReplicaSet:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr.To[int32](1)
		}
		defaultPodSpec(&o.Spec.Template.Spec)
	case *corev1.ReplicationController:
		if o.Spec.Replicas == nil {
			o.Spec.Replicas = ptr.To[int32](1)
		}
		if o.Spec.Template != nil {
			defaultPodSpec(&o.Spec.Template.Spec)
		}
	case *batchv1.Job:
		defaultPodSpec(&o.Spec.Template.Spec)
	case *batchv1.CronJob:
		if o.Spec.ConcurrencyPolicy == "" {
			o.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
		}
		if o.Spec.Suspend == nil {
			o.Spec.Suspend = ptr.To(false)
		}
		defaultPodSpec(&o.Spec.JobTemplate.Spec.Template.Spec)
	}
}

// defaultPodSpec is SetDefaults_PodSpec with the container, port and probe defaults under it.
func defaultPodSpec(s *corev1.PodSpec) {
	if s.ServiceAccountName == "" {
		s.ServiceAccountName = s.DeprecatedServiceAccount
	}
	s.DeprecatedServiceAccount = s.ServiceAccountName
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr.To[int64](corev1.DefaultTerminationGracePeriodSeconds)
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	for i := range s.Volumes {
		// A volume with no source is an emptyDir (the restricted volumes check depends on it).
		if v := &s.Volumes[i]; ptr.AllPtrFieldsNil(&v.VolumeSource) {
			v.EmptyDir = &corev1.EmptyDirVolumeSource{}
		}
		if img := s.Volumes[i].Image; img != nil && img.PullPolicy == "" {
			img.PullPolicy = corev1.PullIfNotPresent
			if imageTag(img.Reference) == "latest" {
				img.PullPolicy = corev1.PullAlways
			}
		}
	}
	mutate.VisitContainers(s, true, func(_ string, _ int, c *corev1.Container) { defaultContainer(c) })
}

func defaultContainer(c *corev1.Container) {
	if c.ImagePullPolicy == "" {
		if imageTag(c.Image) == "latest" {
			c.ImagePullPolicy = corev1.PullAlways
		} else {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		defaultProbe(p)
	}
}

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	if h := p.HTTPGet; h != nil {
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = corev1.URISchemeHTTP
		}
	}
}

// defaultPodOnly is the part of SetDefaults_Pod that upstream applies to Pods and not to
// templates: requests default to limits, and under hostNetwork every container port is a host port.
func defaultPodOnly(s *corev1.PodSpec) {
	if s.EnableServiceLinks == nil {
		s.EnableServiceLinks = ptr.To(corev1.DefaultEnableServiceLinks)
	}
	for _, cs := range [][]corev1.Container{s.Containers, s.InitContainers} {
		for i := range cs {
			r := &cs[i].Resources
			if r.Limits == nil {
				continue
			}
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			for k, v := range r.Limits {
				if _, ok := r.Requests[k]; !ok {
					r.Requests[k] = v.DeepCopy()
				}
			}
		}
		if s.HostNetwork {
			for i := range cs {
				for j := range cs[i].Ports {
					if cs[i].Ports[j].HostPort == 0 {
						cs[i].Ports[j].HostPort = cs[i].Ports[j].ContainerPort
					}
				}
			}
		}
	}
}

// imageTag returns the tag of an image reference as the API server's parsers.ParseImageName does
// for imagePullPolicy defaulting: "latest" when it has neither tag nor digest.
func imageTag(image string) string {
	name, digested := image, false
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name, digested = name[:i], true
	}
	if colon := strings.LastIndexByte(name, ':'); colon > strings.LastIndexByte(name, '/') {
		return name[colon+1:]
	}
	if digested {
		return ""
	}
	return "latest"
}

// The deprecated AppArmor annotation, per container, and its values.
const (
	appArmorAnnotationPrefix = "container.apparmor.security.beta.kubernetes.io/"
	appArmorLocalhostPrefix  = "localhost/"
	maxLocalhostProfile      = 4095
)

// prepareForCreate applies to a Pod what the API server's pod strategy does on CREATE before any
// validating webhook sees it (PrepareForCreate in k8s.io/kubernetes/pkg/registry/core/pod), for
// the fields policies read. The CLI judges manifests as CREATEs the API server has not prepared;
// the webhook sees prepared objects and does not run this.
//
// Applied:
//   - applyAppArmorVersionSkew: a container's deprecated AppArmor annotation
//     (container.apparmor.security.beta.kubernetes.io/<name>) becomes its
//     securityContext.appArmorProfile, unless the container has one, the value is not a valid
//     profile, or it equals the pod's profile; Windows pods are left alone.
//
// Not applied, because no policy field depends on them: metadata.generation and the status
// (phase, QoS class, the scheduling-gated condition); dropping fields of disabled features (every
// field is enabled by default); the matchLabelKeys merge into affinity and topology spread
// selectors; pod-level resource defaults.
func prepareForCreate(pod *corev1.Pod) {
	if pod.Spec.OS != nil && pod.Spec.OS.Name == corev1.Windows {
		return
	}
	var podProfile *corev1.AppArmorProfile
	if pod.Spec.SecurityContext != nil {
		podProfile = pod.Spec.SecurityContext.AppArmorProfile
	}
	sync := func(name string, sc **corev1.SecurityContext) {
		annotation, ok := pod.Annotations[appArmorAnnotationPrefix+name]
		if !ok || (*sc != nil && (*sc).AppArmorProfile != nil) {
			return
		}
		profile := appArmorProfileFor(annotation)
		if profile == nil || equality.Semantic.DeepEqual(profile, podProfile) {
			return
		}
		if *sc == nil {
			*sc = &corev1.SecurityContext{}
		}
		(*sc).AppArmorProfile = profile
	}
	mutate.VisitContainers(&pod.Spec, true, func(_ string, _ int, c *corev1.Container) { sync(c.Name, &c.SecurityContext) })
}

// appArmorProfileFor is the profile an annotation value names, or nil when it names none validly.
func appArmorProfileFor(annotation string) *corev1.AppArmorProfile {
	switch {
	case annotation == "unconfined":
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
	case annotation == "runtime/default":
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeRuntimeDefault}
	case strings.HasPrefix(annotation, appArmorLocalhostPrefix):
		name := strings.TrimPrefix(annotation, appArmorLocalhostPrefix)
		if name == "" || len(name) > maxLocalhostProfile || strings.TrimSpace(name) != name {
			return nil
		}
		return &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeLocalhost, LocalhostProfile: &name}
	}
	return nil
}
