package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/cmd/webhook/app"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/test/cluster"
)

// The shipped Deployment's memory limit, and the soft limit --memory-limit-ratio (0.9) derives
// from it in the container.
const (
	deploymentMemoryLimit = 256 << 20
	attackGoMemLimit      = "230MiB"
)

// attackServer is the real binary as the shipped manifests run it: as the webhook's
// ServiceAccount (impersonated, so the shipped RBAC is what it may do), with the default limits,
// no private or insecure registry, and the soft memory limit it sets itself in its container.
type attackServer struct {
	url string // https://127.0.0.1:port
	pid int
}

func startAttackServer(t *testing.T) *attackServer {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(e2e.cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range cfg.AuthInfos {
		user.Impersonate = "system:serviceaccount:" + systemNamespace + ":portcullis-webhook"
		user.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace, "system:authenticated"}
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	probes, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(e2e.dir, "webhook-attack.log"))
	if err != nil {
		t.Fatal(err)
	}
	// A second replica: it campaigns for the main server's lease, which the main server holds,
	// so it serves reviews and leaves status, certificates and webhook rules to the leader.
	p, err := cluster.StartProcessEnv(e2e.webhookBin, log, []string{"GOMEMLIMIT=" + attackGoMemLimit},
		"--kubeconfig", kubeconfig, "--namespace", systemNamespace, "--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(port),
		"--cert-dir", e2e.certDir, "--lame-duck=1s", "--metrics-bind-address", "0", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probes))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(); _ = log.Close() })
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probes))
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d (log: %s)", resp.StatusCode, log.Name())
		}
		return nil
	})
	// The API server sends it the reviews of the namespaces labelled for it, as it would the
	// shipped webhook's (the main server leaves those namespaces alone).
	cfg2, err := cluster.WebhookConfig("../manifests/base/webhook.yaml", fmt.Sprintf("https://127.0.0.1:%d", port), e2e.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg2.Name, cfg2.Webhooks = "portcullis-attack", cfg2.Webhooks[:1]
	cfg2.Webhooks[0].Name, cfg2.Webhooks[0].Rules = "attack.portcullis.dev", cluster.PodRules()
	cluster.ExcludeLabel(cfg2, attackLabel, metav1.LabelSelectorOpExists)
	mcfg, err := cluster.MutatingConfig("../manifests/base/mutating.yaml", fmt.Sprintf("https://127.0.0.1:%d", port), e2e.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	mcfg.Name, mcfg.Webhooks[0].Name, mcfg.Webhooks[0].Rules = "portcullis-attack", "attack-mutate.portcullis.dev", cluster.PodRules()
	cluster.ExcludeLabel(mcfg, attackLabel, metav1.LabelSelectorOpExists)
	for _, obj := range []client.Object{cfg2, mcfg} {
		if err := e2e.client.Create(t.Context(), obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e2e.client.Delete(context.Background(), obj) })
	}
	return &attackServer{url: fmt.Sprintf("https://127.0.0.1:%d", port), pid: p.Pid()}
}

// peakRSS reads the process's peak resident set (VmHWM) and resets it for the next phase.
func (s *attackServer) peakRSS(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	if kb == 0 {
		t.Fatalf("no VmHWM in /proc/%d/status", s.pid)
	}
	// 5 resets the peak (proc(5), clear_refs).
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid), []byte("5"), 0o600); err != nil {
		t.Fatalf("resetting the peak RSS: %v", err)
	}
	return kb << 10
}

func manyContainers(ns string, n int) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns}}
	for i := range n {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: "registry.example.com/app:1"})
	}
	return p
}

