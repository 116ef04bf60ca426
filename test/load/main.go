// Command load is `make bench-load`: it sends AdmissionReviews for a ~7 KB Pod over HTTPS with
// HTTP/1.1 keep-alive, as the API server does, at fixed rates, to the Portcullis webhook (real
// binary, real control plane, the benchmark policy set in test/load/policies) and to a no-op
// webhook on the same server stack (the floor), and reports p50/p99 latency, server CPU per review and RSS.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/audit"
	"github.com/portcullis-dev/portcullis/test/cluster"
)

var (
	metricsAddr  = "0" // set by -metrics-addr; tests keep the default (a free port)
	tenantRate   int
	auditObjects int
	auditCPU     string
	serverGOGC   string
	serverFlags  []string // -server-flags: more of the server's flags, to compare a setting
	auditGOGC    string   // the server's --audit-gogc; empty: its default
	// serverGOMAXPROCS, when set, is the server's GOMAXPROCS ("1": the scan shares admission's
	// processor, as before the server gave the audit one of its own).
	serverGOMAXPROCS string
	creates          int
	rounds           int
	soakFor          time.Duration
	soakDistinct     bool
	pinCPUs          bool
	auditPageSize    int64 = audit.DefaultPageSize // set by -audit-page-size
	auditRounds            = 1                     // set by -audit-rounds
	loadRounds             = 1                     // set by -load-rounds
)

type result struct {
	Server       string  `json:"server"`
	Rate         int     `json:"rate"`
	Requests     uint64  `json:"requests"`
	Success      float64 `json:"success"`
	P50Ms        float64 `json:"p50_ms"`
	P99Ms        float64 `json:"p99_ms"`
	CPUPerReview float64 `json:"cpu_us_per_review"`
	RSSMiB       float64 `json:"rss_mib"`
	// LoadCPUPerReview is the load generator's (this process's) CPU per review: it shares the
	// machine with the server.
	LoadCPUPerReview float64 `json:"loadgen_cpu_us_per_review"`
	// MachineBusy and Steal are the shares of all the machine's CPUs that were busy (every
	// process, the server's and the load generator's included) and that the hypervisor took
	// (a noisy host) during the attack.
	MachineBusy float64 `json:"machine_busy"`
	Steal       float64 `json:"steal"`
	// Failures are the distinct errors of the reviews that failed, each with its count.
	Failures string `json:"failures,omitempty"`
	// Round is the round of the rates the phase was measured in, from 1 (-load-rounds).
	Round int `json:"round,omitempty"`
	// Retired and IdleClosed are the server's connections retired (answered with
	// "Connection: close") and closed idle at --max-connections during the attack, to free
	// slots for new ones (the no-op floor does not say).
	Retired    uint64 `json:"connections_retired,omitempty"`
	IdleClosed uint64 `json:"idle_connections_closed,omitempty"`
	// Judged are the objects the server's audit judged during the attack.
	Judged uint64 `json:"audit_objects_judged,omitempty"`
	// Stops are the server's garbage collections' stops of the world during the attack, and
	// SlowStops those that took over 10 ms to stop every processor (a thread holding one that
	// the kernel did not run); StoppingMs is the time all of them took to stop it. Admission
	// waits for the world as it stops.
	Stops      uint64  `json:"gc_stops,omitempty"`
	SlowStops  uint64  `json:"gc_stops_over_10ms,omitempty"`
	StoppingMs float64 `json:"gc_stopping_ms,omitempty"`
	// OwnP99Ms bounds the p99 of the server's own handling of the attack's reviews, decoding the
	// object and judging it (its portcullis_admission_review_duration_seconds): the upper bound
	// of the histogram's bucket that holds it. Beside P99Ms it tells a slow answer from
	// one that waited outside the handler (in the network, TLS, the scheduler, the load
	// generator). Zero for the no-op floor.
	OwnP99Ms float64 `json:"own_p99_ms_at_most,omitempty"`
}

