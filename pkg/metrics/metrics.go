// Package metrics defines Portcullis's Prometheus metrics. Labels are bounded whatever tenants
// write: operations, kinds, decisions, outcomes, and the names of ClusterPolicies and their rules
// (which only the platform team writes); never resource names, namespaces, or the names of
// namespaced Policies, which are counted together under Namespaced.
package metrics

import (
	"crypto/tls"
	"crypto/x509"
	"math"
	"strings"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/version"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespaced is the policy and rule label of every namespaced Policy's series.
const Namespaced = "(namespaced)"

// Metrics are the collectors of one process. They are registered on a registry given by the
// caller (controller-runtime's in the server, a fresh one in tests).
type Metrics struct {
	Reviews        *prometheus.CounterVec
	ReviewDuration *prometheus.HistogramVec
	PolicyResults  *prometheus.CounterVec
	CompileErrors  *prometheus.GaugeVec
	Policies       prometheus.Gauge

	AuditScans      *prometheus.HistogramVec
	AuditObjects    prometheus.Counter
	AuditViolations *prometheus.GaugeVec
	// AuditFailures counts failed scans; AuditLastSuccess dates the last good one.
	AuditFailures    prometheus.Counter
	AuditLastSuccess prometheus.Gauge

	Verifications   *prometheus.CounterVec
	VerifyCache     *prometheus.CounterVec
	RegistryLatency prometheus.Histogram
	// RootRefreshes counts TUF refreshes of the default trusted root; RootLastRefresh dates the
	// last good one.
	RootRefreshes   *prometheus.CounterVec
	RootLastRefresh prometheus.Gauge

	// the counters of every review (Reviewed) and of each of its results (PolicyResult)
	reviews, results *counters
}

// Reviewed counts a review answered by webhook: portcullis_admission_reviews_total.
func (m *Metrics) Reviewed(webhook, operation, kind, decision string) {
	m.reviews.get([4]string{webhook, operation, kind, decision}).Inc()
}

// PolicyResult counts a rule's result: portcullis_policy_results_total.
func (m *Metrics) PolicyResult(policy, rule, result, action string) {
	m.results.get([4]string{policy, rule, result, action}).Inc()
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_admission_reviews_total",
			Help: "Admission reviews answered, by operation, kind and decision (allowed, denied, warned, error).",
		}, []string{"webhook", "operation", "kind", "decision"}),
		ReviewDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "portcullis_admission_review_duration_seconds",
			Help: "Time to answer an admission review, from decoded request to response.",
			// 50 µs to 5 s: fine enough for sub-millisecond evaluation, wide enough for timeouts.
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"webhook"}),
		PolicyResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portcullis_policy_results_total",
			Help: "Rule results, by policy, rule, result (pass, fail, error, skip) and action (Deny, Warn, Audit).",
		}, []string{"policy", "rule", "result", "action"}),
		CompileErrors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portcullis_policy_compile_errors",
			Help: "Compile errors of each ClusterPolicy that failed to compile (0 once it compiles); namespaced Policies and PolicyExceptions are summed under policy=\"(namespaced)\".",
		}, []string{"kind", "policy"}),
		Policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portcullis_policies_active",
			Help: "Policies compiled into the running engine.",
		}),
	}
	m.Verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_image_verifications_total",
		Help: "Image verifications by check (signature, attestation) and outcome: verified, unsigned (none found), untrusted (none acceptable), error (registry unreachable or too slow).",
	}, []string{"check", "outcome"})
	m.VerifyCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_image_verification_cache_lookups_total",
		Help: "Image verification cache lookups by result: hit or miss.",
	}, []string{"result"})
	m.RegistryLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "portcullis_registry_verification_duration_seconds",
		Help:    "Time spent on registries to verify one image's signatures (cache misses).",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	})
	m.AuditScans = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portcullis_audit_scan_duration_seconds",
		Help:    "Time of one background audit scan: full (every kind the policies match) or partial (the kinds a change affects).",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
	}, []string{"scan"})
	m.AuditObjects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portcullis_audit_objects_scanned_total",
		Help: "Objects judged by the background audit, in scans and as watched changes.",
	})
	m.AuditViolations = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portcullis_audit_violations",
		Help: "(object, rule) results of the existing objects that fail (fail, warn) or cannot be judged (error), by ClusterPolicy; namespaced Policies are summed under policy=\"(namespaced)\".",
	}, []string{"policy", "result"})
	build := version.Get()
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "portcullis_build_info",
		Help: "Always 1: the version, commit and Go version of the running server.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(build.Version, build.Commit, build.GoVersion).Set(1)
	reg.MustRegister(buildInfo)
	m.AuditFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portcullis_audit_scan_failures_total",
		Help: "Audit scans that failed (a resource that could not be listed, reports that could not be written); a scan stopped by shutdown is not one.",
	})
	m.AuditLastSuccess = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portcullis_audit_last_scan_success_timestamp_seconds",
		Help: "When the last audit scan of this replica finished without error (Unix time); 0 before the first.",
	})
	reg.MustRegister(m.AuditFailures, m.AuditLastSuccess)
	m.RootRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portcullis_trusted_root_refreshes_total",
		Help: "TUF refreshes of the default (public-good) Sigstore trusted root, by outcome: success or error (the root in force stays).",
	}, []string{"outcome"})
	m.RootLastRefresh = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portcullis_trusted_root_last_refresh_success_timestamp_seconds",
		Help: "When the default trusted root was last refreshed through TUF (Unix time); 0 before the first: the embedded root is in force.",
	})
	reg.MustRegister(m.RootRefreshes, m.RootLastRefresh)
	reg.MustRegister(m.AuditScans, m.AuditObjects, m.AuditViolations)
	m.reviews, m.results = &counters{vec: m.Reviews}, &counters{vec: m.PolicyResults}
	reg.MustRegister(m.Reviews, m.ReviewDuration, m.PolicyResults, m.CompileErrors, m.Policies, m.Verifications, m.VerifyCache, m.RegistryLatency)
	return m
}

