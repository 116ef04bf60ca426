package policies

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/mutate"
	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// SecretReader reads a public key from a Secret, for keys given by secretRef.
type SecretReader interface {
	PublicKey(ctx context.Context, namespace, name, key string) (string, error)
}

// ConfigMapReader reads a document from a ConfigMap, for trusted roots given by configMapRef.
// A SecretReader that is also a ConfigMapReader serves both.
type ConfigMapReader interface {
	ConfigMapKey(ctx context.Context, namespace, name, key string) (string, error)
}

// VerificationOptions configure image verification for every policy a Compiler compiles.
type VerificationOptions struct {
	// Cache is shared by every verifyImages rule; nil disables caching.
	Cache *verify.Cache
	// Timeout bounds one image verification; keep it below the webhook's deadline.
	Timeout time.Duration
	// InsecureRegistries are reached over plain HTTP (for testing); Transport must allow the same.
	InsecureRegistries []string
	// Transport is the HTTP transport to registries under the process's egress rules
	// (verify.NewTransport); nil allows InsecureRegistries and no private address.
	Transport http.RoundTripper
	// NamespacedRegistries, when set, are the only registries (host[:port]) whose images a
	// namespaced Policy may verify: each of its image globs must start with one of them.
	NamespacedRegistries []string
	// Secrets reads keys given by secretRef; without it such keys are a compile error.
	Secrets SecretReader
	// KeyNamespaces are the namespaces whose Secrets a ClusterPolicy may read keys from; the first
	// is the default when secretRef names none. A Policy reads only its own namespace's.
	KeyNamespaces []string
	// Observer counts verifications (metrics); nil counts nothing.
	Observer verify.Observer
	// TrustedRoot is the Sigstore trusted root of rules that name none, and offline (the CLI's
	// --trusted-root) of rules whose trustedRoot is in a ConfigMap; nil is the public-good root.
	TrustedRoot *verify.TrustedRoot
	// DefaultRoot, without TrustedRoot, is the root of rules that name none: the public-good
	// root as TUF last refreshed it (the server's); nil is the embedded public-good root.
	DefaultRoot *verify.LiveRoot
}

// verifyImagesRule checks the cosign signatures of the matching images.
type verifyImagesRule struct {
	images   []glob
	verifier *verify.Verifier
	required bool
}

