package policies

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// compileIdentities checks the keyless identities, naming the field of each problem.
func compileIdentities(ids []v1alpha1.KeylessIdentity, path *field.Path) ([]verify.Identity, field.ErrorList) {
	var errs field.ErrorList
	known := verify.ExtensionNames()
	out := make([]verify.Identity, 0, len(ids))
	for i, id := range ids {
		p := path.Index(i)
		if (id.Issuer == "") == (id.IssuerRegExp == "") {
			errs = append(errs, field.Invalid(p, "", "set exactly one of issuer or issuerRegExp"))
		}
		if (id.Subject == "") == (id.SubjectRegExp == "") {
			errs = append(errs, field.Invalid(p, "", "set exactly one of subject or subjectRegExp"))
		}
		for name, re := range map[string]string{"issuerRegExp": id.IssuerRegExp, "subjectRegExp": id.SubjectRegExp} {
			if _, err := regexp.Compile(re); err != nil {
				errs = append(errs, field.Invalid(p.Child(name), re, "not an RE2 regular expression: "+err.Error()))
			}
		}
		for k := range id.Extensions {
			if !slices.Contains(known, k) {
				errs = append(errs, field.NotSupported(p.Child("extensions").Key(truncateKey(k)), k, known))
			}
		}
		out = append(out, verify.Identity{Issuer: id.Issuer, IssuerRegExp: id.IssuerRegExp, Subject: id.Subject, SubjectRegExp: id.SubjectRegExp, Extensions: id.Extensions})
	}
	return out, errs
}

// trustedRoot resolves a rule's trusted root: inline, from a ConfigMap (which a Policy reads in
// its own namespace only, a ClusterPolicy in the key namespaces), or the compiler's default.
func (c *Compiler) trustedRoot(ref *v1alpha1.TrustedRootRef, namespace string, path *field.Path) (*verify.TrustedRoot, field.ErrorList) {
	switch {
	case ref == nil:
		return c.verification.TrustedRoot, nil
	case (ref.JSON == "") == (ref.ConfigMapRef == nil):
		return nil, field.ErrorList{field.Invalid(path, "", "set exactly one of json or configMapRef")}
	case ref.JSON != "":
		tr, err := verify.NewTrustedRoot([]byte(ref.JSON))
		if err != nil {
			return nil, field.ErrorList{field.Invalid(path.Child("json"), "(TrustedRoot)", err.Error())}
		}
		return tr, nil
	}
	p := path.Child("configMapRef")
	cm := ref.ConfigMapRef
	reader, online := c.verification.Secrets.(ConfigMapReader)
	if !online && !c.checkOnly {
		if c.verification.TrustedRoot != nil {
			return c.verification.TrustedRoot, nil // offline: --trusted-root stands in
		}
		return nil, field.ErrorList{field.Invalid(p, cm.Name, "trusted roots in ConfigMaps are read in the cluster; offline, pass --trusted-root")}
	}
	ns, errs := c.readableNamespace(cm.Namespace, namespace, p, "trusted roots only from ConfigMaps")
	if len(errs) > 0 || c.checkOnly {
		return nil, errs
	}
	key := cm.Key
	if key == "" {
		key = "trusted_root.json"
	}
	doc, err := reader.ConfigMapKey(context.Background(), ns, cm.Name, key)
	if err != nil {
		// One phrase whatever went wrong: the status must not tell what another namespace holds.
		return nil, field.ErrorList{field.Invalid(p, ns+"/"+cm.Name, fmt.Sprintf("key %q: no such ConfigMap or key", key))}
	}
	tr, err := verify.NewTrustedRoot([]byte(doc))
	if err != nil {
		return nil, field.ErrorList{field.Invalid(p, ns+"/"+cm.Name, fmt.Sprintf("key %q: %v", key, err))}
	}
	return tr, nil
}

// The variables attestation conditions see.
const (
	varPredicate = "predicate"
	varStatement = "statement"
)

// attestationEnv is the CEL environment of attestation conditions: the rules' base environment
// (libraries, cost limits) with predicate and statement only (a verdict is cached per image,
// so a condition cannot read the object); built once, on first use.
type attestationEnv struct {
	once sync.Once
	env  *cel.Env
	err  error
}

var attEnv attestationEnv

func (c *Compiler) attestationEnv() (*cel.Env, error) {
	attEnv.once.Do(func() {
		attEnv.env, attEnv.err = newBaseEnvWith([]cel.EnvOption{cel.Variable(varPredicate, cel.DynType), cel.Variable(varStatement, cel.DynType)})
	})
	return attEnv.env, attEnv.err
}

// compileAttestations compiles the attestation checks and their CEL conditions.
func (c *Compiler) compileAttestations(checks []v1alpha1.AttestationCheck, path *field.Path) ([]verify.Attestation, field.ErrorList) {
	if len(checks) == 0 {
		return nil, nil
	}
	env, err := c.attestationEnv()
	if err != nil {
		return nil, field.ErrorList{field.InternalError(path, err)}
	}
	var errs field.ErrorList
	out := make([]verify.Attestation, 0, len(checks))
	var total uint64
	for i, a := range checks {
		p := path.Index(i)
		if strings.TrimSpace(a.PredicateType) == "" {
			errs = append(errs, field.Required(p.Child("predicateType"), "e.g. https://slsa.dev/provenance/v1"))
		}
		att := verify.Attestation{PredicateType: a.PredicateType}
		for j, cond := range a.Conditions {
			cp := p.Child("conditions").Index(j)
			if strings.Contains(cond.Message, "\n") {
				errs = append(errs, field.Invalid(cp.Child("message"), cond.Message, "must be one line"))
			}
			prog, _, cost, _, err := compileTyped(env, cond.Expression, cel.BoolType, nil)
			if err != nil {
				errs = append(errs, field.Invalid(cp.Child("expression"), cond.Expression, err.Error()))
				continue
			}
			total = addCost(total, cost)
			att.Conditions = append(att.Conditions, verify.Condition{Expression: cond.Expression, Message: cond.Message, Eval: conditionEval(prog)})
		}
		out = append(out, att)
	}
	if total > MaxPolicyCost {
		errs = append(errs, field.Invalid(path, FormatCost(total)+" (estimated cost)",
			fmt.Sprintf("the attestation conditions are estimated to cost %s together, past the limit of %s per policy", FormatCost(total), FormatCost(MaxPolicyCost))))
	}
	return out, errs
}

// conditionEval evaluates a compiled condition on a statement.
func conditionEval(prog cel.Program) func(context.Context, map[string]any) (bool, error) {
	return func(ctx context.Context, st map[string]any) (bool, error) {
		out, _, err := prog.ContextEval(ctx, map[string]any{varPredicate: st["predicate"], varStatement: st})
		if err != nil {
			return false, err
		}
		b, ok := out.(types.Bool)
		if !ok {
			return false, fmt.Errorf("returned %s, not bool", out.Type())
		}
		return bool(b), nil
	}
}
