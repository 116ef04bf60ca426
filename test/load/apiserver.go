package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/portcullis-dev/portcullis/test/cluster"
)

// benchConfig is the name of the webhook configuration the API server bench installs.
const benchConfig = "portcullis-bench"

// runAPIServer is make bench-apiserver: the benchmark Pod created n times (dry run, as
// `kubectl create --dry-run=server` does) through a real API server, one at a time, in rounds
// of three phases: no webhook configuration, one calling the no-op floor (what any webhook
// costs), one calling Portcullis with the load policies. It reports p50 and p99 of each and
// what the webhooks add (medians over the rounds).
func runAPIServer(root string, n, rounds int) error {
	return withHarness(root, func(ctx context.Context, root string, h *harness) error {
		return apiServerBench(ctx, root, h, n, rounds)
	})
}

func apiServerBench(ctx context.Context, root string, h *harness, n, rounds int) error {
	raw, err := os.ReadFile(filepath.Join(root, "pkg", "policies", "testdata", "bench", "pod.json"))
	if err != nil {
		return err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		return err
	}
	cfg := rest.CopyConfig(h.c.Config)
	cfg.QPS, cfg.Burst = 5000, 5000
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if sa := pod.Spec.ServiceAccountName; sa != "" {
		if _, err := cs.CoreV1().ServiceAccounts(pod.Namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	portcullis, err := benchWebhook(ctx, root, h, h.port)
	if err != nil {
		return err
	}
	floor, err := benchWebhook(ctx, root, h, h.noopPort)
	if err != nil {
		return err
	}
	create := func(p *corev1.Pod) error {
		_, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	// A probe both webhooks deny (Portcullis's policies, the floor by its name) tells whether
	// the API server calls a webhook.
	probe := pod.DeepCopy()
	probe.Name = "portcullis-bench-probe"
	probe.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
	webhooks := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	install := func(cfg *admissionregistrationv1.ValidatingWebhookConfiguration) error {
		if err := webhooks.Delete(ctx, benchConfig, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if cfg != nil {
			if _, err := webhooks.Create(ctx, cfg.DeepCopy(), metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := create(probe)
			switch {
			case cfg == nil && err == nil, cfg != nil && apierrors.IsForbidden(err) && denierIs(err, cfg == floor):
				return nil
			case err != nil && !apierrors.IsForbidden(err):
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the API server did not pick up the webhook configuration change (the probe's last answer: %v)", errors.Join(err)) //nolint:errorlint // an answer, nil when admitted
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	phases := []struct {
		name string
		cfg  *admissionregistrationv1.ValidatingWebhookConfiguration
	}{{"without webhook", nil}, {"no-op webhook", floor}, {"Portcullis", portcullis}}
	fmt.Printf("==> %d dry-run creations of the benchmark Pod per phase, one at a time, %d rounds of: no webhook, the no-op floor, Portcullis\n", n, rounds)
	results := make([][]latencies, len(phases))
	machine0, err := machineTicks()
	if err != nil {
		return err
	}
	var handled histogram // Portcullis's own review durations, in its phases
	for round := range rounds {
		for i, ph := range phases {
			if err := install(ph.cfg); err != nil {
				return err
			}
			before, err := readMetrics(h.metrics)
			if err != nil {
				return err
			}
			l, err := timeCreates(n, func() error { return create(&pod) })
			if err != nil {
				return fmt.Errorf("round %d (%s): %w", round+1, ph.name, err)
			}
			if ph.cfg == portcullis {
				after, err := readMetrics(h.metrics)
				if err != nil {
					return err
				}
				if handled, err = handled.add(after, before, reviewDuration); err != nil {
					return err
				}
			}
			fmt.Printf("    round %d, %-15s p50 %6.3f ms  p99 %6.3f ms\n", round+1, ph.name, l.p50, l.p99)
			results[i] = append(results[i], l)
		}
	}
	machine1, err := machineTicks()
	if err != nil {
		return err
	}
	if err := install(nil); err != nil {
		return err
	}
	none, noop, ours := medianOf(results[0]), medianOf(results[1]), medianOf(results[2])
	fmt.Printf("\n| API server, dry-run Pod create (median of %d rounds × %d) | p50 | p99 |\n|---|---|---|\n", rounds, n)
	fmt.Printf("| without a webhook | %.3f ms | %.3f ms |\n", none.p50, none.p99)
	fmt.Printf("| with the no-op webhook (the floor) | %.3f ms | %.3f ms |\n", noop.p50, noop.p99)
	fmt.Printf("| with Portcullis | %.3f ms | %.3f ms |\n", ours.p50, ours.p99)
	fmt.Printf("| **added by Portcullis** | **%.3f ms** | **%.3f ms** |\n", ours.p50-none.p50, ours.p99-none.p99)
	fmt.Printf("| added by any webhook (the no-op's) | %.3f ms | %.3f ms |\n", noop.p50-none.p50, noop.p99-none.p99)
	p50, p99 := handled.quantileBound(0.5), handled.quantileBound(0.99)
	if p50 < 0 || p99 < 0 {
		return fmt.Errorf("the server's %s counted none of the Portcullis phases' %d reviews", reviewDuration, rounds*n)
	}
	fmt.Printf("| Portcullis's own handling of its phases' %.0f reviews, warm-ups included (its %s: at most the bucket's bound) | ≤ %g ms | ≤ %g ms |\n", handled.count(), reviewDuration, p50*1000, p99*1000)
	busy, steal := machine1.sharesSince(machine0)
	fmt.Printf("\nThe machine's CPUs during the rounds: %.0f%% busy (every process), %.0f%% stolen by the hypervisor.\n", busy*100, steal*100)
	return nil
}

// denierIs reports whether a denial came from the floor (floor) or from Portcullis.
func denierIs(err error, floor bool) bool {
	return strings.Contains(err.Error(), "the bench's probe") == floor
}

// benchWebhook is the shipped workload webhook, pointed at the harness's server with its CA,
// with static Pod rules (the server's own configuration follows the policies; this one no
// leader keeps).
func benchWebhook(ctx context.Context, root string, h *harness, port int) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	out, stderr, err := h.c.Kubectl(ctx, "", "get", "secret", "-n", "portcullis-system", "portcullis-webhook-tls", "-o", "jsonpath={.data.ca\\.crt}")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr)
	}
	ca, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil {
		return nil, fmt.Errorf("the server's CA (Secret portcullis-webhook-tls, ca.crt): %w", err)
	}
	if len(ca) == 0 {
		return nil, errors.New("the server's CA (Secret portcullis-webhook-tls, ca.crt) is empty")
	}
	cfg, err := cluster.WebhookConfig(filepath.Join(root, "manifests", "base", "webhook.yaml"), fmt.Sprintf("https://127.0.0.1:%d", port), ca)
	if err != nil {
		return nil, err
	}
	cfg.Name, cfg.Webhooks = benchConfig, cfg.Webhooks[:1]
	cfg.Webhooks[0].Rules = cluster.PodRules()
	return cfg, nil
}

// latencies are the p50 and p99 of one phase, in milliseconds.
type latencies struct{ p50, p99 float64 }

// timeCreates runs create n times, after a warm-up of n/10, and returns the percentiles.
func timeCreates(n int, create func() error) (latencies, error) {
	for range max(n/10, 10) {
		if err := create(); err != nil {
			return latencies{}, err
		}
	}
	d := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if err := create(); err != nil {
			return latencies{}, err
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	at := func(q float64) float64 { return ms(d[min(int(q*float64(n)), n-1)]) }
	return latencies{p50: at(0.50), p99: at(0.99)}, nil
}

// medianOf is the median of the rounds' p50s and of their p99s.
func medianOf(ls []latencies) latencies {
	if len(ls) == 0 {
		return latencies{}
	}
	med := func(get func(latencies) float64) float64 {
		v := make([]float64, len(ls))
		for i, l := range ls {
			v[i] = get(l)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return latencies{p50: med(func(l latencies) float64 { return l.p50 }), p99: med(func(l latencies) float64 { return l.p99 })}
}

// reviewDuration is the server's histogram of the time it takes to answer a review, from reading
// it to writing the answer; the validating webhook's series.
const reviewDuration = `portcullis_admission_review_duration_seconds`

// histogram is the counts of a histogram's buckets, by upper bound, ascending; cumulative, as
// Prometheus writes them.
type histogram []bucket

type bucket struct {
	key   string // the sample's name, with its labels
	le    float64
	count float64
}

// add is h plus what name's validate series rose by from before to after.
func (h histogram) add(after, before map[string]float64, name string) (histogram, error) {
	prefix := name + `_bucket{webhook="validate",le="`
	sum, err := buckets(after, prefix)
	if err != nil {
		return nil, err
	}
	if len(sum) == 0 {
		return nil, fmt.Errorf("the server's metrics have no %s", prefix)
	}
	if h != nil && len(h) != len(sum) {
		return nil, fmt.Errorf("the server's %s changed its buckets", name)
	}
	for i := range sum {
		sum[i].count -= before[sum[i].key]
		if h != nil {
			sum[i].count += h[i].count
		}
	}
	return sum, nil
}

// buckets are the buckets of samples whose names start with prefix (up to the bound), by bound.
func buckets(samples map[string]float64, prefix string) (histogram, error) {
	var h histogram
	for key, n := range samples {
		le, ok := strings.CutPrefix(key, prefix)
		if !ok {
			continue
		}
		upper, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
		if err != nil {
			return nil, fmt.Errorf("the server's metric %s: %w", key, err)
		}
		h = append(h, bucket{key: key, le: upper, count: n})
	}
	slices.SortFunc(h, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	return h, nil
}

// count is how many observations h holds.
func (h histogram) count() float64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].count
}

// quantileBound is the upper bound of the smallest bucket that holds the q-quantile of h's
// observations: the quantile is at most that; -1 when h holds none.
func (h histogram) quantileBound(q float64) float64 {
	if h.count() == 0 {
		return -1
	}
	for _, b := range h {
		if b.count >= q*h.count() {
			return b.le
		}
	}
	return h[len(h)-1].le
}
