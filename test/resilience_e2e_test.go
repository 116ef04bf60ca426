package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/test/cluster"
)

// fleet is a control plane of a test's own and n replicas of the real server binary, as
// shipped (leader election, self-managed certificates, default lame duck), behind a proxy that
// stands in for their Service: the webhook configurations point at the proxy.
type fleet struct {
	t       *testing.T
	c       *cluster.Cluster
	client  client.Client
	proxy   *cluster.Proxy
	webhook []int // each replica's webhook port
	probe   []int // each replica's probe port
	procs   []*cluster.Process
	logs    []*os.File
	extra   []string // more flags for every replica
}

func startFleet(t *testing.T, n int, extra ...string) *fleet {
	t.Helper()
	dir := t.TempDir()
	if keep := os.Getenv("E2E_LOG_DIR"); keep != "" { // the replicas' logs kept after the test
		dir = filepath.Join(keep, t.Name())
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	c, err := cluster.Start(e2e.assets, "../manifests/crds", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = 1000, 1000 // the load is the point
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	_ = openreports.Install(scheme)
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, c: c, client: cl, procs: make([]*cluster.Process, n), logs: make([]*os.File, n), extra: extra}
	if err := cl.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNamespace}}); err != nil {
		t.Fatal(err)
	}
	var backends []cluster.Backend
	for range n {
		w, err1 := cluster.FreePort()
		p, err2 := cluster.FreePort()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		f.webhook, f.probe = append(f.webhook, w), append(f.probe, p)
		backends = append(backends, cluster.Backend{Addr: fmt.Sprintf("127.0.0.1:%d", w), ReadyURL: fmt.Sprintf("http://127.0.0.1:%d/readyz", p)})
	}
	if f.proxy, err = cluster.StartProxy(backends); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.proxy.Close)
	for i := range n {
		if f.logs[i], err = os.Create(filepath.Join(dir, fmt.Sprintf("replica-%d.log", i))); err != nil {
			t.Fatal(err)
		}
		f.start(i)
	}
	t.Cleanup(func() {
		for _, p := range f.procs {
			if p != nil && !p.Exited() {
				p.Kill()
			}
		}
	})
	base := "https://" + f.proxy.Addr()
	validating, err := cluster.WebhookConfig("../manifests/base/webhook.yaml", base, nil)
	if err != nil {
		t.Fatal(err)
	}
	mutating, err := cluster.MutatingConfig("../manifests/base/mutating.yaml", base, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{validating, mutating} {
		if err := cl.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		f.waitReady(i)
	}
	return f
}

// start runs replica i, on its ports, as the shipped Deployment runs it.
func (f *fleet) start(i int) {
	f.t.Helper()
	p, err := cluster.StartProcess(e2e.webhookBin, f.logs[i], append([]string{"--kubeconfig", f.c.Kubeconfig, "--namespace", systemNamespace,
		"--webhook-host", "127.0.0.1", "--webhook-port", fmt.Sprint(f.webhook[i]), "--extra-hosts", "127.0.0.1",
		"--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", f.probe[i])}, f.extra...)...)
	if err != nil {
		f.t.Fatal(err)
	}
	f.procs[i] = p
}

// waitReady waits until replica i is ready and the proxy sends it connections.
func (f *fleet) waitReady(i int) {
	f.t.Helper()
	eventually(f.t, 60*time.Second, func() error {
		if f.procs[i].Exited() {
			f.t.Fatalf("replica %d exited (log: %s):\n%s", i, f.logs[i].Name(), f.tail(i))
		}
		if !f.proxy.Ready(i) {
			return fmt.Errorf("replica %d not in the rotation (log: %s)", i, f.logs[i].Name())
		}
		return nil
	})
}

// applyPolicy creates a ClusterPolicy and waits until the leader says it is Ready.
func (f *fleet) applyPolicy(doc string) *v1alpha1.ClusterPolicy {
	f.t.Helper()
	var p v1alpha1.ClusterPolicy
	if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
		f.t.Fatal(err)
	}
	if err := f.client.Create(f.t.Context(), &p); err != nil {
		f.t.Fatal(err)
	}
	f.waitPolicyReady(p.Name, 30*time.Second)
	return &p
}

func (f *fleet) waitPolicyReady(name string, timeout time.Duration) {
	f.t.Helper()
	eventually(f.t, timeout, func() error {
		var p v1alpha1.ClusterPolicy
		if err := f.client.Get(f.t.Context(), client.ObjectKey{Name: name}, &p); err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == metav1.ConditionTrue && c.ObservedGeneration == p.Generation {
				return nil
			}
		}
		return fmt.Errorf("policy %s not Ready: %+v", name, p.Status.Conditions)
	})
}

// tally counts the verdicts of one phase of a load. A failed review is one the API server could
// not get an answer for (with failurePolicy Fail, a denial that is not the policy's); a wrong one
// is a compliant Pod denied by the policy or a non-compliant one admitted.
type tally struct {
	sent, failed, wrong atomic.Int64
	mu                  sync.Mutex
	samples             []string
}

func (t *tally) record(kind, what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.samples) < 5 {
		t.samples = append(t.samples, kind+": "+what)
	}
}

func (t *tally) String() string {
	return fmt.Sprintf("%d reviews, %d failed, %d wrong %q", t.sent.Load(), t.failed.Load(), t.wrong.Load(), t.samples)
}