func main() {
	runListerIfAsked()
	root := flag.String("root", ".", "the repository")
	rates := flag.String("rates", "500,1000,2000", "request rates per second")
	duration := flag.Duration("duration", 10*time.Second, "attack duration per rate")
	out := flag.String("out", "bin/bench-load.json", "where to write the results")
	flag.StringVar(&metricsAddr, "metrics-addr", "0", "the webhook's metrics and pprof address (0: a free port on loopback), to profile it under load")
	flag.StringVar(&auditCPU, "audit-cpu", "", "with -audit-objects: the server's --audit-cpu (empty: its default)")
	flag.IntVar(&auditRounds, "audit-rounds", auditRounds, "with -audit-objects: how many rounds of the idle, listing and scanning phases, each -duration, alternating; with more than one, the medians of the rounds' ratios are reported too (the host's noise drifts)")
	flag.Int64Var(&auditPageSize, "audit-page-size", auditPageSize, "with -audit-objects: the server's --audit-page-size, and the listing control's page")
	flag.StringVar(&serverGOMAXPROCS, "server-gomaxprocs", "", "GOMAXPROCS for the server, not the floor (empty: its own choice, at least 2; 1: with -audit-objects, the scan shares admission's processor)")
	flag.StringVar(&auditGOGC, "audit-gogc", "", "with -audit-objects: the server's --audit-gogc, the GOGC its scans run with (empty: its default)")
	flag.Float64Var(&serverCPULimit, "server-cpu-limit", 0, "the CPUs the server may use, as a cgroup's quota from its start, as under a container's CPU limit (0: none; needs root)")
	flag.StringVar(&serverCPUs, "server-cpus", "", "the CPUs the server may run on (a list, as taskset takes it), its affinity from its start, as the kubelet's static CPU manager pins a container (empty: any)")
	flag.StringVar(&serverGOGC, "server-gogc", "", "GOGC for the server, not the floor (empty: the runtime's default, 100), to measure what memory buys in CPU and latency")
	flag.BoolVar(&pinCPUs, "pin", false, "with -audit-objects: the control plane on CPU 0, the server and the load generator on CPU 1, so that the API server's work does not share the replica's core (needs 2 CPUs)")
	flag.IntVar(&auditObjects, "audit-objects", 0, "instead of the rates: the audit benchmark, on this many Pods created before the server starts (make bench-audit N=...)")
	flag.IntVar(&tenantRate, "tenant-rate", 0, "after the rates: a noisy tenant at its namespace's maximum budget sends this many reviews per second of a 100-container Pod while the quiet namespace is loaded at the first rate (0: skip)")
	flag.IntVar(&creates, "apiserver-creates", 0, "instead of the rates: the API server benchmark, this many dry-run Pod creations per phase (make bench-apiserver)")
	flag.IntVar(&loadRounds, "load-rounds", loadRounds, "with -rates: how many rounds of every rate's two phases (the floor, then the server; the other way round in even rounds); with more than one, the medians of the rounds' ratios are reported too (the host's noise drifts between phases)")
	flag.IntVar(&rounds, "rounds", 3, "with -apiserver-creates: rounds of the two phases, without and with the webhook")
	flag.DurationVar(&soakFor, "soak", 0, "instead of the rates: the soak, for this long, at the first rate, with 100 ClusterPolicies (make bench-soak)")
	flag.BoolVar(&soakDistinct, "soak-distinct", false, "with -soak: every copy's CEL rules and params its own, so that no two policies share a CEL program or environment (make bench-soak SOAK_DISTINCT=1)")
	flag.Func("server-flags", "more flags for the server, separated by spaces (e.g. --gc-cycle-interval=1s), to measure a setting", func(v string) error {
		serverFlags = append(serverFlags, strings.Fields(v)...)
		return nil
	})
	flag.Parse()
	if soakFor > 0 {
		rate, _ := strconv.Atoi(strings.Split(*rates, ",")[0])
		if err := runSoak(*root, rate, soakFor, 10*time.Second, soakDistinct); err != nil {
			fmt.Fprintf(os.Stderr, "bench-soak: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if creates > 0 {
		if err := runAPIServer(*root, creates, rounds); err != nil {
			fmt.Fprintf(os.Stderr, "bench-apiserver: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if auditObjects > 0 {
		if auditRounds < 1 {
			fmt.Fprintf(os.Stderr, "bench-audit: -audit-rounds %d: must be at least 1\n", auditRounds)
			os.Exit(2)
		}
		rate, _ := strconv.Atoi(strings.Split(*rates, ",")[0])
		if err := runAudit(*root, auditObjects, rate, *duration); err != nil {
			fmt.Fprintf(os.Stderr, "bench-audit: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if loadRounds < 1 {
		fmt.Fprintf(os.Stderr, "bench-load: -load-rounds %d: must be at least 1\n", loadRounds)
		os.Exit(2)
	}
	if err := run(*root, *rates, *duration, *out); err != nil {
		fmt.Fprintf(os.Stderr, "bench-load: %v\n", err)
		os.Exit(1)
	}
}

// withHarness runs fn with a harness started from the repository at root, and stops it.
func withHarness(root string, fn func(ctx context.Context, root string, h *harness) error) error {
	root, _ = filepath.Abs(root)
	dir, err := os.MkdirTemp("", "portcullis-load-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx := context.Background()
	h, err := start(ctx, root, dir)
	if err != nil {
		return err
	}
	defer h.stop()
	return fn(ctx, root, h)
}

func run(root, rateList string, duration time.Duration, out string) error {
	return withHarness(root, func(ctx context.Context, root string, h *harness) error {
		return runRates(ctx, root, h, rateList, duration, out)
	})
}

func runRates(ctx context.Context, root string, h *harness, rateList string, duration time.Duration, out string) error {
	body, err := review(filepath.Join(root, "pkg", "policies", "testdata", "bench", "pod.json"))
	if err != nil {
		return err
	}
	fmt.Printf("==> AdmissionReview of %d bytes (Pod %s), %s per rate, GOMAXPROCS %d, %d CPUs\n", len(body), "pkg/policies/testdata/bench/pod.json", duration, runtime.GOMAXPROCS(0), runtime.NumCPU())
	// Both servers must answer the review as expected before being measured.
	for name, p := range map[string]int{"portcullis": h.port, "noop": h.noopPort} {
		deadline := time.Now().Add(20 * time.Second)
		for err := check(p, body); err != nil; err = check(p, body) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: %w", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	results, err := measure(rateList, duration, body, []target{{name: "noop", port: h.noopPort, pid: h.noop.Pid()}, h.target("portcullis")})
	if err != nil {
		return err
	}
	if tenantRate > 0 {
		rate, _ := strconv.Atoi(strings.TrimSpace(strings.Split(rateList, ",")[0]))
		res, err := noisyTenant(ctx, h.c, h, body, rate, duration)
		if err != nil {
			return err
		}
		results = append(results, res...)
	}
	data, _ := json.MarshalIndent(results, "", "  ")
	if err := os.MkdirAll(filepath.Dir(out), 0o750); err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o600)
}

// harness is the control plane, the server and the no-op floor, running.
type harness struct {
	c              *cluster.Cluster
	srv, noop      *cluster.Process
	port, noopPort int
	metrics        string // the server's metrics URL (plain HTTP, loopback)
	// how the server was started, to start it again
	bin, log string
	args     []string
	cgroup   *cpuCgroup // with -server-cpu-limit, the server's
}

// startServer starts the server as h.bin and h.args say, in h.cgroup when there is one.
func (h *harness) startServer(log *os.File) (*cluster.Process, error) {
	bin, args := h.bin, h.args
	if serverCPUs != "" {
		bin, args = onCPUs(serverCPUs, bin, args)
	}
	if h.cgroup != nil {
		return h.cgroup.start(bin, log, serverEnv(), args...)
	}
	return cluster.StartProcessEnv(bin, log, serverEnv(), args...)
}

// target is the server, as name, to load.
func (h *harness) target(name string) target {
	return target{name: name, port: h.port, pid: h.srv.Pid(), metrics: h.metrics}
}

func (h *harness) stop() {
	for _, p := range []*cluster.Process{h.noop, h.srv} {
		if p != nil {
			p.Stop()
		}
	}
	if h.cgroup != nil {
		if periods, throttled, ms, err := h.cgroup.throttled(); err == nil {
			fmt.Printf("==> the server's CPU limit (%g CPUs): throttled in %d of %d periods, %.1f ms in all\n", serverCPULimit, throttled, periods, ms)
		}
		if err := h.cgroup.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "removing the server's cgroup: %v\n", err)
		}
	}
	h.c.Stop()
}

// start runs a control plane, the server with the load policies, and the no-op server on the
// same certificate.
func start(ctx context.Context, root, dir string) (h *harness, err error) {
	fmt.Println("==> control plane, webhook and policies")
	c, err := cluster.Start(filepath.Join(root, "bin", "k8s"), filepath.Join(root, "manifests", "crds"), dir)
	if err != nil {
		return nil, err
	}
	started := &harness{c: c}
	h = started
	defer func() {
		if err != nil {
			started.stop()
		}
	}()
	for _, ns := range []string{"portcullis-system", "shop"} {
		if _, stderr, err := c.Kubectl(ctx, "", "create", "namespace", ns); err != nil {
			return nil, fmt.Errorf("%w: %s", err, stderr)
		}
	}
	bin, err := cluster.BuildWebhook(root, dir)
	if err != nil {
		return nil, err
	}
	noopBin := filepath.Join(dir, "noop")
	if b, err := exec.Command("go", "build", "-o", noopBin, filepath.Join(root, "test", "load", "noop")).CombinedOutput(); err != nil { //nolint:gosec // builds the harness's own binary
		return nil, fmt.Errorf("building the no-op server: %w\n%s", err, b)
	}
	port, _ := cluster.FreePort()
	probes, _ := cluster.FreePort()
	noopPort, _ := cluster.FreePort()
	logFile, err := os.Create(filepath.Join(dir, "webhook.log"))
	if err != nil {
		return nil, err
	}
	h.bin, h.log = bin, logFile.Name()
	// The server's metrics are always served, on loopback, for the counters the phases report.
	metrics := metricsAddr
	if metrics == "0" {
		free, _ := cluster.FreePort()
		metrics = fmt.Sprintf("127.0.0.1:%d", free)
	}
	h.metrics = "http://" + metrics + "/metrics"
	h.args = []string{"--kubeconfig", c.Kubeconfig, "--namespace", "portcullis-system",
		"--webhook-host", "127.0.0.1", "--webhook-port", fmt.Sprint(port), "--extra-hosts", "127.0.0.1",
		"--validating-webhook-configuration", "none", "--leader-elect=false",
		"--metrics-bind-address", metrics, "--profiling", "--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probes),
		"--metrics-secure=false"} // plain HTTP, for pprof on -metrics-addr (loopback)
	if len(serverFlags) > 0 {
		h.args = append(h.args, serverFlags...)
		fmt.Printf("    the server runs with %s\n", strings.Join(serverFlags, " "))
	}
	if serverCPULimit > 0 {
		if h.cgroup, err = newCPUCgroup(serverCPULimit); err != nil {
			return nil, err
		}
		fmt.Printf("    the server may use %g CPUs (a cgroup's quota)\n", serverCPULimit)
	}
	if serverCPUs != "" {
		fmt.Printf("    the server runs on CPUs %s only\n", serverCPUs)
	}
	srv, err := h.startServer(logFile)
	if err != nil {
		return nil, err
	}
	h.srv, h.port = srv, port
	if _, stderr, err := c.Kubectl(ctx, "", "apply", "-f", filepath.Join(root, "test", "load", "policies")); err != nil {
		return nil, fmt.Errorf("%w: %s", err, stderr)
	}
	if _, stderr, err := c.Kubectl(ctx, "", "wait", "--for=condition=Ready", "clusterpolicy", "--all", "--timeout=60s"); err != nil {
		return nil, fmt.Errorf("policies not ready: %w: %s", err, stderr)
	}
	if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", probes)); err != nil {
		return nil, err
	}
	// The no-op server serves the same certificate, read back from the Secret.
	certDir := filepath.Join(dir, "noop-certs")
	if err := writeCert(ctx, c, certDir); err != nil {
		return nil, err
	}
	noop, err := cluster.StartProcess(noopBin, logFile, "--port", fmt.Sprint(noopPort), "--cert-dir", certDir)
	if err != nil {
		return nil, err
	}
	h.noop, h.noopPort = noop, noopPort
	return h, nil
}

// target is a server to load.
type target struct {
	name      string
	port, pid int
	metrics   string // its metrics URL; "" for the no-op floor, which has none
}

// measure loads each target at each rate, loadRounds times, and prints each result and its ratio
// to the first target's (the floor) in the same round. The targets take turns: in even rounds the
// last goes first, so that neither is always measured after the other. With more than one round,
// it then prints the medians of the rounds' ratios per rate.
func measure(rateList string, duration time.Duration, body []byte, targets []target) ([]result, error) {
	var rates []int
	for _, r := range strings.Split(rateList, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil {
			return nil, fmt.Errorf("-rates: %w", err)
		}
		rates = append(rates, rate)
	}
	var results []result
	ratios := map[int][]phaseRatio{} // by rate, a ratio per round
	for round := 1; round <= loadRounds; round++ {
		if loadRounds > 1 {
			fmt.Printf("==> round %d of %d\n", round, loadRounds)
		}
		order := slices.Clone(targets)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, rate := range rates {
			byName := map[string]result{}
			for _, s := range order {
				res, err := attack(s, body, rate, duration)
				if err != nil {
					return nil, err
				}
				res.Round = round
				results = append(results, res)
				byName[s.name] = res
				fmt.Printf("%-11s %5d/s  %6d reviews  %6.2f%% ok  p50 %6.3f ms  p99 %6.3f ms  CPU %6.1f µs/review  RSS %5.1f MiB  | load generator %6.1f µs/review, machine %3.0f%% busy, %2.0f%% stolen\n",
					res.Server, res.Rate, res.Requests, res.Success*100, res.P50Ms, res.P99Ms, res.CPUPerReview, res.RSSMiB,
					res.LoadCPUPerReview, res.MachineBusy*100, res.Steal*100)
				if res.Failures != "" {
					fmt.Printf("            failed: %s\n", res.Failures)
				}
				if res.Retired+res.IdleClosed > 0 {
					fmt.Printf("            at --max-connections: %d connections retired, %d closed idle\n", res.Retired, res.IdleClosed)
				}
				if res.SlowStops > 0 {
					fmt.Printf("            the server's GC took over 10 ms to stop the world %d times of %d (%.1f ms stopping in all)\n", res.SlowStops, res.Stops, res.StoppingMs)
				}
				if res.OwnP99Ms > 0 {
					fmt.Printf("            the server's own handling (decoding and judging the object): p99 at most %g ms\n", res.OwnP99Ms)
				}
			}
			r := ratioOf(byName[targets[len(targets)-1].name], byName[targets[0].name])
			ratios[rate] = append(ratios[rate], r)
			fmt.Printf("            ratio to the floor at %d/s: CPU %.2fx, p50 %.2fx, p99 %.2fx\n", rate, r.cpu, r.p50, r.p99)
		}
	}
	if loadRounds > 1 {
		fmt.Printf("\n| rate | CPU per review ÷ floor, per round | median | p50 ÷ floor, median | p99 ÷ floor, median |\n|---|---|---|---|---|\n")
		for _, rate := range rates {
			rs := ratios[rate]
			var cpu, p50, p99 []float64
			var each []string
			for _, r := range rs {
				cpu, p50, p99 = append(cpu, r.cpu), append(p50, r.p50), append(p99, r.p99)
				each = append(each, fmt.Sprintf("%.2f", r.cpu))
			}
			fmt.Printf("| %d/s | %s | **%.2fx** | %.2fx | %.2fx |\n", rate, strings.Join(each, ", "), median(cpu), median(p50), median(p99))
		}
	}
	return results, nil
}

// phaseRatio is a server's figures over the floor's, in one round at one rate.
type phaseRatio struct{ cpu, p50, p99 float64 }

func ratioOf(server, floor result) phaseRatio {
	return phaseRatio{cpu: server.CPUPerReview / floor.CPUPerReview, p50: server.P50Ms / floor.P50Ms, p99: server.P99Ms / floor.P99Ms}
}

func attack(t target, body []byte, rate int, d time.Duration) (result, error) {
	return attackWith(t, body, rate, d, nil)
}

// reviewTarget posts body to the webhook's /validate on port.
func reviewTarget(port int, body []byte) vegeta.Target {
	return vegeta.Target{Method: http.MethodPost, URL: fmt.Sprintf("https://127.0.0.1:%d/validate", port), Body: body,
		Header: http.Header{"Content-Type": []string{"application/json"}}}
}

// attacker is the API server's side of the load: HTTP/1.1 with keep-alive over TLS, at most 600
// connections (what one API server's default in-flight limits allow), above the server's
// --max-connections (512), so that a starved server's bound is exercised as a busy API server
// would: its connections wait for a slot rather than fail. An Attacker runs one attack.
func attacker() *vegeta.Attacker {
	return vegeta.NewAttacker(vegeta.HTTP2(false), vegeta.KeepAlive(true), vegeta.Connections(64), vegeta.MaxConnections(600),
		vegeta.TLSConfig(&tls.Config{InsecureSkipVerify: true}), vegeta.Timeout(10*time.Second)) //nolint:gosec // loopback benchmark
}

// attackWith is attack with, when beside is set, a second attack running for the same time
// (the noisy tenant); its own metrics are not reported.
func attackWith(t target, body []byte, rate int, d time.Duration, beside func(d time.Duration)) (result, error) {
	name, pid := t.name, t.pid
	target := reviewTarget(t.port, body)
	pacer := vegeta.ConstantPacer{Freq: rate, Per: time.Second}
	// Warm up (connections, caches), then measure.
	for range attacker().Attack(vegeta.NewStaticTargeter(target), pacer, 2*time.Second, name+"-warmup") {
	}
	before, err := readUsage(pid)
	if err != nil {
		return result{}, err
	}
	countersBefore, err := readCounters(t.metrics)
	if err != nil {
		return result{}, err
	}
	done := make(chan struct{})
	if beside != nil {
		go func() { beside(d); close(done) }()
	} else {
		close(done)
	}
	var m vegeta.Metrics
	var errs []string
	for res := range attacker().Attack(vegeta.NewStaticTargeter(target), pacer, d, name) {
		m.Add(res)
		if res.Error != "" {
			errs = append(errs, res.Error)
		}
	}
	m.Close()
	<-done
	after, err := readUsage(pid)
	if err != nil {
		return result{}, err
	}
	countersAfter, err := readCounters(t.metrics)
	if err != nil {
		return result{}, err
	}
	rss, err := rssMiB(pid)
	if err != nil {
		return result{}, err
	}
	ownP99 := 0.0
	if t.metrics != "" {
		handled, err := histogram(nil).add(countersAfter.samples, countersBefore.samples, reviewDuration)
		if err != nil {
			return result{}, err
		}
		if q := handled.quantileBound(0.99); q > 0 {
			ownP99 = q * 1000
		}
	}
	ok := float64(m.Requests) * m.Success
	busy, steal := after.machine.sharesSince(before.machine)
	c := countersAfter.since(countersBefore)
	return result{Server: name, Rate: rate, Requests: m.Requests, Success: m.Success,
		P50Ms: ms(m.Latencies.P50), P99Ms: ms(m.Latencies.P99),
		CPUPerReview: float64((after.server - before.server).Microseconds()) / ok, RSSMiB: rss,
		LoadCPUPerReview: float64((after.self - before.self).Microseconds()) / float64(max(m.Requests, 1)),
		MachineBusy:      busy, Steal: steal, Failures: errorSummary(errs),
		Retired: c.retired, IdleClosed: c.idleClosed, Judged: c.judged, Stops: c.stops, SlowStops: c.slowStops,
		StoppingMs: c.stopping * 1000, OwnP99Ms: ownP99}, nil
}

// serverCounters are counts the server's metrics give so far: connections retired and closed
// idle at --max-connections, objects its audit judged, and its garbage collections' stops of
// the world (Go's /sched/pauses/stopping/gc:seconds): how many, how many took over 10 ms to
// stop every processor, and the seconds all of them took to.
type serverCounters struct {
	retired, idleClosed, judged, stops, slowStops uint64
	stopping                                      float64
	samples                                       map[string]float64 // every sample read
}

// since is what the counters rose by from before.
func (c serverCounters) since(before serverCounters) serverCounters {
	return serverCounters{retired: c.retired - before.retired, idleClosed: c.idleClosed - before.idleClosed,
		judged: c.judged - before.judged, stops: c.stops - before.stops, slowStops: c.slowStops - before.slowStops,
		stopping: c.stopping - before.stopping}
}

// stoppingHistogram is the server's histogram of the time its garbage collections took to stop
// the world.
const stoppingHistogram = "go_sched_pauses_stopping_gc_seconds"

// readCounters reads the server's counters from its metrics at url; zeros when url is "" (the
// no-op floor).
func readCounters(url string) (serverCounters, error) {
	if url == "" {
		return serverCounters{}, nil
	}
	samples, err := readMetrics(url)
	if err != nil {
		return serverCounters{}, err
	}
	m, err := pick(samples, "portcullis_webhook_connections_retired_total", "portcullis_webhook_idle_connections_closed_total",
		"portcullis_audit_objects_scanned_total", stoppingHistogram+"_count", stoppingHistogram+"_sum")
	if err != nil {
		return serverCounters{}, err
	}
	within, err := bucketAt(samples, stoppingHistogram, 0.010)
	if err != nil {
		return serverCounters{}, err
	}
	return serverCounters{retired: uint64(m[0]), idleClosed: uint64(m[1]), judged: uint64(m[2]), stops: uint64(m[3]),
		slowStops: uint64(m[3]) - within, stopping: m[4], samples: samples}, nil
}

// bucketAt returns, of the samples read, the count of histogram's smallest bucket whose upper
// bound is at least bound (the runtime's buckets are not round numbers: 0.0105 s for 10 ms).
func bucketAt(samples map[string]float64, histogram string, bound float64) (uint64, error) {
	h, err := buckets(samples, histogram+`_bucket{le="`)
	if err != nil {
		return 0, err
	}
	for _, b := range h {
		if b.le >= bound {
			return uint64(b.count), nil
		}
	}
	return 0, fmt.Errorf("the server's metrics have no bucket of %s at %g s or above", histogram, bound)
}

// pick returns the values of the samples named.
func pick(samples map[string]float64, names ...string) ([]float64, error) {
	values := make([]float64, len(names))
	for i, name := range names {
		v, ok := samples[name]
		if !ok {
			return nil, fmt.Errorf("the server's metrics have no %s", name)
		}
		values[i] = v
	}
	return values, nil
}

// readMetrics reads every sample of the metrics at url, by its name and labels as written
// (`name{label="value"}`).
func readMetrics(url string) (map[string]float64, error) {
	resp, err := http.Get(url) //nolint:gosec,noctx // the harness's own server, on loopback
	if err != nil {
		return nil, fmt.Errorf("reading the server's metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the server's metrics: %s", resp.Status)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("the server's metric %s: %w", line[:i], err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the server's metrics: %w", err)
	}
	return samples, nil
}

// usage is the CPU time used so far by the server, by this process (the load generator) and by
// the machine.
type usage struct {
	server, self time.Duration
	machine      ticks
}

func readUsage(pid int) (usage, error) {
	var u usage
	var err error
	if u.server, err = cpuTime(pid); err != nil {
		return u, err
	}
	if u.self, err = cpuTime(os.Getpid()); err != nil {
		return u, err
	}
	u.machine, err = machineTicks()
	return u, err
}

// ticks are the machine's CPU time from /proc/stat's first line, in clock ticks, summed over
// its CPUs: all of it, the idle part (idle and iowait) and the part the hypervisor took (steal).
type ticks struct{ total, idle, steal uint64 }

func machineTicks() (ticks, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return ticks{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return ticks{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t ticks
	for i, f := range fields[1:] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return ticks{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		switch i {
		case 3, 4: // idle, iowait
			t.idle += n
		case 7:
			t.steal = n
		case 8, 9: // guest time is counted in user time already
			continue
		}
		t.total += n
	}
	return t, nil
}

// sharesSince is the share of the machine's CPU time since t0 that its processes used, and the
// share the hypervisor took.
func (t ticks) sharesSince(t0 ticks) (busy, steal float64) {
	total := float64(t.total - t0.total)
	if total == 0 {
		return 0, 0
	}
	stolen := float64(t.steal - t0.steal)
	return (float64((t.total-t.idle)-(t0.total-t0.idle)) - stolen) / total, stolen / total
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuTime is the process's user+system CPU time from /proc (clock ticks of 10 ms).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func rssMiB(pid int) (float64, error) { return procStatusMiB(pid, "VmRSS") }

// procStatusMiB reads a size field of /proc/PID/status (VmRSS, VmHWM) in MiB.
func procStatusMiB(pid int, field string) (float64, error) {
	mib, err := procStatusMiBs(pid, field)
	if err != nil {
		return 0, err
	}
	return mib[0], nil
}

// procStatusMiBs reads size fields of /proc/PID/status in MiB, from one reading of the file.
func procStatusMiBs(pid int, fields ...string) ([]float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	mib := make([]float64, len(fields))
	found := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if i := slices.Index(fields, name); ok && i >= 0 {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			mib[i] = kb / 1024
			found++
		}
	}
	if found != len(fields) {
		return nil, fmt.Errorf("not every one of %v in /proc/%d/status", fields, pid)
	}
	return mib, nil
}

// review wraps the Pod in an AdmissionReview as the API server sends it.
func review(podFile string) ([]byte, error) {
	raw, err := os.ReadFile(podFile)
	if err != nil {
		return nil, err
	}
	var compact json.RawMessage
	if err := json.Unmarshal(raw, &compact); err != nil {
		return nil, err
	}
	dry := false
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("3f2a6b0e-6d3c-4b8a-9c1e-2f7d8a9b0c1d"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:      "checkout-7d9f8c6b5-x2x4q",
			Namespace: "shop",
			Operation: admissionv1.Create,
			Object:    runtimeRaw(compact),
			DryRun:    &dry,
		},
	})
}

// check sends one review and expects it allowed (the benchmark Pod passes every policy).
func check(port int, body []byte) error {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback benchmark
	resp, err := c.Post(fmt.Sprintf("https://127.0.0.1:%d/validate", port), "application/json", strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	var rv admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rv); err != nil {
		return err
	}
	if rv.Response == nil || !rv.Response.Allowed || len(rv.Response.Warnings) > 0 {
		return fmt.Errorf("the benchmark review was not simply allowed: %+v", rv.Response)
	}
	return nil
}

func waitReady(url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url) //nolint:gosec // the harness's own probe URL
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook not ready: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func writeCert(ctx context.Context, c *cluster.Cluster, dir string) error {
	out, stderr, err := c.Kubectl(ctx, "", "get", "secret", "-n", "portcullis-system", "portcullis-webhook-tls", "-o", "yaml")
	if err != nil {
		return fmt.Errorf("%w: %s", err, stderr)
	}
	var s struct {
		Data map[string][]byte `json:"data"`
	}
	if err := yaml.Unmarshal([]byte(out), &s); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, k := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(dir, k), s.Data[k], 0o600); err != nil {
			return err
		}
	}
	return nil
}

func runtimeRaw(b []byte) k8sruntime.RawExtension { return k8sruntime.RawExtension{Raw: b} }

// serverEnv is what -server-gogc and -server-gomaxprocs add to the server's environment (never the
// floor's), each said once, as the server starts.
func serverEnv() []string {
	var env []string
	for _, v := range [][2]string{{"GOGC", serverGOGC}, {"GOMAXPROCS", serverGOMAXPROCS}} {
		if v[1] != "" {
			env = append(env, v[0]+"="+v[1])
			fmt.Printf("    the server runs with %s=%s\n", v[0], v[1])
		}
	}
	return env
}
