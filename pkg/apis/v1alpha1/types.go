package v1alpha1

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Enforcement is what happens to a resource that fails a rule.
// +kubebuilder:validation:Enum=Deny;Warn;Audit
type Enforcement string

const (
	// Deny rejects the request with the rule's message.
	Deny Enforcement = "Deny"
	// Warn admits the request and returns the message as a warning.
	Warn Enforcement = "Warn"
	// Audit admits the request and records the result (the dry-run mode).
	Audit Enforcement = "Audit"
)

// FailurePolicy says what an evaluation error (a CEL runtime error, an unreachable registry) means.
// +kubebuilder:validation:Enum=Fail;Ignore
type FailurePolicy string

const (
	// Fail treats an evaluation error as a failed rule.
	Fail FailurePolicy = "Fail"
	// Ignore treats an evaluation error as a passed rule, reported as an error result.
	Ignore FailurePolicy = "Ignore"
)

// Operation is an admission operation.
// +kubebuilder:validation:Enum=CREATE;UPDATE;DELETE;CONNECT
type Operation string

// The admission operations.
const (
	Create  Operation = "CREATE"
	Update  Operation = "UPDATE"
	Delete  Operation = "DELETE"
	Connect Operation = "CONNECT"
)

// PolicySpec is the specification shared by ClusterPolicy and Policy.
type PolicySpec struct {
	// Enforcement is the action taken when a rule fails: Deny, Warn or Audit (dry-run).
	// +kubebuilder:default=Audit
	// +optional
	Enforcement Enforcement `json:"enforcement,omitempty"`

	// EnforcementOverrides change the enforcement for the namespaces they select; the first
	// override that selects a resource's namespace wins.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	EnforcementOverrides []EnforcementOverride `json:"enforcementOverrides,omitempty"`

	// FailurePolicy says what an evaluation error means: Fail (the rule fails) or Ignore
	// (the rule is reported as an error and does not block).
	// +kubebuilder:default=Fail
	// +optional
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// Match selects the resources the policy applies to.
	// +optional
	Match MatchResources `json:"match,omitempty"`

	// Exclude removes resources from the match; same shape as match. A resource is excluded
	// when every field set in exclude selects it.
	// +optional
	Exclude *MatchResources `json:"exclude,omitempty"`

	// PodControllers extends every rule written for Pods to the pod templates of Deployment,
	// StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job and CronJob. Default true.
	// +optional
	PodControllers *bool `json:"podControllers,omitempty"`

	// Params are the policy's values, any JSON object: CEL expressions read them as params
	// ("params.registries"), so a library policy is a template whose values a team sets with a
	// patch. Each field's type is its value's, and is checked when the policy compiles. At most
	// 64 keys and 32 KiB.
	// +optional
	// +kubebuilder:validation:Type=object
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:pruning:PreserveUnknownFields
	Params *apiextensionsv1.JSON `json:"params,omitempty"`

	// Variables are named CEL expressions, as ValidatingAdmissionPolicy's: the rules' expressions
	// read them as variables.<name>. Each is evaluated at most once per request, when first read,
	// and may read the variables before it.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Variables []Variable `json:"variables,omitempty"`

	// Rules are evaluated in order; each has a name and exactly one rule type.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +listType=map
	// +listMapKey=name
	Rules []Rule `json:"rules"`
}

// EnforcementOverride sets a different enforcement for some namespaces.
// +kubebuilder:validation:XValidation:rule="has(self.namespaces) || has(self.namespaceSelector)",message="an override needs namespaces or namespaceSelector"
type EnforcementOverride struct {
	// Namespaces are names or globs ("dev-*").
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	Namespaces []string `json:"namespaces,omitempty"`
	// NamespaceSelector selects namespaces by label.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// Enforcement in force for the selected namespaces.
	Enforcement Enforcement `json:"enforcement"`
}

// MatchResources selects resources. Every field that is set must select the resource; an empty
// MatchResources selects everything.
type MatchResources struct {
	// Kinds are "Kind" (any group), "group/Kind" ("apps/Deployment"; "core/Pod" for the core group) or "*".
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Kinds []string `json:"kinds,omitempty"`
	// Operations the policy applies to. Default: CREATE and UPDATE.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	Operations []Operation `json:"operations,omitempty"`
	// Namespaces are names or globs. Cluster-scoped resources never match a non-empty list.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	Namespaces []string `json:"namespaces,omitempty"`
	// NamespaceSelector selects by the labels of the resource's namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// ObjectSelector selects by the labels of the resource itself.
	// +optional
	ObjectSelector *metav1.LabelSelector `json:"objectSelector,omitempty"`
}

