package main

import (
	"encoding/json"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestBenchSoakRuns runs make bench-soak once, short: 100 policies, 20 s, RSS every 5 s.
func TestBenchSoakRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	if err := runSoak("../..", 200, 20*time.Second, 5*time.Second, true); err != nil {
		t.Fatal(err)
	}
}

// TestSoakPolicySetDistinct: with distinct, no two policies of the soak have a CEL rule of the
// same expression, nor the same params; without it, they are copies.
func TestSoakPolicySetDistinct(t *testing.T) {
	for _, distinct := range []bool{false, true} {
		docs, err := soakPolicySet("../..", soakPolicies, distinct)
		if err != nil {
			t.Fatal(err)
		}
		expressions, params := map[string]int{}, map[string]int{}
		for _, doc := range docs {
			var p struct {
				Spec struct {
					Params map[string]any `json:"params"`
					Rules  []struct {
						CEL *struct{ Expression string } `json:"cel"`
					} `json:"rules"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &p); err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Spec.Rules {
				if r.CEL != nil {
					expressions[r.CEL.Expression]++
				}
			}
			if p.Spec.Params != nil {
				raw, _ := json.Marshal(p.Spec.Params)
				params[string(raw)]++
			}
		}
		repeated := 0
		for _, n := range expressions {
			repeated += n - 1
		}
		for _, n := range params {
			repeated += n - 1
		}
		if distinct && repeated > 0 || !distinct && repeated == 0 || len(expressions) == 0 || len(params) == 0 {
			t.Errorf("distinct %v: %d expressions, %d params, %d repeated", distinct, len(expressions), len(params), repeated)
		}
	}
}