// TestHostileTenant drives the real binary, deployed as shipped, with the attacks a tenant can
// make, and asserts each bound: peak RSS (from /proc) under the Deployment's limit in every
// phase, connections that stall cut off, no request reaching an internal server, no upstream
// body reflected, no Secret's existence told.
func TestHostileTenant(t *testing.T) {
	s := startAttackServer(t)
	ctx := t.Context()
	attacked := map[string]string{attackLabel: "true"}
	ns := newNamespace(t, attacked)
	mallory := tenant(t, ns, "mallory")
	type peak struct {
		phase string
		rss   int64
	}
	peaks := []peak{{"idle", s.peakRSS(t)}}

	// 1. Policy flood: 30 Policies of 100 distinct CEL rules (1.3 MB of YAML in the issue's
	// reproduction was 150). The budget admits one; the webhook refuses the rest at the door.
	refused := 0
	for i := range 30 {
		p := namespacedPolicy(ns, fmt.Sprintf("flood-%02d", i), 100, func(j int) v1alpha1.Rule {
			return v1alpha1.Rule{Name: fmt.Sprintf("r%d", j), CEL: &v1alpha1.CELRule{
				Expression: fmt.Sprintf("podSpec == null || podSpec.containers.all(c, c.image.startsWith('registry.example.com/') || %d < %d)", i, j)}}
		})
		switch err := mallory.Create(ctx, p); {
		case apierrors.IsForbidden(err):
			refused++
		case err != nil:
			t.Fatal(err)
		}
		if i == 0 {
			waitPolicy(t, mallory, ns, p.Name, "Compiled")
		}
	}
	if refused != 29 {
		t.Errorf("%d of 30 flooding Policies refused, want 29", refused)
	}
	time.Sleep(2 * time.Second) // the attack server's own rebuilds
	peaks = append(peaks, peak{"policy flood", s.peakRSS(t)})

	// 2. Large Pods, four at a time, created by the tenant through the API server (dry run):
	// 20,000 containers (too large to evaluate: refused before it is decoded) and 500
	// (decoded and judged; the API server's defaults make each about 4 objects bigger).
	for _, n := range []int{20000, 500} {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 3 {
					pod := manyContainers(ns, n)
					err := mallory.Create(ctx, pod, client.DryRunAll)
					switch {
					case n == 20000 && (err == nil || !strings.Contains(err.Error(), "is too large to evaluate")):
						t.Errorf("%d containers: %v, want a refusal that says why", n, err)
					case n == 500 && err != nil:
						t.Errorf("%d containers: %v", n, err)
					}
				}
			})
		}
		wg.Wait()
		peaks = append(peaks, peak{fmt.Sprintf("4 x %d containers", n), s.peakRSS(t)})
	}

	// 3. Stalled bodies: 30 connections announce 7 MB, send all but the last byte, and stall.
	// 4. Slowloris: 200 connections send a header byte per second.
	stalled := openStalled(t, s, 30, 7<<20)
	slow := openSlowloris(t, s, 200)
	time.Sleep(5 * time.Second)
	peaks = append(peaks, peak{"30 stalled 7 MB bodies + 200 slowloris", s.peakRSS(t)})
	for name, conns := range map[string][]*stallConn{"stalled bodies": stalled, "slowloris": slow} {
		deadline := time.Now().Add(20 * time.Second) // --review-read-timeout is 10s
		for _, c := range conns {
			if !c.closedBy(deadline) {
				t.Errorf("%s: a connection is still open 20s after it stalled", name)
				break
			}
		}
	}
	// 5. Connection flood: 6,000 connections, each made with one request and then held open
	// idle, as a Pod that can reach the webhook's port may, from an address of its own. While
	// the flood holds the server at its bound, the API server's reviews are still answered:
	// Pods are created one after another until the flood is made, and every one is admitted.
	// The server never holds more than --max-connections.
	floods := make(chan *idleFlood, 1)
	start := time.Now()
	go func() { floods <- openIdle(t, s, 6000) }()
	limit := app.NewOptions().MaxConnections
	var (
		flood    *idleFlood
		fds      int
		stop     = make(chan struct{})
		creating sync.WaitGroup
		during   createdWhile
	)
	for flood == nil { // the server's open files, every 100 ms until the flood is made
		select {
		case flood = <-floods:
		case <-time.After(100 * time.Millisecond):
		}
		n := s.openFiles(t)
		fds = max(fds, n)
		if n >= limit && !during.started { // the flood holds the server at its bound
			during.started = true
			creating.Go(func() { during.create(ctx, mallory, ns, stop) })
		}
	}
	close(stop)
	creating.Wait()
	made := time.Since(start)
	peaks = append(peaks, peak{fmt.Sprintf("%d connections made and left idle", flood.made), s.peakRSS(t)})
	flood.close()
	t.Logf("connection flood: %d of 6000 connections answered once and left idle in %v, %d not answered within 5 s; the server had at most %d files open; %d Pods created meanwhile, %d refused",
		flood.made, made.Round(time.Millisecond), flood.failed, fds, during.created, len(during.errs))
	switch {
	case !during.started:
		t.Errorf("the flood never held the server at its bound: at most %d files open, --max-connections is %d", fds, limit)
	case during.created == 0 && len(during.errs) == 0:
		t.Errorf("no Pod was created while the flood held the server at its bound")
	}
	for i, err := range during.errs {
		if i == 3 {
			t.Errorf("... and %d more", len(during.errs)-i)
			break
		}
		t.Errorf("a Pod created during the connection flood: %v", err)
	}
	if fds > limit+100 {
		t.Errorf("the server had %d files open under the connection flood, want at most --max-connections (%d) and its own", fds, limit)
	}
	// 6. Stalled handshakes at the bound: the Pod keeps connections open from its own address,
	// none of which starts its TLS handshake, 2,000 more than --max-connections (the rest wait
	// in the kernel's accept queue), and opens a new one for each the server closes. Meanwhile
	// Pods are created through the API server, and a second API server (an HA control plane's,
	// from 127.0.0.3) sends a review on a new connection every 200 ms, within the webhook's
	// timeout (5 s): every one is answered. Before, the stalled connections kept their slots
	// until the server's read-header timeout (5 s): about a hundred freed a second, and a new
	// connection queued behind the Pod's 2,000 waited far past the review's timeout.
	stall := keepStalled(s, limit+2000)
	t.Cleanup(func() { stall.stop() }) // if the test stops before it does
	for deadline := time.Now().Add(30 * time.Second); s.openFiles(t) < limit; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled connections never held the server at its bound: %d files open", s.openFiles(t))
		}
	}
	var stallCreates createdWhile
	var fresh []error
	var wg sync.WaitGroup
	wg.Go(func() { stallCreates.createAtOnce(ctx, mallory, ns, 4, 5*time.Second) })
	body := podReview(t, ns, nil)
	for range 25 {
		time.Sleep(200 * time.Millisecond)
		fresh = append(fresh, reviewOnNewConnection(s, body, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}))
	}
	wg.Wait()
	opened, cut := stall.stop()
	peaks = append(peaks, peak{fmt.Sprintf("%d stalled handshakes, %d cut off", opened, cut), s.peakRSS(t)})
	failed := slices.DeleteFunc(fresh, func(err error) bool { return err == nil })
	t.Logf("stalled handshakes: %d opened, %d closed by the server; %d Pods created meanwhile, %d refused; %d of %d reviews on new connections answered",
		opened, cut, stallCreates.created, len(stallCreates.errs), len(fresh)-len(failed), len(fresh))
	if stallCreates.created == 0 {
		t.Error("no Pod was created while stalled handshakes held the server at its bound")
	}
	for i, err := range append(stallCreates.errs, failed...) {
		if i == 3 {
			t.Errorf("... and %d more", len(stallCreates.errs)+len(failed)-i)
			break
		}
		t.Errorf("while stalled handshakes held the server at its bound: %v", err)
	}

	for _, p := range peaks {
		t.Logf("peak RSS, %s: %.1f MiB", p.phase, float64(p.rss)/(1<<20))
		if p.rss >= deploymentMemoryLimit {
			t.Errorf("%s: peak RSS %d MiB, past the Deployment's limit of 256 MiB", p.phase, p.rss>>20)
		}
	}

	// 7. SSRF: a Policy verifying every image, and Pods whose images point at an internal
	// service and at the cloud metadata address. Nothing is dialled; the answer carries a fixed
	// phrase, never the internal body.
	var hits atomic.Int64
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "INTERNAL-ONLY-DATA", http.StatusForbidden)
	}))
	defer internal.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	ssrfNS := newNamespace(t, attacked)
	eve := tenant(t, ssrfNS, "eve")
	verifyAll := &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: "verify-all", Namespace: ssrfNS}, Spec: v1alpha1.PolicySpec{
		Enforcement: v1alpha1.Deny, Rules: []v1alpha1.Rule{{Name: "signed", VerifyImages: &v1alpha1.VerifyImagesRule{
			Images: []string{"*"}, Keys: []v1alpha1.KeyRef{{PublicKey: pub}}, IgnoreTlog: true}}}}}
	if err := eve.Create(ctx, verifyAll); err != nil {
		t.Fatal(err)
	}
	waitPolicy(t, eve, ssrfNS, "verify-all", "Compiled")
	for _, image := range []string{strings.TrimPrefix(internal.URL, "http://") + "/team/app:1", "169.254.169.254/latest/meta-data:1", "localhost:5000/team/app:1"} {
		pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ssrfNS},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}
		eventually(t, 10*time.Second, func() error { // the attack server's engine has the Policy
			err := eve.Create(ctx, pod, client.DryRunAll)
			if err == nil {
				return fmt.Errorf("%s: admitted", image)
			}
			if strings.Contains(err.Error(), "INTERNAL-ONLY-DATA") || !strings.Contains(err.Error(), "the registry's address is not allowed") {
				t.Errorf("%s: the answer is %.500s, want the fixed phrase and no upstream body", image, err)
			}
			return nil
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the internal server was reached %d times", n)
	}

	// 8. Secret probing. Another namespace's Secret: refused whether it exists or not, in the
	// same words. Its own namespace's: a private key and a missing Secret read the same.
	if err := e2e.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "real", Namespace: "kube-system"},
		StringData: map[string]string{"cosign.pub": pub}}); err != nil {
		t.Fatal(err)
	}
	keyPolicy := func(name, secretNS, secret string) *v1alpha1.Policy {
		return &v1alpha1.Policy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ssrfNS}, Spec: v1alpha1.PolicySpec{
			Rules: []v1alpha1.Rule{{Name: "signed", VerifyImages: &v1alpha1.VerifyImagesRule{
				Images: []string{"registry.example.com/*"}, Keys: []v1alpha1.KeyRef{{SecretRef: &v1alpha1.SecretKeyRef{Namespace: secretNS, Name: secret}}}}}}}}
	}
	var answers []string
	for _, name := range []string{"real", "absent"} {
		err := eve.Create(ctx, keyPolicy("probe-"+name, "kube-system", name))
		if !apierrors.IsInvalid(err) {
			t.Fatalf("a Policy reading kube-system/%s: %v", name, err)
		}
		answers = append(answers, strings.ReplaceAll(err.Error(), "probe-"+name, "probe"))
	}
	if answers[0] != answers[1] || !strings.Contains(answers[0], "a Policy may read keys only from Secrets in its own namespace") {
		t.Errorf("the answers differ or do not say why:\n%s\n%s", answers[0], answers[1])
	}
	der, err = x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := e2e.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "private", Namespace: ssrfNS},
		StringData: map[string]string{"cosign.pub": string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))}}); err != nil {
		t.Fatal(err)
	}
	answers = nil
	for _, name := range []string{"private", "absent"} {
		if err := eve.Create(ctx, keyPolicy("own-"+name, "", name)); err != nil {
			t.Fatal(err)
		}
		msg := waitPolicy(t, eve, ssrfNS, "own-"+name, "CompileError")
		answers = append(answers, strings.ReplaceAll(msg, name, "NAME"))
	}
	if answers[0] != answers[1] || strings.Contains(answers[0], "PRIVATE") {
		t.Errorf("the statuses tell a private key from a missing Secret:\n%s\n%s", answers[0], answers[1])
	}
	if err := mallory.Get(ctx, client.ObjectKey{Namespace: ssrfNS, Name: "private"}, &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("a tenant read a Secret: %v", err)
	}
}