// Rule is one named check. Exactly one rule type is set.
// +kubebuilder:validation:XValidation:rule="[has(self.podSecurity), has(self.resources), has(self.labels), has(self.cel), has(self.defaultProbes), has(self.verifyImages)].filter(x, x).size() == 1",message="exactly one of podSecurity, resources, labels, cel, defaultProbes or verifyImages must be set"
type Rule struct {
	// Name identifies the rule in messages, results and metrics.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// PodSecurity enforces a Pod Security Standards level.
	// +optional
	PodSecurity *PodSecurityRule `json:"podSecurity,omitempty"`
	// Resources requires resource requests and limits on every container.
	// +optional
	Resources *ResourcesRule `json:"resources,omitempty"`
	// Labels requires labels and constrains their values.
	// +optional
	Labels *LabelsRule `json:"labels,omitempty"`
	// CEL is a ValidatingAdmissionPolicy-style expression.
	// +optional
	CEL *CELRule `json:"cel,omitempty"`
	// DefaultProbes is a mutation: it gives containers without probes ones derived from their
	// declared ports. In Deny (enforced) it changes the object; in Warn and Audit it only reports.
	// +optional
	DefaultProbes *DefaultProbesRule `json:"defaultProbes,omitempty"`
	// VerifyImages requires cosign signatures from trusted keys on matching images.
	// +optional
	VerifyImages *VerifyImagesRule `json:"verifyImages,omitempty"`
}

// KeyMode says how many of the keys must have signed an image.
// +kubebuilder:validation:Enum=Any;All
type KeyMode string

// The key modes.
const (
	AnyKey  KeyMode = "Any"
	AllKeys KeyMode = "All"
)

// VerifyImagesRule verifies the cosign signatures, and optionally the attestations, of every
// container, init container and ephemeral container image, and every image volume, that matches
// images. Signatures are checked against the attestors the rule names: keys (`cosign sign
// --key`), keyless identities under a Sigstore trusted root (Fulcio certificates), and a
// certificate chain of your own PKI (`cosign sign --certificate … --certificate-chain …`).
// +kubebuilder:validation:XValidation:rule="has(self.keys) || has(self.keyless) || has(self.certificateChain)",message="name at least one attestor: keys, keyless or certificateChain"
type VerifyImagesRule struct {
	// Images are globs of the images to verify, e.g. registry.example.com/team/*; images that
	// match none are untouched.
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	Images []string `json:"images"`
	// Keys are trusted public keys; each is one attestor.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Keys []KeyRef `json:"keys,omitempty"`
	// Keyless are the accepted identities of certificate-based (keyless) signatures: a
	// certificate that chains to a certificate authority of the trusted root and matches any one
	// identity is accepted. Together they are one attestor. With certificateChain and no
	// trustedRoot, they constrain the certificates that chain to certificateChain instead.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Keyless []KeylessIdentity `json:"keyless,omitempty"`
	// CertificateChain is your own PKI: PEM-encoded root and intermediate certificates. A
	// signature whose certificate chains to one of its roots (and matches a keyless identity,
	// when any are given) is accepted. It is one attestor.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	CertificateChain string `json:"certificateChain,omitempty"`
	// TrustedRoot is the Sigstore TrustedRoot (JSON) that keyless identities are checked
	// under: its certificate authorities, transparency logs, CT logs and timestamp
	// authorities. Default: the Sigstore public-good root.
	// +optional
	TrustedRoot *TrustedRootRef `json:"trustedRoot,omitempty"`
	// Attestations the image must also carry, each signed by the attestors (under keyMode) and
	// meeting its conditions. They come on top of the signature, which stays required.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Attestations []AttestationCheck `json:"attestations,omitempty"`
	// KeyMode: Any (default) accepts a signature by any one attestor; All requires every
	// attestor (each key, the keyless identities, the certificate chain).
	// +kubebuilder:default=Any
	// +optional
	KeyMode KeyMode `json:"keyMode,omitempty"`
	// Required (default true): an unsigned matching image is a violation.
	// +optional
	Required *bool `json:"required,omitempty"`
	// MutateDigest (default true): on the mutating webhook, a verified tag is pinned to its
	// digest (image:tag becomes image:tag@sha256:…), so what runs is what was verified.
	// +optional
	MutateDigest *bool `json:"mutateDigest,omitempty"`
	// IgnoreTlog waives the transparency-log inclusion proof, for private, offline setups. Without
	// it, a signature must carry a proof from a log of the trusted root, when the root names any.
	// +optional
	IgnoreTlog bool `json:"ignoreTlog,omitempty"`
	// IgnoreSCT waives the certificate-transparency proof (SCT) of keyless certificates. Without
	// it, a certificate must carry an SCT from a CT log of the trusted root, when the root names
	// any.
	// +optional
	IgnoreSCT bool `json:"ignoreSCT,omitempty"`
	// IgnoreTimestamps waives the RFC 3161 timestamps signatures carry: without it, a timestamp
	// must be from a timestamp authority of the trusted root, when the root names any (and then
	// shows when an expired certificate signed); with it, timestamps are not read.
	// +optional
	IgnoreTimestamps bool `json:"ignoreTimestamps,omitempty"`
}