// podLoad creates Pods (dry run) through the API server from workers goroutines, alternately
// compliant with policy/rule (label team) and not, and judges every answer.
type podLoad struct {
	cur  atomic.Pointer[tally]
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func startPodLoad(t *testing.T, cl client.Client, ns string, workers int, denial string) *podLoad {
	l := &podLoad{}
	l.cur.Store(&tally{})
	ctx, cancel := context.WithCancel(context.Background())
	l.stop = cancel
	var n atomic.Int64
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil {
				i := n.Add(1)
				compliant := i%2 == 0
				pod := testPod(fmt.Sprintf("load-%d", i), "nginx:1.27")
				pod.Namespace = ns
				if compliant {
					pod.Labels["team"] = "a"
				}
				rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
				err := cl.Create(rctx, pod, client.DryRunAll)
				rcancel()
				if ctx.Err() != nil {
					return // stopped mid-request: not a verdict
				}
				tl := l.cur.Load()
				tl.sent.Add(1)
				byPolicy := apierrors.IsForbidden(err) && strings.Contains(err.Error(), denial)
				switch {
				case compliant && err == nil, !compliant && byPolicy:
				case compliant && byPolicy, !compliant && err == nil:
					tl.wrong.Add(1)
					tl.record("wrong", fmt.Sprintf("compliant=%t err=%v", compliant, err))
				default:
					tl.failed.Add(1)
					tl.record("failed", err.Error())
				}
			}
		})
	}
	t.Cleanup(l.halt)
	return l
}

// phase ends the current phase and returns its tally.
func (l *podLoad) phase() *tally { return l.cur.Swap(&tally{}) }

func (l *podLoad) halt() { l.stop(); l.wg.Wait() }

// labelPolicy is a Deny ClusterPolicy named name whose rule, named label, requires that label
// on Pods.
func labelPolicy(name, label string) string {
	return fmt.Sprintf(`apiVersion: portcullis.dev/v1alpha1
kind: ClusterPolicy
metadata: {name: %s}
spec:
  enforcement: Deny
  match: {kinds: [Pod]}
  rules:
    - name: %s
      labels: {required: [%s]}
`, name, label, label)
}

var teamPolicy = labelPolicy("needs-team", "team")

var ownerPolicy = labelPolicy("needs-owner", "owner")

// TestRollingRestart: three replicas behind a round-robin proxy, Pods created through the API
// server without pause, failurePolicy Fail. Each replica in turn gets SIGTERM (it turns not
// ready, the proxy drops it, it drains) and is started again: no review fails and none is wrong.
// Then one replica is killed with SIGKILL, and what that costs is measured.
func TestRollingRestart(t *testing.T) {
	f := startFleet(t, 3)
	f.applyPolicy(teamPolicy)
	ns := "load"
	if err := f.client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	load := startPodLoad(t, f.client, ns, 4, "[needs-team/team]")
	time.Sleep(3 * time.Second)
	warm := load.phase()
	t.Logf("before the restart: %s", warm)
	if warm.sent.Load() == 0 || warm.failed.Load() != 0 || warm.wrong.Load() != 0 {
		t.Fatalf("the load does not run cleanly before any restart: %s", warm)
	}

	start := time.Now()
	for i := range f.procs {
		f.procs[i].Stop() // SIGINT, as the kubelet's SIGTERM: lame duck, then drain
		f.start(i)
		f.waitReady(i)
	}
	rolling := load.phase()
	t.Logf("rolling restart of 3 replicas in %s: %s", time.Since(start).Round(time.Millisecond), rolling)
	if rolling.sent.Load() < 100 {
		t.Errorf("only %d reviews during the restart: the load did not run", rolling.sent.Load())
	}
	if rolling.failed.Load() != 0 || rolling.wrong.Load() != 0 {
		t.Errorf("rolling restart: %s, want 0 failed and 0 wrong", rolling)
	}

	// kill -9: the replica's connections die with it, and new connections reach it until the
	// proxy's probe drops it. Measured, not asserted: a crash has a cost; the point is its size.
	dropped := f.proxy.Dropped.Load()
	killedAt := time.Now()
	f.procs[1].Kill()
	for f.proxy.Ready(1) {
		time.Sleep(10 * time.Millisecond)
	}
	out := time.Since(killedAt)
	time.Sleep(2 * time.Second)
	killed := load.phase()
	t.Logf("kill -9 of one replica: out of the rotation after %s; in the %s after the kill: %s; %d connections refused by the proxy",
		out.Round(time.Millisecond), time.Since(killedAt).Round(time.Millisecond), killed, f.proxy.Dropped.Load()-dropped)
	if killed.wrong.Load() != 0 {
		t.Errorf("kill -9: %d wrong verdicts, want 0 (failures are denials under Fail, never admissions)", killed.wrong.Load())
	}
	f.start(1)
	f.waitReady(1)
	time.Sleep(time.Second)
	after := load.phase()
	t.Logf("after the killed replica came back: %s", after)
	if after.failed.Load() != 0 || after.wrong.Load() != 0 {
		t.Errorf("after the restart of the killed replica: %s", after)
	}
}

// tail is the end of replica i's log, for a failure message.
func (f *fleet) tail(i int) string { return cluster.Tail(f.logs[i].Name(), 4096) }