func (c *Compiler) compileVerifyImages(r *v1alpha1.VerifyImagesRule, path *field.Path, namespace string) (*verifyImagesRule, mutate.Mutator, field.ErrorList) {
	var errs field.ErrorList
	rule := &verifyImagesRule{required: ptr.Deref(r.Required, true)}
	if len(r.Images) == 0 {
		errs = append(errs, field.Required(path.Child("images"), "image globs, e.g. registry.example.com/team/*"))
	}
	for i, img := range r.Images {
		p := path.Child("images").Index(i)
		g, err := compileGlob(img)
		if err != nil {
			errs = append(errs, field.Invalid(p, img, err.Error()))
			continue
		}
		if namespace != "" && !c.registryAllowed(img) {
			errs = append(errs, field.Forbidden(p, fmt.Sprintf("a Policy may verify images only from %s (--namespaced-policy-registries): start the glob with one of them",
				strings.Join(c.verification.NamespacedRegistries, ", "))))
			continue
		}
		rule.images = append(rule.images, g)
	}
	if len(r.Keys) == 0 && len(r.Keyless) == 0 && r.CertificateChain == "" {
		errs = append(errs, field.Required(path, "name at least one attestor: keys, keyless or certificateChain"))
	}
	var keys []string
	for i, k := range r.Keys {
		p := path.Child("keys").Index(i)
		switch {
		case (k.PublicKey == "") == (k.SecretRef == nil):
			errs = append(errs, field.Invalid(p, "", "set exactly one of publicKey or secretRef"))
		case k.PublicKey != "":
			keys = append(keys, k.PublicKey)
		case c.checkOnly:
			// At the door: where the key may be read from is checked, the Secret is not read
			// (it may come later; and the answer must not tell whether it exists).
			_, e := c.secretNamespace(k.SecretRef, namespace, p.Child("secretRef"))
			errs = append(errs, e...)
		case c.verification.Secrets == nil:
			errs = append(errs, field.Invalid(p.Child("secretRef"), k.SecretRef.Name, "keys in Secrets are read in the cluster; offline, give publicKey"))
		default:
			pem, e := c.secretKey(k.SecretRef, namespace, p.Child("secretRef"))
			errs = append(errs, e...)
			if pem != "" {
				keys = append(keys, pem)
			}
		}
	}
	switch r.KeyMode {
	case "", v1alpha1.AnyKey, v1alpha1.AllKeys:
	default:
		errs = append(errs, field.NotSupported(path.Child("keyMode"), r.KeyMode, []string{"Any", "All"}))
	}
	identities, e := compileIdentities(r.Keyless, path.Child("keyless"))
	errs = append(errs, e...)
	if r.CertificateChain != "" {
		if _, err := verify.Compile(verify.Options{CertificateChain: r.CertificateChain, IgnoreTlog: true}); err != nil {
			errs = append(errs, field.Invalid(path.Child("certificateChain"), "(PEM)", strings.TrimPrefix(err.Error(), "certificateChain: ")))
		}
	}
	root, e := c.trustedRoot(r.TrustedRoot, namespace, path.Child("trustedRoot"))
	errs = append(errs, e...)
	attestations, e := c.compileAttestations(r.Attestations, path.Child("attestations"))
	errs = append(errs, e...)
	if len(errs) > 0 {
		return nil, nil, errs
	}
	if c.checkOnly {
		return rule, nil, nil
	}
	v, err := verify.Compile(verify.Options{
		PublicKeys: keys, Identities: identities, CertificateChain: r.CertificateChain, TrustedRoot: root, DefaultRoot: c.verification.DefaultRoot,
		// Keyless identities constrain the certificate chain's certificates; with a chain they
		// are an attestor of their own only under a trusted root named for them.
		Keyless:      len(r.Keyless) > 0 && (r.CertificateChain == "" || r.TrustedRoot != nil),
		Attestations: attestations,
		RequireAll:   r.KeyMode == v1alpha1.AllKeys, IgnoreTlog: r.IgnoreTlog, IgnoreSCT: r.IgnoreSCT, IgnoreTimestamps: r.IgnoreTimestamps,
		InsecureRegistries: c.verification.InsecureRegistries, Transport: c.verification.Transport,
		Timeout: c.verification.Timeout, Cache: c.verification.Cache, Observer: c.verification.Observer,
	})
	if err != nil {
		return nil, nil, field.ErrorList{field.Invalid(path, "", err.Error())}
	}
	rule.verifier = v
	var pin mutate.Mutator
	if ptr.Deref(r.MutateDigest, true) {
		pin = &mutate.PinDigests{Matches: func(image string) bool { return matchAny(rule.images, image) }, Verifier: v}
	}
	return rule, pin, nil
}

// registryAllowed reports whether a namespaced Policy may verify the images of glob: the glob
// must begin with an allowed registry and a slash, before any wildcard.
func (c *Compiler) registryAllowed(glob string) bool {
	if len(c.verification.NamespacedRegistries) == 0 {
		return true
	}
	for _, reg := range c.verification.NamespacedRegistries {
		prefix := strings.TrimSuffix(reg, "/") + "/"
		if strings.HasPrefix(glob, prefix) && !strings.ContainsAny(prefix, "*?") {
			return true
		}
	}
	return false
}

