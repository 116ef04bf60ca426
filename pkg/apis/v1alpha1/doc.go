// Package v1alpha1 holds the API types of the portcullis.dev/v1alpha1 CRDs: ClusterPolicy, Policy
// and PolicyException.
//
// +kubebuilder:object:generate=true
// +groupName=portcullis.dev
package v1alpha1
