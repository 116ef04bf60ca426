package policies

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
)

func TestCELRule(t *testing.T) {
	pod := mustResource(t, testPod)
	deploy := mustResource(t, testDeployment)
	oldDeploy := mustResource(t, strings.Replace(testDeployment, "name: web\n  namespace", "name: web\n  annotations: {rev: '1'}\n  namespace", 1))
	configMap := mustResource(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {size: 10Gi}\n")
	widget := mustResource(t, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: shop}\nspec: {url: 'https://example.com/x'}\n")
	bigList := mustResource(t, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: shop}\nspec: {items: ["+strings.Repeat("1,", 1999)+"1]}\n")
	shop := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"env": "prod"}}}
	alice := authenticationv1.UserInfo{Username: "alice", Groups: []string{"devs"}}

	tests := []struct {
		name    string
		rule    v1alpha1.CELRule
		req     Request
		want    Outcome
		message string
	}{
		{name: "object", rule: v1alpha1.CELRule{Expression: "object.metadata.name == 'web'"}, req: Request{Object: pod}, want: Pass},
		{name: "defaulting visible to CEL", rule: v1alpha1.CELRule{Expression: "object.spec.replicas == 1 && object.spec.template.spec.containers[0].imagePullPolicy == 'IfNotPresent'"}, req: Request{Object: deploy}, want: Pass},
		{name: "podSpec on a Pod", rule: v1alpha1.CELRule{Expression: "podSpec.containers.all(c, c.image.startsWith('ghcr.io/'))"}, req: Request{Object: pod}, want: Pass},
		{name: "podSpec and podMeta on a Deployment", rule: v1alpha1.CELRule{Expression: "podSpec.containers.size() == 1 && podMeta.labels['app'] == 'web'"}, req: Request{Object: deploy}, want: Pass},
		{name: "podSpec is null for other kinds", rule: v1alpha1.CELRule{Expression: "podSpec == null && podMeta == null"}, req: Request{Object: configMap}, want: Pass},
		{name: "oldObject on UPDATE", rule: v1alpha1.CELRule{Expression: "oldObject.metadata.annotations['rev'] == '1' && !has(object.metadata.annotations)"}, req: Request{Operation: v1alpha1.Update, Object: deploy, OldObject: oldDeploy}, want: Pass},
		{name: "oldObject is null on CREATE", rule: v1alpha1.CELRule{Expression: "oldObject == null"}, req: Request{Object: pod}, want: Pass},
		{name: "request", rule: v1alpha1.CELRule{Expression: "request.operation == 'CREATE' && request.userInfo.username == 'alice' && request.kind.kind == 'Deployment' && request.resource.resource == 'deployments' && request.namespace == 'shop'"},
			req: Request{Object: deploy, UserInfo: alice}, want: Pass},
		{name: "namespaceObject", rule: v1alpha1.CELRule{Expression: "namespaceObject.metadata.labels['env'] == 'prod'"}, req: Request{Object: pod, Namespace: shop}, want: Pass},
		{name: "namespaceObject offline has the name label", rule: v1alpha1.CELRule{Expression: "namespaceObject.metadata.labels['kubernetes.io/metadata.name'] == 'shop'"}, req: Request{Object: pod}, want: Pass},
		{name: "unknown kinds are unstructured", rule: v1alpha1.CELRule{Expression: "url(object.spec.url).getHost() == 'example.com'"}, req: Request{Object: widget}, want: Pass},
		{name: "kubernetes quantity library", rule: v1alpha1.CELRule{Expression: "quantity(object.data.size).isGreaterThan(quantity('1Gi'))"}, req: Request{Object: configMap}, want: Pass},
		{name: "message", rule: v1alpha1.CELRule{Expression: "false", Message: "static message"}, req: Request{Object: pod}, want: Fail, message: "static message"},
		{name: "messageExpression wins", rule: v1alpha1.CELRule{Expression: "false", Message: "static", MessageExpression: "'pod ' + object.metadata.name + ' is not allowed'"}, req: Request{Object: pod}, want: Fail, message: "pod web is not allowed"},
		{name: "failing messageExpression falls back to message", rule: v1alpha1.CELRule{Expression: "false", Message: "static", MessageExpression: "string(object.nope)"}, req: Request{Object: pod}, want: Fail, message: "static"},
		{name: "no message names the expression", rule: v1alpha1.CELRule{Expression: "1 > 2"}, req: Request{Object: pod}, want: Fail, message: "failed expression: 1 > 2"},
		{name: "runtime error", rule: v1alpha1.CELRule{Expression: "object.spec.nope == 1"}, req: Request{Object: pod}, want: Error, message: "no such key: nope"},
		// Estimated on lists of 100 items (150,502), but these hold 2,000: the per-call limit stops it.
		{name: "runtime cost limit", rule: v1alpha1.CELRule{Expression: "object.spec.items.all(a, object.spec.items.all(b, a != b || true))"},
			req: Request{Object: bigList}, want: Error, message: "cost limit exceeded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rule, errs := compileCEL(&tt.rule, testCompiler.env, nil, true, field.NewPath("r"))
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			req := tt.req
			if req.Operation == "" {
				req.Operation = v1alpha1.Create
			}
			got := rule.evaluate(&input{ctx: t.Context(), req: &req, res: req.subject(), nsLabels: namespaceLabels(req.Namespace, req.subject().Meta.GetNamespace())})
			if got.outcome != tt.want || (tt.message != "" && !strings.Contains(got.message, tt.message)) {
				t.Errorf("got %s %q, want %s %q", got.outcome, got.message, tt.want, tt.message)
			}
		})
	}
}

