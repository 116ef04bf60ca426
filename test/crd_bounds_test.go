package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// TestCRDsBoundEveryField walks the shipped CRD schemas: every list, string and map a tenant
// writes in spec has a bound, so the API server refuses an oversized policy before Portcullis
// reads it. Label selectors (metav1.LabelSelector, whose schema is generated upstream) are
// bounded by the compiler instead (policies.MaxSelectorTerms). A few bounds are checked against
// the compiler's constants, so the two cannot drift apart.
func TestCRDsBoundEveryField(t *testing.T) {
	files, err := filepath.Glob("../manifests/crds/portcullis.dev_*.yaml")
	if err != nil || len(files) != 3 {
		t.Fatalf("want 3 CRDs, got %v (%v)", files, err)
	}
	want := map[string]int64{
		"spec.rules.maxItems":                                                        policies.MaxRules,
		"spec.rules[].cel.expression.maxLength":                                      policies.MaxExpressionLength,
		"spec.rules[].cel.messageExpression.maxLength":                               policies.MaxExpressionLength,
		"spec.rules[].cel.message.maxLength":                                         policies.MaxTextLength,
		"spec.match.namespaces.maxItems":                                             policies.MaxListItems,
		"spec.match.namespaces[].maxLength":                                          policies.MaxGlobLength,
		"spec.rules[].verifyImages.images[].maxLength":                               policies.MaxGlobLength,
		"spec.rules[].verifyImages.keys[].publicKey.maxLength":                       policies.MaxKeyLength,
		"spec.enforcementOverrides.maxItems":                                         policies.MaxOverrides,
		"spec.exceptions.maxItems":                                                   policies.MaxListItems,
		"spec.reason.maxLength":                                                      policies.MaxTextLength,
		"spec.variables.maxItems":                                                    policies.MaxListItems,
		"spec.variables[].expression.maxLength":                                      policies.MaxExpressionLength,
		"spec.params.maxProperties":                                                  policies.MaxListItems,
		"spec.rules[].verifyImages.keyless.maxItems":                                 policies.MaxIdentities,
		"spec.rules[].verifyImages.keyless[].subjectRegExp.maxLength":                policies.MaxTextLength,
		"spec.rules[].verifyImages.keyless[].extensions.maxProperties":               policies.MaxExtensions,
		"spec.rules[].verifyImages.certificateChain.maxLength":                       policies.MaxChainLength,
		"spec.rules[].verifyImages.trustedRoot.json.maxLength":                       policies.MaxTrustedRootLength,
		"spec.rules[].verifyImages.attestations.maxItems":                            policies.MaxAttestations,
		"spec.rules[].verifyImages.attestations[].conditions.maxItems":               policies.MaxConditions,
		"spec.rules[].verifyImages.attestations[].conditions[].expression.maxLength": policies.MaxExpressionLength,
	}
	found := map[string]int64{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			spec := v.Schema.OpenAPIV3Schema.Properties["spec"]
			walkBounds(t, filepath.Base(f), "spec", &spec, found)
		}
	}
	for path, n := range want {
		if found[path] != n {
			t.Errorf("%s is %d in the CRDs, want %d (the compiler's bound)", path, found[path], n)
		}
	}
}

func walkBounds(t *testing.T, file, path string, s *apiextensionsv1.JSONSchemaProps, found map[string]int64) {
	t.Helper()
	if strings.HasSuffix(path, "Selector") {
		return // upstream LabelSelector: bounded by the compiler
	}
	switch s.Type {
	case "array":
		if s.MaxItems == nil {
			t.Errorf("%s: %s is a list without maxItems", file, path)
		} else {
			found[path+".maxItems"] = *s.MaxItems
		}
		if s.Items != nil && s.Items.Schema != nil {
			walkBounds(t, file, path+"[]", s.Items.Schema, found)
		}
	case "string":
		switch {
		case len(s.Enum) > 0, s.Format == "date-time":
		case s.MaxLength == nil:
			t.Errorf("%s: %s is a string without maxLength", file, path)
		default:
			found[path+".maxLength"] = *s.MaxLength
		}
	case "object":
		if s.AdditionalProperties != nil && s.MaxProperties == nil {
			t.Errorf("%s: %s is a map without maxProperties", file, path)
		}
		if s.MaxProperties != nil {
			found[path+".maxProperties"] = *s.MaxProperties
		}
		for name, p := range s.Properties {
			walkBounds(t, file, path+"."+name, &p, found)
		}
	}
}
