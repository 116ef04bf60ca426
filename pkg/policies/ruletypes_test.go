package policies

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// The rule-type table is complete: every pointer field of v1alpha1.Rule is a rule type, and
// setting it is what the table's set reports.
func TestRuleTypesCoverTheAPI(t *testing.T) {
	rt := reflect.TypeFor[v1alpha1.Rule]()
	var fields []string
	for i := range rt.NumField() {
		f := rt.Field(i)
		if f.Type.Kind() != reflect.Pointer {
			continue
		}
		fields = append(fields, strings.Split(f.Tag.Get("json"), ",")[0])
		var r v1alpha1.Rule
		reflect.ValueOf(&r).Elem().Field(i).Set(reflect.New(f.Type.Elem()))
		n := 0
		for _, t := range ruleTypes {
			if t.set(&r) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("setting %s sets %d rule types, want 1", f.Name, n)
		}
	}
	var table []string
	for _, t := range ruleTypes {
		table = append(table, t.field)
	}
	if fmt.Sprint(fields) != fmt.Sprint(table) {
		t.Errorf("rule types %v, API fields %v", table, fields)
	}
}

// The CRDs say what the compiler says: their "exactly one" validation lists the table's types.
func TestCRDExactlyOneRuleType(t *testing.T) {
	for _, crd := range []string{"portcullis.dev_clusterpolicies.yaml", "portcullis.dev_policies.yaml"} {
		data, err := os.ReadFile("../../manifests/crds/" + crd)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		var found bool
		var walk func(any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if v["message"] == exactlyOneRuleType {
					found = true
					rule, _ := v["rule"].(string)
					for _, rt := range ruleTypes {
						if !strings.Contains(rule, "has(self."+rt.field+")") {
							t.Errorf("%s: the rule %q does not count %s", crd, rule, rt.field)
						}
					}
				}
				for _, x := range v {
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(doc)
		if !found {
			t.Errorf("%s: no validation with the message %q (the XValidation marker on v1alpha1.Rule)", crd, exactlyOneRuleType)
		}
	}
}