func TestCELCompileErrors(t *testing.T) {
	tests := []struct {
		rule v1alpha1.CELRule
		want string
	}{
		{v1alpha1.CELRule{Expression: "object.metadata.name"}, "r.expression: Invalid value: \"object.metadata.name\": must evaluate to bool but got dyn"},
		{v1alpha1.CELRule{Expression: "object.x == "}, "r.expression: Invalid value: \"object.x == \": compilation failed"},
		{v1alpha1.CELRule{Expression: "params.x == 1"}, "undeclared reference to 'params'"},
		{v1alpha1.CELRule{Expression: ""}, "r.expression: Required value"},
		{v1alpha1.CELRule{Expression: "true", MessageExpression: "1"}, "r.messageExpression: Invalid value: \"1\": must evaluate to string but got int"},
		{v1alpha1.CELRule{Expression: "true", Message: "two\nlines"}, "r.message: Invalid value"},
		{v1alpha1.CELRule{Expression: "[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, [1,2,3,4,5,6,7,8,9,10].all(f, a+b+c+d+e+f > 0))))))"},
			"estimated cost 16,555,551 exceeds the limit of 1,000,000 per expression"},
		{v1alpha1.CELRule{Expression: "object.spec.items.all(a, object.spec.items.all(b, object.spec.items.all(c, true)))"},
			"estimated cost 3,050,502 exceeds the limit of 1,000,000 per expression (on an object whose lists hold 100 items"},
		{v1alpha1.CELRule{Expression: "true", MessageExpression: "object.spec.items.map(a, object.spec.items.map(b, object.spec.items.map(c, 'x'))).size() > 0 ? 'a' : 'b'"},
			"r.messageExpression: Invalid value"},
	}
	for _, tt := range tests {
		_, errs := compileCEL(&tt.rule, testCompiler.env, nil, true, field.NewPath("r"))
		if !strings.Contains(errs.ToAggregate().Error(), tt.want) {
			t.Errorf("%+v: got %v, want it to contain %q", tt.rule, errs, tt.want)
		}
	}
}

// TestCELCostEstimates pins the cost model on common shapes, and the policy-wide limit.
func TestCELCostEstimates(t *testing.T) {
	for expr, want := range map[string]uint64{
		"podSpec.containers.all(c, c.image.startsWith('ghcr.io/'))":       502,
		"podSpec.containers.all(c, c.env.all(e, e.name.startsWith('X')))": 50502,
		"object.metadata.name.matches('^[a-z]+$')":                        23,
	} {
		rule, errs := compileCEL(&v1alpha1.CELRule{Expression: expr}, testCompiler.env, nil, true, field.NewPath("r"))
		if len(errs) > 0 || rule.cost != want {
			t.Errorf("%s: cost %d (%v), want %d", expr, rule.cost, errs, want)
		}
	}
	// 70 rules of 150,502 each: every one is within the per-expression limit, together they pass
	// the per-policy one.
	p := &v1alpha1.ClusterPolicy{ObjectMeta: metav1.ObjectMeta{Name: "costly"}}
	for i := range 70 {
		p.Spec.Rules = append(p.Spec.Rules, v1alpha1.Rule{Name: fmt.Sprintf("r%d", i),
			CEL: &v1alpha1.CELRule{Expression: "object.spec.items.all(a, object.spec.items.all(b, a != b || true))"}})
	}
	_, err := testCompiler.CompileClusterPolicy(p)
	if err == nil || !strings.Contains(err.Error(), "spec.rules: Invalid value: \"10,535,140 (estimated cost)\": the policy's CEL expressions are estimated to cost 10,535,140 together, past the limit of 10,000,000 per policy") {
		t.Errorf("got %v", err)
	}
	p.Spec.Rules = p.Spec.Rules[:66]
	cp, err := testCompiler.CompileClusterPolicy(p)
	if err != nil || cp.Cost() != 66*150502 || cp.RuleCount() != 66 {
		t.Errorf("66 rules: %v, cost %d", err, cp.Cost())
	}
}

