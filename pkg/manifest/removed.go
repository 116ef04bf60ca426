package manifest

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// removedAPI is an apiVersion of a kind that Kubernetes no longer serves, the release that
// removed it, and the apiVersion to use instead ("" when the kind is gone).
type removedAPI struct {
	removedIn, use string
}

// removedAPIs are the built-in kinds' versions that no API server of this release serves, from
// the Kubernetes deprecated API migration guide. A manifest in one of them would be refused by
// the cluster; evaluated offline it would match no pod rule and pass, so it is refused here too.
var removedAPIs = func() map[schema.GroupVersionKind]removedAPI {
	m := map[schema.GroupVersionKind]removedAPI{}
	add := func(gv, removedIn, use string, kinds ...string) {
		for _, k := range kinds {
			m[schema.FromAPIVersionAndKind(gv, k)] = removedAPI{removedIn: removedIn, use: use}
		}
	}
	add("extensions/v1beta1", "1.16", "apps/v1", "Deployment", "DaemonSet", "ReplicaSet")
	add("extensions/v1beta1", "1.16", "networking.k8s.io/v1", "NetworkPolicy")
	add("extensions/v1beta1", "1.22", "networking.k8s.io/v1", "Ingress")
	add("extensions/v1beta1", "1.16", "", "PodSecurityPolicy")
	add("apps/v1beta1", "1.16", "apps/v1", "Deployment", "StatefulSet", "ReplicaSet", "ControllerRevision")
	add("apps/v1beta2", "1.16", "apps/v1", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ControllerRevision")
	add("batch/v1beta1", "1.25", "batch/v1", "CronJob")
	add("batch/v2alpha1", "1.21", "batch/v1", "CronJob")
	add("networking.k8s.io/v1beta1", "1.22", "networking.k8s.io/v1", "Ingress", "IngressClass")
	add("policy/v1beta1", "1.25", "policy/v1", "PodDisruptionBudget")
	add("policy/v1beta1", "1.25", "", "PodSecurityPolicy")
	add("autoscaling/v2beta1", "1.25", "autoscaling/v2", "HorizontalPodAutoscaler")
	add("autoscaling/v2beta2", "1.26", "autoscaling/v2", "HorizontalPodAutoscaler")
	add("rbac.authorization.k8s.io/v1beta1", "1.22", "rbac.authorization.k8s.io/v1", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
	add("scheduling.k8s.io/v1beta1", "1.22", "scheduling.k8s.io/v1", "PriorityClass")
	add("storage.k8s.io/v1beta1", "1.22", "storage.k8s.io/v1", "StorageClass", "VolumeAttachment", "CSIDriver", "CSINode")
	add("storage.k8s.io/v1beta1", "1.25", "storage.k8s.io/v1", "CSIStorageCapacity")
	add("discovery.k8s.io/v1beta1", "1.25", "discovery.k8s.io/v1", "EndpointSlice")
	add("events.k8s.io/v1beta1", "1.25", "events.k8s.io/v1", "Event")
	add("node.k8s.io/v1beta1", "1.25", "node.k8s.io/v1", "RuntimeClass")
	add("admissionregistration.k8s.io/v1beta1", "1.22", "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
	add("apiextensions.k8s.io/v1beta1", "1.22", "apiextensions.k8s.io/v1", "CustomResourceDefinition")
	add("certificates.k8s.io/v1beta1", "1.22", "certificates.k8s.io/v1", "CertificateSigningRequest")
	add("coordination.k8s.io/v1beta1", "1.22", "coordination.k8s.io/v1", "Lease")
	add("flowcontrol.apiserver.k8s.io/v1beta2", "1.29", "flowcontrol.apiserver.k8s.io/v1", "FlowSchema", "PriorityLevelConfiguration")
	return m
}()

// removed returns why apiVersion/kind cannot be evaluated, or nil when it is served.
func removed(apiVersion, kind string) error {
	r, ok := removedAPIs[schema.FromAPIVersionAndKind(apiVersion, kind)]
	if !ok {
		return nil
	}
	if r.use == "" {
		return fmt.Errorf("apiVersion %s of kind %s was removed in Kubernetes %s, and the kind with it: no cluster of this release accepts it", apiVersion, kind, r.removedIn)
	}
	return fmt.Errorf("apiVersion %s of kind %s was removed in Kubernetes %s: use apiVersion %s", apiVersion, kind, r.removedIn, r.use)
}