// secretKey reads the public key a secretRef names. A Policy reads only Secrets of its own
// namespace and a ClusterPolicy only those of KeyNamespaces. Whatever went wrong, the error is
// the same fixed phrase: a policy's status must not tell whether a Secret exists or what it holds.
// secretNamespace returns the namespace a key's Secret is read from, or why it may not be.
func (c *Compiler) secretNamespace(ref *v1alpha1.SecretKeyRef, policyNamespace string, path *field.Path) (string, field.ErrorList) {
	return c.readableNamespace(ref.Namespace, policyNamespace, path, "keys only from Secrets")
}

// readableNamespace returns the namespace a policy may read what from (default: its own, or
// the first key namespace), or why it may not.
func (c *Compiler) readableNamespace(ns, policyNamespace string, path *field.Path, what string) (string, field.ErrorList) {
	switch {
	case policyNamespace != "":
		if ns == "" {
			ns = policyNamespace
		}
		if ns != policyNamespace {
			return "", field.ErrorList{field.Forbidden(path.Child("namespace"), fmt.Sprintf("a Policy may read %s in its own namespace", what))}
		}
	default:
		if ns == "" && len(c.verification.KeyNamespaces) > 0 {
			ns = c.verification.KeyNamespaces[0]
		}
		if !slices.Contains(c.verification.KeyNamespaces, ns) {
			return "", field.ErrorList{field.Forbidden(path.Child("namespace"), fmt.Sprintf("a ClusterPolicy may read %s in %s (--key-secret-namespaces)",
				what, strings.Join(c.verification.KeyNamespaces, ", ")))}
		}
	}
	return ns, nil
}

func (c *Compiler) secretKey(ref *v1alpha1.SecretKeyRef, policyNamespace string, path *field.Path) (string, field.ErrorList) {
	ns, errs := c.secretNamespace(ref, policyNamespace, path)
	if len(errs) > 0 {
		return "", errs
	}
	key := ref.Key
	if key == "" {
		key = "cosign.pub"
	}
	pem, err := c.verification.Secrets.PublicKey(context.Background(), ns, ref.Name, key)
	if err == nil {
		_, err = cryptoutils.UnmarshalPEMToPublicKey([]byte(pem))
	}
	if err != nil {
		return "", field.ErrorList{field.Invalid(path, ns+"/"+ref.Name, fmt.Sprintf("key %q: no such Secret or key, or not a PEM public key", key))}
	}
	return pem, nil
}

func (r *verifyImagesRule) evaluate(in *input) verdict {
	pod := in.res.Pod
	if pod == nil {
		return skip("verifyImages applies to Pods and pod controllers only")
	}
	var problems []string
	var failures []error
	check := func(image string, p *field.Path, name string) {
		if !matchAny(r.images, image) {
			return
		}
		v, err := r.verifier.Verify(in.ctx, image, in.req.Keychain)
		switch {
		case err != nil:
			failures = append(failures, fmt.Errorf("%s (%q): %w", p, name, err))
		case !v.Verified:
			problems = append(problems, fmt.Sprintf("%s (%q): image %s: %s", p, name, image, v.Reason))
		}
	}
	mutate.VisitContainers(pod.Spec, true, func(list string, i int, c *corev1.Container) {
		check(c.Image, pod.SpecPath.Child(list).Index(i), c.Name)
	})
	// Image volumes (GA in Kubernetes 1.36) are images too: mounted content must be verified.
	for i, vol := range pod.Spec.Volumes {
		if vol.Image != nil {
			check(vol.Image.Reference, pod.SpecPath.Child("volumes").Index(i).Child("image", "reference"), vol.Name)
		}
	}
	switch {
	case len(failures) > 0:
		// The registry could not answer in time: the policy's failurePolicy decides.
		return evalError(fmt.Errorf("could not verify: %w", errors.Join(failures...)))
	case len(problems) > 0 && r.required:
		return fail(strings.Join(problems, "; "))
	case len(problems) > 0:
		return verdict{outcome: Pass, message: "not verified (required: false): " + strings.Join(problems, "; ")}
	}
	return pass()
}