// TestRequestTimeNeeds: what an expression reads that only an admission request has is found
// by what the checker resolved, not by the spelling.
func TestRequestTimeNeeds(t *testing.T) {
	for expr, want := range map[string]string{
		"object.metadata.name != ''":                                     "",
		"oldObject == null || object.spec == oldObject.spec":             "oldObject",
		"request.userInfo.username.startsWith('system:')":                "request.userInfo",
		"has(request.userInfo.groups) && oldObject != null":              "oldObject,request.userInfo",
		"request.operation == 'CREATE'":                                  "",
		"[1, 2].all(oldObject, oldObject > 0)":                           "",
		"object.metadata.?labels.orValue({}).all(k, k != 'userInfo')":    "",
		"podSpec.containers.all(c, c.name != request.userInfo.username)": "request.userInfo",
	} {
		rule := mustCompileCEL(t, expr)
		if got := strings.Join(rule.needs, ","); got != want {
			t.Errorf("%s: needs %q, want %q", expr, got, want)
		}
	}
}

// TestBackgroundSkipsRequestTimeRules: a background request (the audit) skips the rules that read
// what it does not have, saying what, and judges the others.
func TestBackgroundSkipsRequestTimeRules(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("p", `enforcement: Deny
rules:
- name: who
  cel: {expression: "request.userInfo.username != 'mallory'"}
- name: named
  cel: {expression: "object.metadata.name == 'other'"}
`))
	res := mustResource(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n")
	got := e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: res, Background: true})
	if s := summarize(got); strings.Join(s, " ") != "p/who=skip:Deny p/named=fail:Deny" {
		t.Fatalf("background: %v", s)
	}
	if !strings.Contains(got[0].Message, "reads request.userInfo, which only an admission request has") {
		t.Errorf("skip message %q", got[0].Message)
	}
	got = e.Evaluate(t.Context(), &Request{Operation: v1alpha1.Create, Object: res, UserInfo: authenticationv1.UserInfo{Username: "alice"}})
	if s := summarize(got); strings.Join(s, " ") != "p/who=pass:Deny p/named=fail:Deny" {
		t.Errorf("admission: %v", s)
	}
}

// TestReleasedResourcesJudgeAlike: the views of a released Resource are reused for other
// Resources, by goroutines at once, and each is judged as if it had views of its own; a
// Resource judged again after its release is judged the same.
func TestReleasedResourcesJudgeAlike(t *testing.T) {
	e := mustEngine(t, time.Now(), clusterPolicy("p", `enforcement: Deny
rules:
- name: prefixed
  cel:
    expression: "object.spec.containers.all(c, c.name.startsWith(object.metadata.name + '-'))"
    messageExpression: "'unprefixed: ' + object.spec.containers.filter(c, !c.name.startsWith(object.metadata.name + '-')).map(c, c.name).join(',') + ' in ' + request.namespace"
`))
	d := NewDecoder(false).SharingInput()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 100 {
				name := fmt.Sprintf("g%d-p%d", g, i)
				containers := fmt.Sprintf(`{"name":%q},{"name":%q}`, name+"-a", name+"-b")
				want := "pass:"
				if i%3 == 0 {
					containers += fmt.Sprintf(`,{"name":"x%d"}`, i)
					want = fmt.Sprintf("fail:unprefixed: x%d in ns%d", i, g)
				}
				js := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"namespace":"ns%d"},"spec":{"containers":[%s]}}`, name, g, containers)
				res, err := d.Decode([]byte(js), nil)
				if err != nil {
					t.Error(err)
					return
				}
				req := &Request{Operation: v1alpha1.Create, Object: res}
				for pass := range 2 { // the second time after its release
					got := e.Evaluate(t.Context(), req)
					req.Release()
					if len(got) != 1 || string(got[0].Result)+":"+got[0].Message != want {
						t.Errorf("%s, judged %s time: %+v, want %s", name, []string{"a first", "a second"}[pass], got, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
