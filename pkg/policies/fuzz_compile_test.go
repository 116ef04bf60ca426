package policies_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// FuzzCompile compiles arbitrary objects as a ClusterPolicy, a Policy and a PolicyException, as
// the policy webhook and the controller do with what a tenant writes: nothing may panic, every
// failure is a CompileError naming fields, and a policy that compiles is within the bounds and
// cost limits.
func FuzzCompile(f *testing.F) {
	files, err := filepath.Glob("../../manifests/library/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "../../examples/policies/platform.yaml", "../../test/load/policies/cel.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if js, err := yaml.YAMLToJSON(data); err == nil {
			f.Add(js)
		}
	}
	f.Add([]byte(`{"metadata":{"name":"x","namespace":"n"},"spec":{"rules":[{"name":"a","cel":{"expression":"[1,2].all(x, [1,2].all(y, x < y))","messageExpression":"'m'"}}],"match":{"namespaces":["a*?"],"namespaceSelector":{"matchExpressions":[{"key":"k","operator":"In","values":["v"]}]}}}}`))
	f.Add([]byte(`{"metadata":{"name":"x","namespace":"n","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"exceptions":[{"policyName":"p","ruleNames":["r"]}],"owner":"o","reason":"r","expires":"2099-01-01T00:00:00Z","match":{"kinds":["apps/Deployment"]}}}`))
	c, err := policies.NewCompiler(policies.WithExceptions(policies.ExceptionOptions{MaxLifetime: 90 * 24 * time.Hour, ClusterPolicyNamespaces: []string{"portcullis-system"}}))
	if err != nil {
		f.Fatal(err)
	}
	checker := c.Checker()
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(cp *policies.CompiledPolicy, err error) {
			var ce *policies.CompileError
			switch {
			case err == nil:
				if cp.RuleCount() > policies.MaxRules || cp.Cost() > policies.MaxPolicyCost {
					t.Fatalf("compiled past the bounds: %d rules, cost %d", cp.RuleCount(), cp.Cost())
				}
			case !errors.As(err, &ce) || len(ce.Errs) == 0:
				t.Fatalf("not a CompileError with field errors: %v", err)
			}
		}
		var cp v1alpha1.ClusterPolicy
		if json.Unmarshal(data, &cp) == nil {
			check(checker.CompileClusterPolicy(&cp))
		}
		var p v1alpha1.Policy
		if json.Unmarshal(data, &p) == nil {
			check(checker.CompilePolicy(&p))
		}
		var x v1alpha1.PolicyException
		if json.Unmarshal(data, &x) == nil {
			if _, err := c.CompileException(&x); err != nil {
				var ce *policies.CompileError
				if !errors.As(err, &ce) || len(ce.Errs) == 0 {
					t.Fatalf("not a CompileError with field errors: %v", err)
				}
			}
			_ = c.ExceptionLifetime(&x, time.Now())
		}
	})
}