// KeylessIdentity is one accepted signer identity of a certificate: its OIDC issuer and its
// subject (the certificate's subject alternative name: an email, a URI such as a workflow's),
// each exact or a regular expression (RE2, anchored by you with ^…$), plus optional Fulcio
// certificate extensions that must match exactly. An empty identity is refused: name at least
// an issuer and a subject.
// +kubebuilder:validation:XValidation:rule="has(self.issuer) != has(self.issuerRegExp)",message="set exactly one of issuer or issuerRegExp"
// +kubebuilder:validation:XValidation:rule="has(self.subject) != has(self.subjectRegExp)",message="set exactly one of subject or subjectRegExp"
type KeylessIdentity struct {
	// Issuer is the OIDC issuer, e.g. https://token.actions.githubusercontent.com.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Issuer string `json:"issuer,omitempty"`
	// IssuerRegExp matches the OIDC issuer.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	IssuerRegExp string `json:"issuerRegExp,omitempty"`
	// Subject is the identity, e.g. https://github.com/acme/app/.github/workflows/release.yaml@refs/heads/main.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Subject string `json:"subject,omitempty"`
	// SubjectRegExp matches the identity.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
	// Extensions are Fulcio certificate extensions that must match exactly, by their names in
	// the Fulcio documentation: githubWorkflowRepository, githubWorkflowRef, githubWorkflowTrigger,
	// githubWorkflowSHA, githubWorkflowName, sourceRepositoryURI, sourceRepositoryRef,
	// sourceRepositoryDigest, sourceRepositoryOwnerURI, buildSignerURI, buildSignerDigest,
	// buildTrigger, buildConfigURI, runnerEnvironment, runInvocationURI.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Extensions map[string]string `json:"extensions,omitempty"`
}

// TrustedRootRef is a Sigstore TrustedRoot document, inline or in a ConfigMap.
// +kubebuilder:validation:XValidation:rule="has(self.json) != has(self.configMapRef)",message="set exactly one of json or configMapRef"
type TrustedRootRef struct {
	// JSON is the TrustedRoot document itself.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	JSON string `json:"json,omitempty"`
	// ConfigMapRef names a ConfigMap key holding the document. A Policy may read only its own
	// namespace's ConfigMaps; a ClusterPolicy only those of --key-secret-namespaces.
	// +optional
	ConfigMapRef *ConfigMapKeyRef `json:"configMapRef,omitempty"`
}

