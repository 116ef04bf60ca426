package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/portcullis-dev/portcullis/internal/threads"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/audit"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
)

// auditNamespaces is how many namespaces the audit benchmark's Pods are spread over.
const auditNamespaces = 10

// runAudit is `make bench-audit N=...`: n copies of the benchmark Pod (one in ten privileged,
// so reports list something) are created in a real API server while the server is stopped; the
// server then starts, and its first audit scan judges them all with the load policies. It
// reports the scan's objects per second (the server's own measure, in its log), the server's
// peak RSS, the bytes of reports written, and admission p99 at rate while scans run back to back
// against idle.
func runAudit(root string, n, rate int, d time.Duration) error {
	return withHarness(root, func(ctx context.Context, root string, h *harness) error { return auditBench(ctx, root, h, n, rate, d) })
}

func auditBench(ctx context.Context, root string, h *harness, n, rate int, d time.Duration) error {
	h.srv.Stop()
	if err := createPods(ctx, h.c.Config, filepath.Join(root, "pkg", "policies", "testdata", "bench", "pod.json"), n); err != nil {
		return err
	}
	if pinCPUs {
		unpin, err := pinSplit()
		if err != nil {
			return err
		}
		defer func() { _ = unpin() }()
		fmt.Println("==> pinned: etcd and kube-apiserver on CPU 0; the server and the load generator on CPU 1")
	}
	fmt.Printf("==> starting the server: its first audit scan judges the %d Pods\n", n)
	logFile, err := os.OpenFile(h.log, os.O_APPEND|os.O_WRONLY, 0o600) //nolint:gosec // the harness's own log
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	mark := logSize(h.log)
	if auditCPU != "" {
		h.args = append(h.args, "--audit-cpu="+auditCPU)
	}
	if auditGOGC != "" {
		h.args = append(h.args, "--audit-gogc="+auditGOGC)
		fmt.Printf("    the server's scans run with --audit-gogc=%s\n", auditGOGC)
	}
	h.args = append(h.args, fmt.Sprintf("--audit-page-size=%d", auditPageSize))
	if h.srv, err = h.startServer(logFile); err != nil {
		return err
	}
	if pinCPUs {
		cpus, err := allowedCPUs(h.srv.Pid())
		if err != nil {
			return err
		}
		fmt.Printf("    the server may run on CPU %s\n", cpus)
	}
	scan, err := waitScan(h.log, mark, n, 30*time.Minute)
	if err != nil {
		return err
	}
	if niced, err := threads.Niced(h.srv.Pid()); err == nil {
		fmt.Printf("    the server's threads below normal priority (thread: nice): %v\n", niced)
	}
	peak, _ := peakRSSMiB(h.srv.Pid())
	reports, _, err := h.c.Kubectl(ctx, "", "get", "reports.openreports.io", "-A", "-o", "json")
	if err != nil {
		return fmt.Errorf("reading the reports: %w", err)
	}
	fmt.Printf("scan       %d objects in %s: %.0f objects/s; peak RSS %.1f MiB; reports %d bytes (%d namespaces)\n",
		scan.objects, scan.duration, float64(scan.objects)/scan.duration.Seconds(), peak, len(reports), auditNamespaces)

	body, err := review(filepath.Join(root, "pkg", "policies", "testdata", "bench", "pod.json"))
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(20 * time.Second); check(h.port, body) != nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("the server does not answer reviews")
		}
	}
	pace := float64(scan.objects) / scan.duration.Seconds()
	policies, err := clusterPolicies(h.c.Config)
	if err != nil {
		return err
	}
	var listingRatios, scanningRatios, againstListing []float64
	for round := range auditRounds {
		if auditRounds > 1 {
			fmt.Printf("==> round %d of %d\n", round+1, auditRounds)
		}
		idle, err := attack(h.target("idle"), body, rate, d)
		if err != nil {
			return err
		}
		// The control: the API server serves the same LIST pages at the scan's pace to a
		// lister, which drops them, while the server does no scan: what the API server's work
		// costs admission, with no work of the server's own. Pinned, the lister is a process on
		// the control plane's CPU, so that its reading of the pages is not on the replica's
		// (where this harness runs); unpinned, every process shares both CPUs, and it is this one.
		listed, listedOn := 0, "the harness's CPUs"
		var off *offCPULister
		if pinCPUs {
			if off, err = startLister(h.c.Kubeconfig, d, pace, 0); err != nil {
				return err
			}
		}
		var offErr error
		listing, err := attackWith(h.target("listing"), body, rate, d, func(d time.Duration) {
			if off == nil {
				listed = listFor(ctx, h.c.Config, d, pace)
				return
			}
			var res listerResult
			res, offErr = off.run()
			listed, listedOn = res.Listed, "CPU "+res.CPUs
			if offErr == nil && res.CPUs != "0" {
				offErr = fmt.Errorf("the listing control ran on CPU %s, not on the control plane's CPU 0", res.CPUs)
			}
		})
		if err = errors.Join(err, offErr); err != nil {
			return err
		}
		if listed == 0 {
			return fmt.Errorf("the listing control read no Pod in %s", d)
		}
		scans, started := 0, 0
		mark := logSize(h.log) // rescanFor's scans are reported past it
		during, err := attackWith(h.target("scanning"), body, rate, d, func(d time.Duration) {
			scans, started = rescanFor(ctx, h, policies, d)
		})
		if err != nil {
			return err
		}
		inWindow := float64(during.Judged)
		for _, r := range []result{idle, listing, during} {
			fmt.Printf("%-10s %5d/s  %6d reviews  %6.2f%% ok  p50 %6.3f ms  p99 %6.3f ms  | GC stopped the world %d times (%d took over 10 ms to stop it; %.1f ms stopping in all) | machine %3.0f%% busy, %2.0f%% stolen\n",
				r.Server, r.Rate, r.Requests, r.Success*100, r.P50Ms, r.P99Ms, r.Stops, r.SlowStops, r.StoppingMs, r.MachineBusy*100, r.Steal*100)
		}
		listingRatios = append(listingRatios, listing.P99Ms/idle.P99Ms)
		scanningRatios = append(scanningRatios, during.P99Ms/idle.P99Ms)
		againstListing = append(againstListing, during.P99Ms/listing.P99Ms)
		fmt.Printf("           admission p99 while the API server served %d Pods' LIST pages at the scan's %.0f/s to a lister on %s: %.2fx idle\n", listed, pace, listedOn, listingRatios[round])
		fmt.Printf("           admission p99 while scans of %d Pods ran back to back (%d ended in the window, %.0f objects judged in it: %.0f/s): %.2fx idle (goal: within 1.2x), %.2fx listing\n",
			n, scans, inWindow, inWindow/d.Seconds(), scanningRatios[round], againstListing[round])
		if inWindow == 0 {
			// A window too short for the policy change to start a scan on a slow host.
			fmt.Printf("           (no object was judged in the window: this round's scanning ratio does not measure a scan)\n")
		}
		if round < auditRounds-1 {
			// The next round's idle phase must not overlap the last scan started.
			if _, err := awaitScans(h.log, mark, 30*time.Minute, func(s []scanDone) bool { return len(s) >= started }); err != nil {
				return fmt.Errorf("the %d scans started in round %d did not end: %w", started, round+1, err)
			}
		}
	}
	if auditRounds > 1 {
		fmt.Printf("over %d rounds, medians of each round's ratios: listing %.2fx idle; scanning %.2fx idle (goal: within 1.2x), %.2fx listing\n",
			auditRounds, median(listingRatios), median(scanningRatios), median(againstListing))
	}
	return nil
}

