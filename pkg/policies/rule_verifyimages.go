package policies

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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

// VerificationOptions configure image verification for every policy a Compiler compiles.
type VerificationOptions struct {
	// Cache is shared by every verifyImages rule; nil disables caching.
	Cache *verify.Cache
	// Timeout bounds one image verification; keep it below the webhook's deadline.
	Timeout time.Duration
	// InsecureRegistries are reached over plain HTTP or untrusted TLS (for testing).
	InsecureRegistries []string
	// Secrets reads keys given by secretRef; without it such keys are a compile error.
	Secrets SecretReader
	// Observer counts verifications (metrics); nil counts nothing.
	Observer verify.Observer
}

// verifyImagesRule checks the cosign signatures of the matching images.
type verifyImagesRule struct {
	images   []glob
	verifier *verify.Verifier
	required bool
}

func (c *Compiler) compileVerifyImages(r *v1alpha1.VerifyImagesRule, path *field.Path) (*verifyImagesRule, mutate.Mutator, field.ErrorList) {
	var errs field.ErrorList
	rule := &verifyImagesRule{required: ptr.Deref(r.Required, true)}
	if len(r.Images) == 0 {
		errs = append(errs, field.Required(path.Child("images"), "image globs, e.g. registry.example.com/team/*"))
	}
	for i, img := range r.Images {
		g, err := compileGlob(img)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("images").Index(i), img, err.Error()))
			continue
		}
		rule.images = append(rule.images, g)
	}
	if len(r.Keys) == 0 {
		errs = append(errs, field.Required(path.Child("keys"), "at least one public key"))
	}
	var keys []string
	for i, k := range r.Keys {
		p := path.Child("keys").Index(i)
		switch {
		case (k.PublicKey == "") == (k.SecretRef == nil):
			errs = append(errs, field.Invalid(p, "", "set exactly one of publicKey or secretRef"))
		case k.PublicKey != "":
			keys = append(keys, k.PublicKey)
		case c.verification.Secrets == nil:
			errs = append(errs, field.Invalid(p.Child("secretRef"), k.SecretRef.Name, "keys in Secrets are read in the cluster; offline, give publicKey"))
		default:
			key := k.SecretRef.Key
			if key == "" {
				key = "cosign.pub"
			}
			pem, err := c.verification.Secrets.PublicKey(context.Background(), k.SecretRef.Namespace, k.SecretRef.Name, key)
			if err != nil {
				errs = append(errs, field.Invalid(p.Child("secretRef"), k.SecretRef.Namespace+"/"+k.SecretRef.Name, err.Error()))
				continue
			}
			keys = append(keys, pem)
		}
	}
	switch r.KeyMode {
	case "", v1alpha1.AnyKey, v1alpha1.AllKeys:
	default:
		errs = append(errs, field.NotSupported(path.Child("keyMode"), r.KeyMode, []string{"Any", "All"}))
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	v, err := verify.Compile(verify.Options{
		PublicKeys: keys, RequireAll: r.KeyMode == v1alpha1.AllKeys, IgnoreTlog: r.IgnoreTlog,
		InsecureRegistries: c.verification.InsecureRegistries, Timeout: c.verification.Timeout, Cache: c.verification.Cache,
		Observer: c.verification.Observer,
	})
	if err != nil {
		return nil, nil, field.ErrorList{field.Invalid(path.Child("keys"), "", err.Error())}
	}
	rule.verifier = v
	var pin mutate.Mutator
	if ptr.Deref(r.MutateDigest, true) {
		pin = &mutate.PinDigests{Matches: func(image string) bool { return matchAny(rule.images, image) }, Verifier: v}
	}
	return rule, pin, nil
}

func (r *verifyImagesRule) evaluate(in *input) verdict {
	pod := in.res.Pod
	if pod == nil {
		return skip("verifyImages applies to Pods and pod controllers only")
	}
	var problems []string
	var failures []error
	check := func(cs []corev1.Container, p *field.Path) {
		for i, c := range cs {
			if !matchAny(r.images, c.Image) {
				continue
			}
			v, err := r.verifier.Verify(in.ctx, c.Image, in.req.Keychain)
			switch {
			case err != nil:
				failures = append(failures, fmt.Errorf("%s (%q): %w", p.Index(i), c.Name, err))
			case !v.Verified:
				problems = append(problems, fmt.Sprintf("%s (%q): image %s: %s", p.Index(i), c.Name, c.Image, v.Reason))
			}
		}
	}
	check(pod.Spec.InitContainers, pod.SpecPath.Child("initContainers"))
	check(pod.Spec.Containers, pod.SpecPath.Child("containers"))
	ephemeral := make([]corev1.Container, len(pod.Spec.EphemeralContainers))
	for i := range pod.Spec.EphemeralContainers {
		ephemeral[i] = corev1.Container(pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
	}
	check(ephemeral, pod.SpecPath.Child("ephemeralContainers"))
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
