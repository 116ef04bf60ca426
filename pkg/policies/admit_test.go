package policies

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

// Admit judges the object the mutating rules leave: a probe the mutation adds satisfies a
// validating rule that requires it, as in the cluster, where validating webhooks run after the
// mutating ones.
func TestAdmitValidatesTheMutatedObject(t *testing.T) {
	e := mustEngineWith(t, testCompiler, time.Now(),
		clusterPolicy("probes", "enforcement: Deny\nrules:\n- name: add\n  defaultProbes: {}\n"),
		clusterPolicy("ready", "enforcement: Deny\nrules:\n- name: probed\n  cel: {expression: \"podSpec.containers.all(c, has(c.readinessProbe))\"}\n"))
	doc := "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {containers: [{name: web, image: 'x:1', ports: [{containerPort: 8080}]}]}\n"
	res := mustResource(t, doc)
	adm, err := e.Admit(t.Context(), &Request{Operation: v1alpha1.Create, Object: res}, mustJSON(t, doc), NewDecoder(true))
	if err != nil {
		t.Fatal(err)
	}
	if !adm.Mutated || !strings.Contains(string(adm.JSON), "readinessProbe") || adm.Object.Meta.GetNamespace() != "shop" {
		t.Fatalf("mutated %t, namespace %q, document %s", adm.Mutated, adm.Object.Meta.GetNamespace(), adm.JSON)
	}
	if len(adm.Results) != 2 || adm.Results[0].Policy != "probes" || len(adm.Results[0].Changes) == 0 {
		t.Fatalf("results %+v: want the mutation's, with its changes, then the validation's", adm.Results)
	}
	if r := adm.Results[1]; r.Policy != "ready" || r.Result != Pass {
		t.Errorf("the validating rule judged the object before its mutation: %+v", r)
	}
	if d := Decide(adm.Results); d.Verdict != Mutated || len(d.Denials) != 0 {
		t.Errorf("decision %+v, want mutated", d)
	}
}