// createdWhile is the Pods created while a connection flood held the server at its bound.
type createdWhile struct {
	started bool
	created int
	errs    []error
}

// create creates Pods in ns as c, one every 10 ms at most, until stop is closed.
func (w *createdWhile) create(ctx context.Context, c client.Client, ns string, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
		w.add(c.Create(ctx, floodPod(ns, fmt.Sprintf("during-flood-%d", i)), client.DryRunAll))
	}
}

// add counts a creation's outcome.
func (w *createdWhile) add(err error) {
	if err != nil {
		w.errs = append(w.errs, err)
	} else {
		w.created++
	}
}

// floodPod is the Pod created, dry run, while a flood holds the server at its bound.
func floodPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example.com/app:1"}}}}
}

// createAtOnce creates Pods in ns as c, n at a time, for d.
func (w *createdWhile) createAtOnce(ctx context.Context, c client.Client, ns string, n int, d time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for g := range n {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				err := c.Create(ctx, floodPod(ns, fmt.Sprintf("during-stall-%d-%d", g, i)), client.DryRunAll)
				mu.Lock()
				w.add(err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// reviewOnNewConnection posts body to the server's validating path on a new connection from
// from, within the webhook's timeout (5 s), and fails unless it is answered with a review.
func reviewOnNewConnection(s *attackServer, body []byte, from net.Addr) error {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext:     (&net.Dialer{LocalAddr: from}).DialContext,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback, a test certificate
	resp, err := hc.Post(s.url+app.ValidatePath, "application/json", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("a review on a new connection: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("a review on a new connection: reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"response"`)) {
		return fmt.Errorf("a review on a new connection: status %d, %q", resp.StatusCode, answer)
	}
	return nil
}

// stalledFlood keeps n connections open to the server from tenantAddr, none of which sends a
// byte, and opens a new one for each the server closes.
type stalledFlood struct {
	done        chan struct{}
	stopOnce    sync.Once
	wg          sync.WaitGroup
	opened, cut atomic.Int64
}

func keepStalled(s *attackServer, n int) *stalledFlood {
	f := &stalledFlood{done: make(chan struct{})}
	addr := strings.TrimPrefix(s.url, "https://")
	for range n {
		f.wg.Go(func() {
			d := &net.Dialer{Timeout: time.Second, LocalAddr: tenantAddr}
			for {
				select {
				case <-f.done:
					return
				default:
				}
				conn, err := d.Dial("tcp", addr)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				f.opened.Add(1)
				closed := make(chan struct{})
				go func() { // a read ends when the server closes the connection
					_, _ = conn.Read(make([]byte, 1))
					close(closed)
				}()
				select {
				case <-closed:
					f.cut.Add(1)
				case <-f.done:
				}
				_ = conn.Close()
			}
		})
	}
	return f
}

// stop closes the flood's connections, and returns how many it opened and how many the server
// closed.
func (f *stalledFlood) stop() (opened, cut int64) {
	f.stopOnce.Do(func() { close(f.done) })
	f.wg.Wait()
	return f.opened.Load(), f.cut.Load()
}

// stallConn is a connection the attack left hanging; closedBy reports whether the server closed
// it before the deadline.
type stallConn struct{ conn net.Conn }

func (c *stallConn) closedBy(deadline time.Time) bool {
	defer func() { _ = c.conn.Close() }()
	_ = c.conn.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, c.conn) // returns at EOF or reset (closed), or at the deadline
	var ne net.Error
	return err == nil || !errors.As(err, &ne) || !ne.Timeout()
}

func dialTLS(t *testing.T, s *attackServer) net.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(s.url, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// idleFlood is connections left open after one request each (the server may close them).
type idleFlood struct {
	conns        []net.Conn
	made, failed int
}

func (f *idleFlood) close() {
	for _, c := range f.conns {
		_ = c.Close()
	}
}

// openIdle opens n connections from tenantAddr, 64 at a time, each of which sends one request,
// reads the answer and stays open: idle, kept alive. A connection the server does not take
// within 5 s counts as failed.
func openIdle(t *testing.T, s *attackServer, n int) *idleFlood {
	t.Helper()
	f := &idleFlood{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan struct{})
	for range 64 {
		wg.Go(func() {
			for range work {
				conn, err := idleConn(s.url)
				mu.Lock()
				if err != nil {
					f.failed++
				} else {
					f.made++
					f.conns = append(f.conns, conn)
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	return f
}

// tenantAddr is the address the connection flood comes from. A Pod has an address of its own,
// not the API server's, which reaches the server from 127.0.0.1 here: the connection bound tells
// clients apart by address, and a flood from the API server's own address is the API server to
// it (docs/security.md).
var tenantAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

func idleConn(url string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: tenantAddr}
	conn, err := tls.DialWithDialer(d, "tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", app.ValidatePath); err != nil {
		_ = conn.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// openFiles counts the server's open file descriptors: its connections and its own files.
func (s *attackServer) openFiles(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// openStalled opens n connections that announce size bytes and send all but the last.
func openStalled(t *testing.T, s *attackServer, n, size int) []*stallConn {
	t.Helper()
	body := bytes.Repeat([]byte("x"), size-1)
	var conns []*stallConn
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			conn := dialTLS(t, s)
			w := bufio.NewWriter(conn)
			_, _ = fmt.Fprintf(w, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", app.ValidatePath, size)
			_, _ = w.Write(body) // the server may stop reading: the write then fails, which is fine
			_ = w.Flush()
			mu.Lock()
			conns = append(conns, &stallConn{conn})
			mu.Unlock()
		})
	}
	wg.Wait()
	return conns
}

// openSlowloris opens n connections that send their headers a byte per second.
func openSlowloris(t *testing.T, s *attackServer, n int) []*stallConn {
	t.Helper()
	var conns []*stallConn
	for range n {
		conn := dialTLS(t, s)
		go func() {
			header := "POST " + app.ValidatePath + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("a", 60)
			for i := range len(header) {
				if _, err := conn.Write([]byte{header[i]}); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}()
		conns = append(conns, &stallConn{conn})
	}
	return conns
}