// Verification implements verify.Observer.
func (m *Metrics) Verification(check, outcome string) {
	m.Verifications.WithLabelValues(check, outcome).Inc()
}

// CacheLookup implements verify.Observer.
func (m *Metrics) CacheLookup(hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	m.VerifyCache.WithLabelValues(result).Inc()
}

// TrustedRootRefresh counts one TUF refresh of the default trusted root.
func (m *Metrics) TrustedRootRefresh(outcome string) {
	m.RootRefreshes.WithLabelValues(outcome).Inc()
	if outcome == "success" {
		m.RootLastRefresh.SetToCurrentTime()
	}
}

// Registry implements verify.Observer.
func (m *Metrics) Registry(d time.Duration) { m.RegistryLatency.Observe(d.Seconds()) }

// AuditScan implements audit.Observer.
func (m *Metrics) AuditScan(partial bool, d time.Duration) {
	scan := "full"
	if partial {
		scan = "partial"
	}
	m.AuditScans.WithLabelValues(scan).Observe(d.Seconds())
}

// AuditJudged implements audit.Observer: the counter rises as a scan goes, not at its end.
func (m *Metrics) AuditJudged() { m.AuditObjects.Inc() }

// AuditScanOutcome implements audit.Observer: a failed scan is counted, a good one dated.
func (m *Metrics) AuditScanOutcome(ok bool) {
	if ok {
		m.AuditLastSuccess.SetToCurrentTime()
	} else {
		m.AuditFailures.Inc()
	}
}

// AuditViolationCounts implements audit.Observer: counts by policy name ("namespace/name" for a
// namespaced Policy) and result. Series of policies that have none any more are dropped.
func (m *Metrics) AuditViolationCounts(byPolicy map[string]map[string]int) {
	m.AuditViolations.Reset()
	for policy, counts := range byPolicy {
		if strings.Contains(policy, "/") {
			policy = Namespaced
		}
		for result, n := range counts {
			m.AuditViolations.WithLabelValues(policy, result).Add(float64(n))
		}
	}
}

// WatchCertificate exports the expiry of the certificate the webhooks serve, read at each
// scrape from get (tls.Config.GetCertificate): portcullis_serving_certificate_expiry_timestamp_seconds,
// NaN while there is none.
func WatchCertificate(reg prometheus.Registerer, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portcullis_serving_certificate_expiry_timestamp_seconds",
		Help: "When the certificate the webhooks serve expires (Unix time); NaN while none is loaded.",
	}, func() float64 {
		c, err := get(&tls.ClientHelloInfo{})
		if err != nil || c == nil || len(c.Certificate) == 0 {
			return math.NaN()
		}
		leaf := c.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return math.NaN()
			}
		}
		return float64(leaf.NotAfter.Unix())
	}))
}

// Connections are the webhook server's connections: open, and the ones closed or retired to free
// a slot for new ones at --max-connections.
type Connections struct {
	Open int
	// IdleClosed were closed while idle.
	IdleClosed uint64
	// Retired were asked to close after their next response, which carries "Connection: close".
	Retired uint64
}

// WatchConnections exports, read at each scrape from conns, the webhook server's connections.
func WatchConnections(reg prometheus.Registerer, conns func() Connections) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "portcullis_webhook_connections",
		Help: "Connections the webhook server holds open (at most --max-connections).",
	}, func() float64 {
		return float64(conns().Open)
	}), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portcullis_webhook_idle_connections_closed_total",
		Help: "Connections the webhook server closed to free a slot for new ones at --max-connections: idle kept-alive ones, and ones stalled in their TLS handshake or in a request.",
	}, func() float64 {
		return float64(conns().IdleClosed)
	}), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "portcullis_webhook_connections_retired_total",
		Help: "Kept-alive connections the webhook server asked to close after their next response (Connection: close), to free a slot for new ones at --max-connections.",
	}, func() float64 {
		return float64(conns().Retired)
	}))
}