// listFor lists every Pod for d, a page at a time as the scan does (uncompressed, as many a page),
// at most pace objects a second, and drops them; it returns how many it read.
func listFor(ctx context.Context, cfg *rest.Config, d time.Duration, pace float64) int {
	rc := rest.CopyConfig(cfg)
	rc.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	rc.DisableCompression = true
	rc.QPS = -1 // no client-side rate limit, as the server's scan has none: pace bounds it (client-go's default, 5 pages a second, held it to 2,500 objects a second)
	raw, err := rest.UnversionedRESTClientFor(rc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "listing: %v\n", err)
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	lister := &audit.Lister{Client: raw, PageSize: auditPageSize}
	pods := intercept.Resource{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true}
	start, listed := time.Now(), 0
	for ctx.Err() == nil {
		_, err := lister.List(ctx, pods, "", func([]byte) error {
			listed++
			if ahead := time.Duration(float64(listed)/pace*float64(time.Second)) - time.Since(start); ahead > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(ahead):
				}
			}
			return nil
		}, nil)
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "listing: %v\n", err)
			return listed
		}
	}
	return listed
}

// createPods creates n copies of the Pod in podFile over auditNamespaces namespaces, every
// tenth privileged, showing progress.
func createPods(ctx context.Context, cfg *rest.Config, podFile string, n int) error {
	raw, err := os.ReadFile(podFile)
	if err != nil {
		return err
	}
	var base corev1.Pod
	if err := json.Unmarshal(raw, &base); err != nil {
		return err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 5000, 5000
	cfg.WarningHandler = rest.NoWarnings{} // the benchmark Pod's duplicate port names, n times
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for i := range auditNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("audit-%02d", i)}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	fmt.Printf("==> creating %d Pods in %d namespaces\n", n, auditNamespaces)
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 32 {
		wg.Go(func() {
			for i := range work {
				p := base.DeepCopy()
				p.Name, p.Namespace = fmt.Sprintf("bench-%06d", i), fmt.Sprintf("audit-%02d", i%auditNamespaces)
				if i%10 == 0 {
					p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
				}
				if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		if i > 0 && i%(max(n/10, 1)) == 0 {
			fmt.Printf("    %d/%d Pods (%s)\n", i, n, time.Since(start).Round(time.Second))
		}
		work <- i
	}
	close(work)
	wg.Wait()
	return firstErr
}

// scanDone is one "audit scan done" line of the server's log.
type scanDone struct {
	objects  int
	duration time.Duration
}

var (
	objectsRE  = regexp.MustCompile(`"objects":(\d+)`)
	durationRE = regexp.MustCompile(`"duration":"([^"]+)"`)
)

// scansIn returns the audit scans the log reports past offset.
func scansIn(log string, offset int64) []scanDone {
	f, err := os.Open(log)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(offset, 0); err != nil {
		return nil
	}
	var out []scanDone
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "audit scan done") {
			continue
		}
		var s scanDone
		if m := objectsRE.FindStringSubmatch(line); m != nil {
			s.objects, _ = strconv.Atoi(m[1])
		}
		if m := durationRE.FindStringSubmatch(line); m != nil {
			s.duration, _ = time.ParseDuration(m[1])
		}
		out = append(out, s)
	}
	return out
}

func logSize(log string) int64 {
	if fi, err := os.Stat(log); err == nil {
		return fi.Size()
	}
	return 0
}

// waitScan waits for a scan of at least n objects logged past offset.
func waitScan(log string, offset int64, n int, timeout time.Duration) (scanDone, error) {
	var found scanDone
	_, err := awaitScans(log, offset, timeout, func(scans []scanDone) bool {
		for _, s := range scans {
			if s.objects >= n {
				found = s
				return true
			}
		}
		return false
	})
	if err != nil {
		return scanDone{}, fmt.Errorf("no audit scan of %d objects: %w", n, err)
	}
	return found, nil
}

// awaitScans waits until the scans logged past offset satisfy done, and returns them.
func awaitScans(log string, offset int64, timeout time.Duration, done func([]scanDone) bool) ([]scanDone, error) {
	deadline := time.Now().Add(timeout)
	for {
		scans := scansIn(log, offset)
		if done(scans) {
			return scans, nil
		}
		if time.Now().After(deadline) {
			return scans, fmt.Errorf("not within %s (log: %s)", timeout, log)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// rescanToggles counts the changes rescanFor made to its policy, across calls, so that each
// change differs from the one before and starts a scan.
var rescanToggles int

// clusterPolicies is a client of the API server's ClusterPolicies.
func clusterPolicies(cfg *rest.Config) (dynamic.ResourceInterface, error) {
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return c.Resource(v1alpha1.GroupVersion.WithResource("clusterpolicies")), nil
}

// rescanFor keeps the audit scanning the Pods for d: each time a scan ends, a policy change
// starts the next. It returns how many scans ended within d, and how many it started (at most
// one more: the last may still run). The change is applied by this process, one request:
// pinned, a kubectl started for it (a program's start, API discovery, TLS) would take the
// replica's CPU from admission, in the scanning phase only.
func rescanFor(ctx context.Context, h *harness, policies dynamic.ResourceInterface, d time.Duration) (ended, started int) {
	end := time.Now().Add(d)
	mark := logSize(h.log)
	for time.Now().Before(end) {
		if done := len(scansIn(h.log, mark)); done >= started {
			ended = done
			expr := []string{"true", "1 == 1"}[rescanToggles%2]
			policy := fmt.Sprintf(`{"apiVersion": "portcullis.dev/v1alpha1", "kind": "ClusterPolicy", "metadata": {"name": "bench-rescan"},
				"spec": {"match": {"kinds": ["Pod"]}, "rules": [{"name": "r", "cel": {"expression": %q}}]}}`, expr)
			if _, err := policies.Patch(ctx, "bench-rescan", types.ApplyPatchType, []byte(policy), metav1.PatchOptions{FieldManager: "bench-audit", Force: new(true)}); err != nil {
				fmt.Fprintf(os.Stderr, "rescan: %v\n", err)
				return ended, started
			}
			rescanToggles++
			started++
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ended, started
}

// peakRSSMiB is the process's peak resident set size (VmHWM).
func peakRSSMiB(pid int) (float64, error) { return procStatusMiB(pid, "VmHWM") }