// ConfigMapKeyRef names a key of a ConfigMap.
type ConfigMapKeyRef struct {
	// Namespace of the ConfigMap; default: the Policy's own, or for a ClusterPolicy the first
	// of --key-secret-namespaces.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the ConfigMap's data; default trusted_root.json.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// AttestationCheck is one attestation an image must carry: an in-toto statement of this
// predicate type whose subject is the image's digest, signed by the rule's attestors, and
// whose predicate meets every condition.
type AttestationCheck struct {
	// PredicateType, e.g. https://slsa.dev/provenance/v1, https://cyclonedx.org/bom,
	// https://spdx.dev/Document, https://cosign.sigstore.dev/attestation/vuln/v1.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	PredicateType string `json:"predicateType"`
	// Conditions are CEL expressions over `predicate` (the statement's predicate) and
	// `statement` (the whole in-toto statement); each must be true for some signed
	// attestation of this type.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Conditions []AttestationCondition `json:"conditions,omitempty"`
}

// AttestationCondition is a CEL condition over an attestation's predicate.
type AttestationCondition struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=5000
	Expression string `json:"expression"`
	// Message is shown when the condition is false; default: the expression.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// KeyRef is a public key, inline or in a Secret.
// +kubebuilder:validation:XValidation:rule="has(self.publicKey) != has(self.secretRef)",message="set exactly one of publicKey or secretRef"
type KeyRef struct {
	// PublicKey is a PEM-encoded public key.
	// +optional
	// +kubebuilder:validation:MaxLength=8192
	PublicKey string `json:"publicKey,omitempty"`
	// SecretRef names a Secret key holding a PEM-encoded public key.
	// +optional
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`
}

// SecretKeyRef names a key of a Secret.
type SecretKeyRef struct {
	// Namespace of the Secret. A Policy may read only its own namespace's Secrets (the default);
	// a ClusterPolicy only those of the namespaces the operator allows (--key-secret-namespaces;
	// default and only by default: Portcullis's own).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the Secret's data; default cosign.pub.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key,omitempty"`
}

// DefaultProbesRule adds readiness and liveness probes (and a startup probe when asked) to every
// regular container and restartable init container (sidecar) that lacks them. A probe checks the
// container's port named "http" (or "http-*"), else its first TCP port: with tcpSocket, or with
// httpGet when a path is given. A container without a TCP port gets no probe, and a warning.
type DefaultProbesRule struct {
	// Readiness probe defaults: initial delay 5s, period 10s.
	// +optional
	Readiness *ProbeDefaults `json:"readiness,omitempty"`
	// Liveness probe defaults: initial delay 15s, period 20s.
	// +optional
	Liveness *ProbeDefaults `json:"liveness,omitempty"`
	// Startup, when set, also adds a startup probe (period 10s, failure threshold 30).
	// +optional
	Startup *ProbeDefaults `json:"startup,omitempty"`
	// HTTPPorts are the container ports, by name or number, that serve HTTP besides those named
	// so (http, http-*, *-http, web, https, https-*). A probe with a path is an httpGet only on
	// such a port; on any other it is a tcpSocket, with a warning.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	HTTPPorts []intstr.IntOrString `json:"httpPorts,omitempty"`
}

// ProbeDefaults shapes one kind of injected probe. Unset timings take the defaults; the API
// server's own defaults apply to the rest.
type ProbeDefaults struct {
	// Disabled skips this probe.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
	// Path makes the probe an httpGet on this path (e.g. /readyz, /healthz) when the probed port
	// serves HTTP (see httpPorts); without it, or on another port, tcpSocket.
	// +kubebuilder:validation:Pattern=`^/`
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Path string `json:"path,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	InitialDelaySeconds *int32 `json:"initialDelaySeconds,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	PeriodSeconds *int32 `json:"periodSeconds,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	FailureThreshold *int32 `json:"failureThreshold,omitempty"`
}

// PodSecurityLevel is a Pod Security Standards level that can be enforced.
// +kubebuilder:validation:Enum=baseline;restricted
type PodSecurityLevel string

// PodSecurityRule enforces a Pod Security Standards level with the upstream checks.
type PodSecurityRule struct {
	// Level is baseline or restricted.
	Level PodSecurityLevel `json:"level"`
	// Version of the standard: "latest" or "v1.NN" (v1.0 or later).
	// +kubebuilder:validation:Pattern=`^(latest|v1\.(0|[1-9][0-9]*))$`
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:default=latest
	// +optional
	Version string `json:"version,omitempty"`
	// Exclude skips a control, for all containers or only for containers whose image matches.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Exclude []PodSecurityExclusion `json:"exclude,omitempty"`
}

// PodSecurityExclusion skips one control of the standard.
type PodSecurityExclusion struct {
	// Control is the upstream check ID, e.g. runAsNonRoot, capabilities_restricted, hostPorts.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	Control string `json:"control"`
	// Images are image globs; when set, the control still applies to the pod-level fields and to
	// every container whose image matches none of them.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	Images []string `json:"images,omitempty"`
}

// ResourcesRule requires resource requests and limits on every container and init container.
// +kubebuilder:validation:XValidation:rule="has(self.requests) || has(self.limits)",message="list at least one of requests or limits"
type ResourcesRule struct {
	// Requests that must be set, e.g. cpu, memory.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Requests []string `json:"requests,omitempty"`
	// Limits that must be set, e.g. memory.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Limits []string `json:"limits,omitempty"`
}

// LabelsRule requires label keys and constrains label values. It applies to the object's metadata
// and, for pod controllers, to the pod template's metadata.
// +kubebuilder:validation:XValidation:rule="has(self.required) || has(self.patterns)",message="list at least one of required or patterns"
type LabelsRule struct {
	// Required label keys.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Required []string `json:"required,omitempty"`
	// Patterns are regular expressions (RE2) that a label's value must match when the label is set.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Patterns map[string]string `json:"patterns,omitempty"`
}

// CELRule is a boolean CEL expression with ValidatingAdmissionPolicy's variables (object,
// oldObject, request, namespaceObject) plus podSpec and podMeta for every pod-bearing kind.
type CELRule struct {
	// Expression must evaluate to true for the resource to pass.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=5000
	Expression string `json:"expression"`
	// Message is returned when the expression is false.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// MessageExpression is a CEL expression that returns the message as a string; it wins over
	// message when it evaluates without error.
	// +optional
	// +kubebuilder:validation:MaxLength=5000
	MessageExpression string `json:"messageExpression,omitempty"`
}

// Variable is a named CEL expression, as in ValidatingAdmissionPolicy.
type Variable struct {
	// Name is how expressions read it: variables.<name>. A CEL identifier.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z_][a-zA-Z0-9_]*$`
	Name string `json:"name"`
	// Expression is its value, with the variables CEL rules see.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=5000
	Expression string `json:"expression"`
}

// ClusterPolicy applies to resources in every namespace and to cluster-scoped resources.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cpol,categories=portcullis
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcement`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Violations",type=integer,JSONPath=`.status.audit.violations`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicySpec   `json:"spec"`
	Status PolicyStatus `json:"status,omitempty"`
}

// ClusterPolicyList is a list of ClusterPolicy.
// +kubebuilder:object:root=true
type ClusterPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterPolicy `json:"items"`
}

// Policy applies only to resources in its own namespace.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=pol,categories=portcullis
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcement`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Violations",type=integer,JSONPath=`.status.audit.violations`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Policy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicySpec   `json:"spec"`
	Status PolicyStatus `json:"status,omitempty"`
}

