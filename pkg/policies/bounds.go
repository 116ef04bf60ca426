package policies

import (
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// The size bounds of a policy and of an exception. The CRDs carry the same numbers as
// maxItems/maxLength (a test keeps the two equal), so the API server refuses an oversized object;
// the compiler checks them again, first and without compiling anything, because the CLI reads
// files the API server never saw, and a CRD installed by hand may lack them.
const (
	// MaxRules is the most rules one policy holds.
	MaxRules = 100
	// MaxListItems bounds every other list: kinds, namespaces, globs, images, keys, exclusions,
	// required labels, label patterns, exception targets.
	MaxListItems = 64
	// MaxOverrides is the most enforcement overrides one policy holds.
	MaxOverrides = 16
	// MaxNameLength bounds names, label keys, kinds and resource names.
	MaxNameLength = 253
	// MaxGlobLength bounds a namespace or image glob; a glob matches in time linear in its length
	// times the subject's.
	MaxGlobLength = 512
	// MaxExpressionLength bounds a CEL expression or message expression.
	MaxExpressionLength = 5000
	// MaxTextLength bounds messages, regular expressions, paths, owners and reasons.
	MaxTextLength = 1024
	// MaxKeyLength bounds an inline PEM public key.
	MaxKeyLength = 8192
	// MaxIdentities bounds a verifyImages rule's keyless identities.
	MaxIdentities = 32
	// MaxAttestations bounds a verifyImages rule's attestations, and MaxConditions the
	// conditions of each.
	MaxAttestations = 16
	MaxConditions   = 16
	// MaxExtensions bounds the Fulcio extensions an identity constrains.
	MaxExtensions = 16
	// MaxChainLength bounds a PEM certificateChain.
	MaxChainLength = 64 << 10
	// MaxTrustedRootLength bounds an inline trusted root (verify.MaxTrustedRootBytes).
	MaxTrustedRootLength = 256 << 10
	// MaxSelectorTerms bounds a label selector: its matchLabels plus its matchExpressions, and
	// the values of each expression.
	MaxSelectorTerms = 32
)

// checkPolicyBounds reports every list and string of spec past its bound. It runs before any
// compile work, so an oversized policy costs only this walk.
func checkPolicyBounds(spec *v1alpha1.PolicySpec, path *field.Path) field.ErrorList {
	var b bounds
	b.items(path.Child("enforcementOverrides"), len(spec.EnforcementOverrides), MaxOverrides)
	for i := range spec.EnforcementOverrides {
		o := &spec.EnforcementOverrides[i]
		p := path.Child("enforcementOverrides").Index(i)
		b.strings(p.Child("namespaces"), o.Namespaces, MaxGlobLength)
		b.selector(p.Child("namespaceSelector"), o.NamespaceSelector)
	}
	b.match(path.Child("match"), &spec.Match)
	if spec.Exclude != nil {
		b.match(path.Child("exclude"), spec.Exclude)
	}
	if spec.Params != nil && len(spec.Params.Raw) > MaxParamsBytes {
		b.errs = append(b.errs, field.TooLong(path.Child("params"), "", MaxParamsBytes))
	}
	b.items(path.Child("variables"), len(spec.Variables), MaxListItems)
	for i, v := range spec.Variables {
		b.text(path.Child("variables").Index(i).Child("name"), v.Name, 63)
		b.text(path.Child("variables").Index(i).Child("expression"), v.Expression, MaxExpressionLength)
	}
	b.items(path.Child("rules"), len(spec.Rules), MaxRules)
	for i := range spec.Rules {
		b.rule(RulePath(path, i, spec.Rules[i].Name), &spec.Rules[i])
	}
	return b.errs
}

// checkExceptionBounds is checkPolicyBounds for an exception.
func checkExceptionBounds(spec *v1alpha1.PolicyExceptionSpec, path *field.Path) field.ErrorList {
	var b bounds
	b.items(path.Child("exceptions"), len(spec.Exceptions), MaxListItems)
	for i, t := range spec.Exceptions {
		p := path.Child("exceptions").Index(i)
		b.text(p.Child("policyName"), t.PolicyName, MaxNameLength)
		b.list(p.Child("ruleNames"), t.RuleNames, MaxRules, MaxNameLength)
	}
	b.match(path.Child("match"), &spec.Match)
	b.text(path.Child("owner"), spec.Owner, MaxTextLength)
	b.text(path.Child("reason"), spec.Reason, MaxTextLength)
	return b.errs
}

// bounds collects the errors of one walk.
type bounds struct{ errs field.ErrorList }

func (b *bounds) items(path *field.Path, n, limit int) {
	if n > limit {
		b.errs = append(b.errs, field.TooMany(path, n, limit))
	}
}

// text checks a string's length in characters, as the API server counts maxLength.
func (b *bounds) text(path *field.Path, s string, limit int) {
	if len(s) > limit { // cheap test first: bytes ≥ characters
		if n := utf8.RuneCountInString(s); n > limit {
			b.errs = append(b.errs, field.TooLong(path, "", limit))
		}
	}
}

// strings checks a list of at most MaxListItems strings of at most limit characters.
func (b *bounds) strings(path *field.Path, list []string, limit int) {
	b.list(path, list, MaxListItems, limit)
}

func (b *bounds) list(path *field.Path, list []string, maxItems, maxLength int) {
	b.items(path, len(list), maxItems)
	for i, s := range list {
		b.text(path.Index(i), s, maxLength)
	}
}

// objectKeyRef bounds a reference to a key of a Secret or ConfigMap.
func (b *bounds) objectKeyRef(path *field.Path, namespace, name, key string) {
	b.text(path.Child("namespace"), namespace, 63)
	b.text(path.Child("name"), name, MaxNameLength)
	b.text(path.Child("key"), key, MaxNameLength)
}

func (b *bounds) match(path *field.Path, m *v1alpha1.MatchResources) {
	b.strings(path.Child("kinds"), m.Kinds, MaxNameLength)
	b.items(path.Child("operations"), len(m.Operations), 4)
	b.strings(path.Child("namespaces"), m.Namespaces, MaxGlobLength)
	b.selector(path.Child("namespaceSelector"), m.NamespaceSelector)
	b.selector(path.Child("objectSelector"), m.ObjectSelector)
}

func (b *bounds) selector(path *field.Path, s *metav1.LabelSelector) {
	if s == nil {
		return
	}
	if n := len(s.MatchLabels) + len(s.MatchExpressions); n > MaxSelectorTerms {
		b.errs = append(b.errs, field.TooMany(path, n, MaxSelectorTerms))
		return
	}
	for k, v := range s.MatchLabels {
		b.text(path.Child("matchLabels").Key(truncateKey(k)), k, MaxNameLength)
		b.text(path.Child("matchLabels").Key(truncateKey(k)), v, MaxNameLength)
	}
	for i, e := range s.MatchExpressions {
		p := path.Child("matchExpressions").Index(i)
		b.text(p.Child("key"), e.Key, MaxNameLength)
		b.list(p.Child("values"), e.Values, MaxSelectorTerms, MaxNameLength)
	}
}

func (b *bounds) rule(path *field.Path, r *v1alpha1.Rule) {
	b.text(path.Child("name"), r.Name, 63)
	if s := r.PodSecurity; s != nil {
		p := path.Child("podSecurity", "exclude")
		b.items(p, len(s.Exclude), MaxListItems)
		for i, x := range s.Exclude {
			b.text(p.Index(i).Child("control"), x.Control, 64)
			b.strings(p.Index(i).Child("images"), x.Images, MaxGlobLength)
		}
	}
	if s := r.Resources; s != nil {
		b.strings(path.Child("resources", "requests"), s.Requests, MaxNameLength)
		b.strings(path.Child("resources", "limits"), s.Limits, MaxNameLength)
	}
	if s := r.Labels; s != nil {
		b.strings(path.Child("labels", "required"), s.Required, MaxNameLength)
		p := path.Child("labels", "patterns")
		b.items(p, len(s.Patterns), MaxListItems)
		for k, v := range s.Patterns {
			b.text(p.Key(truncateKey(k)), k, MaxNameLength)
			b.text(p.Key(truncateKey(k)), v, MaxTextLength)
		}
	}
	if s := r.CEL; s != nil {
		p := path.Child("cel")
		b.text(p.Child("expression"), s.Expression, MaxExpressionLength)
		b.text(p.Child("messageExpression"), s.MessageExpression, MaxExpressionLength)
		b.text(p.Child("message"), s.Message, MaxTextLength)
	}
	if s := r.DefaultProbes; s != nil {
		b.items(path.Child("defaultProbes", "httpPorts"), len(s.HTTPPorts), MaxListItems)
		for name, d := range map[string]*v1alpha1.ProbeDefaults{"readiness": s.Readiness, "liveness": s.Liveness, "startup": s.Startup} {
			if d != nil {
				b.text(path.Child("defaultProbes", name, "path"), d.Path, MaxTextLength)
			}
		}
	}
	if s := r.VerifyImages; s != nil {
		p := path.Child("verifyImages")
		b.strings(p.Child("images"), s.Images, MaxGlobLength)
		b.items(p.Child("keys"), len(s.Keys), MaxListItems)
		for i, k := range s.Keys {
			b.text(p.Child("keys").Index(i).Child("publicKey"), k.PublicKey, MaxKeyLength)
			if ref := k.SecretRef; ref != nil {
				b.objectKeyRef(p.Child("keys").Index(i).Child("secretRef"), ref.Namespace, ref.Name, ref.Key)
			}
		}
		b.items(p.Child("keyless"), len(s.Keyless), MaxIdentities)
		for i, id := range s.Keyless {
			ip := p.Child("keyless").Index(i)
			for name, v := range map[string]string{"issuer": id.Issuer, "issuerRegExp": id.IssuerRegExp, "subject": id.Subject, "subjectRegExp": id.SubjectRegExp} {
				b.text(ip.Child(name), v, MaxTextLength)
			}
			b.items(ip.Child("extensions"), len(id.Extensions), MaxExtensions)
			for k, v := range id.Extensions {
				b.text(ip.Child("extensions").Key(truncateKey(k)), v, MaxTextLength)
			}
		}
		b.text(p.Child("certificateChain"), s.CertificateChain, MaxChainLength)
		if tr := s.TrustedRoot; tr != nil {
			b.text(p.Child("trustedRoot", "json"), tr.JSON, MaxTrustedRootLength)
			if ref := tr.ConfigMapRef; ref != nil {
				b.objectKeyRef(p.Child("trustedRoot", "configMapRef"), ref.Namespace, ref.Name, ref.Key)
			}
		}
		b.items(p.Child("attestations"), len(s.Attestations), MaxAttestations)
		for i, a := range s.Attestations {
			ap := p.Child("attestations").Index(i)
			b.text(ap.Child("predicateType"), a.PredicateType, MaxGlobLength)
			b.items(ap.Child("conditions"), len(a.Conditions), MaxConditions)
			for j, c := range a.Conditions {
				b.text(ap.Child("conditions").Index(j).Child("expression"), c.Expression, MaxExpressionLength)
				b.text(ap.Child("conditions").Index(j).Child("message"), c.Message, MaxTextLength)
			}
		}
	}
}

// truncateKey keeps a map key short enough to name in a field path.
func truncateKey(k string) string {
	if len(k) <= 64 {
		return k
	}
	return Truncate(k, 64)
}
