package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/portcullis-dev/portcullis/test/cluster"
)

// The noisy tenant's Policies fill its namespace's default budget: 62 CEL rules estimated at
// 160,502 each (9,951,124 of the 10,000,000 of --namespace-max-cost) and 38 label rules (100 of
// --namespace-max-rules). Its Pods have 100 containers, the size the estimate assumes.
const (
	noisyNamespace  = "noisy"
	noisyCELRules   = 62
	noisyLabelRules = 38
	noisyContainers = 100
)

func noisyPolicies() string {
	var b strings.Builder
	b.WriteString("apiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: costly, namespace: noisy}\nspec:\n  enforcement: Deny\n  rules:\n")
	for i := range noisyCELRules {
		fmt.Fprintf(&b, "    - {name: c%d, cel: {expression: \"podSpec.containers.all(a, podSpec.containers.all(b, a != b || %d >= 0))\"}}\n", i, i)
	}
	b.WriteString("---\napiVersion: portcullis.dev/v1alpha1\nkind: Policy\nmetadata: {name: labels, namespace: noisy}\nspec:\n  enforcement: Deny\n  rules:\n")
	for i := range noisyLabelRules {
		fmt.Fprintf(&b, "    - {name: l%d, labels: {required: [team]}}\n", i)
	}
	return b.String()
}

// noisyReview is the benchmark Pod in the noisy namespace, its containers repeated to 100.
func noisyReview(quiet []byte) ([]byte, error) {
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(quiet, &rv); err != nil {
		return nil, err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(rv.Request.Object.Raw, &pod); err != nil {
		return nil, err
	}
	base := pod.Spec.Containers
	pod.Spec.Containers = nil
	for i := range noisyContainers {
		c := *base[i%len(base)].DeepCopy()
		c.Name = fmt.Sprintf("%s-%d", c.Name, i)
		for j := range c.Ports {
			c.Ports[j].Name, c.Ports[j].ContainerPort = "", int32(10000+i*10+j)
		}
		pod.Spec.Containers = append(pod.Spec.Containers, c)
	}
	pod.Namespace, rv.Request.Namespace = noisyNamespace, noisyNamespace
	raw, err := json.Marshal(&pod)
	if err != nil {
		return nil, err
	}
	rv.Request.Object = runtimeRaw(raw)
	return json.Marshal(&rv)
}

// noisyTenant measures the quiet namespace at rate alone and beside a tenant at its maximum
// budget sending tenantRate reviews per second.
func noisyTenant(ctx context.Context, c *cluster.Cluster, h *harness, quiet []byte, rate int, d time.Duration) ([]result, error) {
	fmt.Printf("==> a noisy tenant at its namespace's maximum budget (%d CEL rules estimated at 9,951,124, %d label rules), %d-container Pods at %d/s\n",
		noisyCELRules, noisyLabelRules, noisyContainers, tenantRate)
	if _, stderr, err := c.Kubectl(ctx, "", "create", "namespace", noisyNamespace); err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr)
	}
	if _, stderr, err := c.Kubectl(ctx, noisyPolicies(), "apply", "-f", "-"); err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr)
	}
	if _, stderr, err := c.Kubectl(ctx, "", "wait", "-n", noisyNamespace, "--for=condition=Ready", "policy", "--all", "--timeout=60s"); err != nil {
		return nil, fmt.Errorf("the noisy tenant's policies are not ready: %w: %s", err, stderr)
	}
	noisy, err := noisyReview(quiet)
	if err != nil {
		return nil, err
	}
	alone, err := attack(h.target("quiet alone"), quiet, rate, d)
	if err != nil {
		return nil, err
	}
	var tenant vegeta.Metrics
	beside, err := attackWith(h.target("quiet+noisy"), quiet, rate, d, func(d time.Duration) {
		for res := range attacker().Attack(vegeta.NewStaticTargeter(reviewTarget(h.port, noisy)), vegeta.ConstantPacer{Freq: tenantRate, Per: time.Second}, d, "noisy") {
			tenant.Add(res)
		}
		tenant.Close()
	})
	if err != nil {
		return nil, err
	}
	for _, r := range []result{alone, beside} {
		fmt.Printf("%-11s %5d/s  %6d reviews  %6.2f%% ok  p50 %6.3f ms  p99 %6.3f ms  RSS %5.1f MiB\n", r.Server, r.Rate, r.Requests, r.Success*100, r.P50Ms, r.P99Ms, r.RSSMiB)
	}
	fmt.Printf("noisy tenant %4d/s  %6d reviews  %6.2f%% ok  p50 %6.3f ms  p99 %6.3f ms\n", tenantRate, tenant.Requests, tenant.Success*100, ms(tenant.Latencies.P50), ms(tenant.Latencies.P99))
	fmt.Printf("            the quiet namespace's p99 beside the noisy tenant: %.2fx alone (p50 %.2fx)\n", beside.P99Ms/alone.P99Ms, beside.P50Ms/alone.P50Ms)
	noisyResult := result{Server: "noisy tenant", Rate: tenantRate, Requests: tenant.Requests, Success: tenant.Success, P50Ms: ms(tenant.Latencies.P50), P99Ms: ms(tenant.Latencies.P99)}
	return []result{alone, beside, noisyResult}, nil
}