// PolicyList is a list of Policy.
// +kubebuilder:object:root=true
type PolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Policy `json:"items"`
}

// PolicyExceptionSpec exempts matching resources in the exception's namespace from some rules.
type PolicyExceptionSpec struct {
	// Exceptions name the policies and rules exempted.
	// +kubebuilder:validation:MinItems=1
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	Exceptions []ExceptionTarget `json:"exceptions"`
	// Match selects the resources exempted, within the exception's namespace.
	// +optional
	Match MatchResources `json:"match,omitempty"`
	// Owner is the team or person accountable for the exception.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Owner string `json:"owner"`
	// Reason says why the exception exists.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason"`
	// Expires is mandatory: after it the exception no longer applies.
	Expires metav1.Time `json:"expires"`
}

// ExceptionTarget names a policy and, optionally, some of its rules (all rules when empty).
type ExceptionTarget struct {
	// PolicyName is a ClusterPolicy name, or a Policy name in the exception's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	PolicyName string `json:"policyName"`
	// RuleNames are the rules exempted; empty means every rule of the policy.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	RuleNames []string `json:"ruleNames,omitempty"`
}

// PolicyException exempts resources from rules, with an owner, a reason and an expiry.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=polex,categories=portcullis
// +kubebuilder:printcolumn:name="Owner",type=string,JSONPath=`.spec.owner`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.spec.expires`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PolicyException struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   PolicyExceptionSpec   `json:"spec"`
	Status PolicyExceptionStatus `json:"status,omitempty"`
}

// PolicyExceptionList is a list of PolicyException.
// +kubebuilder:object:root=true
type PolicyExceptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PolicyException `json:"items"`
}
