// Package app is the webhook server's command: its flags, their validation, and the wiring of
// the controller-runtime manager around pkg/server and certs.
package app

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/server"
	"github.com/portcullis-dev/portcullis/pkg/source"
	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// Options are every flag of the server, validated in one place.
type Options struct {
	Kubeconfig string
	Audit      AuditOptions

	WebhookHost string
	WebhookPort int
	// CertDir, when set, serves a user-provided certificate (tls.crt, tls.key, e.g. from
	// cert-manager) and watches it for changes; when empty, Portcullis manages its own.
	CertDir          string
	CertSecret       string
	Namespace        string
	ServiceName      string
	ExtraHosts       []string
	ValidatingConfig string
	MutatingConfig   string
	CertCheck        time.Duration
	LeafLifetime     time.Duration
	CALifetime       time.Duration

	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS to clients the API server authenticates and
	// authorizes (get on the /metrics non-resource URL).
	MetricsSecure bool
	ProbeAddr     string
	EnableHTTP2   bool
	Profiling     bool

	AuditOnly         bool
	EvaluationTimeout time.Duration

	// ReviewMemory bounds the estimated memory of the reviews in flight; one review may take
	// half of it.
	ReviewMemory      resource.Quantity
	ReviewReadTimeout time.Duration
	// MaxConnections bounds the webhook server's open connections.
	MaxConnections int
	// ClientCAFile, when set, requires the API server to present a client certificate signed by
	// this CA (its AdmissionConfiguration kubeConfigFile).
	ClientCAFile string
	// MemoryLimitRatio sets the Go runtime's soft memory limit to this share of the container's
	// memory limit, unless GOMEMLIMIT is set.
	MemoryLimitRatio float64
	// PageRelease is how often the binary's mapped pages are given back (internal/exepages),
	// first once the server is ready; 0: never.
	PageRelease time.Duration
	// GCCycleInterval is the time the garbage collector's pacing aims to leave between cycles
	// while the server allocates fast (internal/gcpace); 0: Go's pacing alone.
	GCCycleInterval time.Duration

	VerifyTimeout      time.Duration
	InsecureRegistries []string
	// PrivateRegistries may resolve to loopback, link-local and private addresses.
	PrivateRegistries []string
	// NamespacedPolicyRegistries, when set, are the only registries namespaced Policies may verify.
	NamespacedPolicyRegistries []string
	// NamespacedPolicyKinds are the kinds namespaced Policies may have the webhooks intercept
	// (match.kinds entries; "*" for every namespaced kind).
	NamespacedPolicyKinds []string
	// MaxExceptionLifetime bounds how long after its creation an exception may expire.
	MaxExceptionLifetime time.Duration
	// ExceptionNamespaces are globs of the namespaces whose PolicyExceptions are honoured for
	// ClusterPolicies; empty is --namespace.
	ExceptionNamespaces []string
	// KeySecretNamespaces are where ClusterPolicies may read keys from Secrets; empty is --namespace.
	KeySecretNamespaces []string
	// Budget bounds what each namespace's Policies, and all of them together, may cost.
	Budget source.TenantBudget
	// NamespaceConcurrency bounds the reviews of one namespace evaluating its Policies at once.
	NamespaceConcurrency int
	VerifyCacheSize      int
	VerifyCacheTTL       time.Duration
	VerifyNegativeTTL    time.Duration
	PullSecrets          bool
	KeyRefresh           time.Duration
	// TUF refreshes the default (public-good) Sigstore trusted root.
	TUF TUFOptions

	LeaderElect      bool
	LeaderElectionID string
	ShutdownTimeout  time.Duration
	// LameDuck is how long the server keeps serving, not ready, once told to stop.
	LameDuck time.Duration
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "portcullis-system"
	}
	return &Options{ //nolint:gosec // CertSecret is a Secret's name, not a credential
		WebhookPort:          9443,
		CertSecret:           "portcullis-webhook-tls",
		Namespace:            ns,
		ServiceName:          "portcullis-webhook",
		ValidatingConfig:     "portcullis-validating",
		MutatingConfig:       "portcullis-mutating",
		CertCheck:            time.Minute,
		LeafLifetime:         90 * 24 * time.Hour,
		CALifetime:           10 * 365 * 24 * time.Hour,
		MetricsAddr:          ":8443",
		MetricsSecure:        true,
		ProbeAddr:            ":8081",
		EvaluationTimeout:    3 * time.Second,
		ReviewMemory:         resource.MustParse("64Mi"),
		ReviewReadTimeout:    10 * time.Second,
		MaxConnections:       server.DefaultWebhookServerOptions.MaxConnections,
		MemoryLimitRatio:     0.9,
		PageRelease:          5 * time.Minute,
		GCCycleInterval:      500 * time.Millisecond,
		VerifyTimeout:        2 * time.Second,
		MaxExceptionLifetime: 90 * 24 * time.Hour,
		Budget:               source.DefaultTenantBudget,
		NamespaceConcurrency: 1,
		VerifyCacheSize:      4096,
		VerifyCacheTTL:       time.Hour,
		VerifyNegativeTTL:    30 * time.Second,
		PullSecrets:          true,
		KeyRefresh:           time.Minute,
		TUF:                  TUFOptions{Mirror: verify.DefaultTUFMirror, Interval: 24 * time.Hour},
		LeaderElect:          true,
		LeaderElectionID:     "portcullis-webhook",
		ShutdownTimeout:      30 * time.Second,
		LameDuck:             5 * time.Second,
		Audit:                defaultAuditOptions(),
		NamespacedPolicyKinds: []string{"core/Pod", "apps/Deployment", "apps/StatefulSet", "apps/DaemonSet", "apps/ReplicaSet",
			"core/ReplicationController", "batch/Job", "batch/CronJob", "core/Service", "networking.k8s.io/Ingress", "core/ConfigMap", "core/PersistentVolumeClaim"},
	}
}

// AddFlags registers the flags on fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file; empty: in-cluster configuration or $KUBECONFIG")
	fs.StringVar(&o.WebhookHost, "webhook-host", o.WebhookHost, "address the webhook server listens on (empty: all)")
	fs.IntVar(&o.WebhookPort, "webhook-port", o.WebhookPort, "port the webhook server listens on")
	fs.StringVar(&o.CertDir, "cert-dir", o.CertDir, "directory with a user-provided tls.crt and tls.key (e.g. from cert-manager), watched for changes; empty: self-managed certificates")
	fs.StringVar(&o.CertSecret, "cert-secret", o.CertSecret, "Secret holding the self-managed CA and serving certificate")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace of the server (default: $POD_NAMESPACE)")
	fs.StringVar(&o.ServiceName, "service-name", o.ServiceName, "Service in front of the server; the certificate is valid for its DNS names")
	fs.StringSliceVar(&o.ExtraHosts, "extra-hosts", o.ExtraHosts, "more DNS names or IP addresses for the serving certificate")
	fs.StringVar(&o.ValidatingConfig, "validating-webhook-configuration", o.ValidatingConfig, "ValidatingWebhookConfiguration whose workload webhook's rules follow the policies, and whose caBundle is kept current (self-managed certificates); empty: none")
	fs.StringVar(&o.MutatingConfig, "mutating-webhook-configuration", o.MutatingConfig, "MutatingWebhookConfiguration whose workload webhook's rules follow the mutating policies, and whose caBundle is kept current (self-managed certificates); empty: none")
	fs.DurationVar(&o.CertCheck, "cert-check-interval", o.CertCheck, "how often the leader checks the certificates")
	fs.DurationVar(&o.LeafLifetime, "cert-lifetime", o.LeafLifetime, "lifetime of the serving certificate; renewed with a third left")
	fs.DurationVar(&o.CALifetime, "ca-lifetime", o.CALifetime, "lifetime of the CA; renewed with a third left")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of the Prometheus metrics endpoint (0 disables)")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure, "serve metrics over HTTPS, only to clients with a token the API server authenticates and authorizes for get on /metrics (ClusterRole portcullis-metrics-reader); false: plain HTTP to anyone")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "address of /healthz and /readyz")
	fs.BoolVar(&o.Profiling, "profiling", o.Profiling, "serve Go's pprof profiles on the metrics endpoint under /debug/pprof/")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", o.EnableHTTP2, "serve webhooks over HTTP/2 (off by default: HTTP/2 rapid-reset and stream-multiplexing exposure)")
	fs.BoolVar(&o.AuditOnly, "audit-only", o.AuditOnly, "cluster-wide dry run: every Deny becomes Audit")
	fs.DurationVar(&o.EvaluationTimeout, "evaluation-timeout", o.EvaluationTimeout, "deadline of one evaluation; keep it below the webhook configurations' timeoutSeconds")
	fs.Var(quantityValue{&o.ReviewMemory}, "max-review-memory", "estimated memory the reviews in flight may hold; one review may take half, a larger one is refused, and a review that cannot get its share before --evaluation-timeout gets 429 (see docs/security.md)")
	fs.DurationVar(&o.ReviewReadTimeout, "review-read-timeout", o.ReviewReadTimeout, "deadline for reading a whole review, headers and body: a client that stalls is cut off")
	fs.IntVar(&o.MaxConnections, "max-connections", o.MaxConnections, "connections the webhook server holds open at once, about 20 KiB each; at the bound new ones wait to be accepted while a slot is freed from the client holding the most: one of its connections in use answers with Connection: close, or, if it uses none, its longest-idle one is closed (see docs/security.md)")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "PEM CA bundle: require the API server to authenticate with a client certificate signed by it (see docs/security.md)")
	fs.Float64Var(&o.MemoryLimitRatio, "memory-limit-ratio", o.MemoryLimitRatio, "unless GOMEMLIMIT is set, the Go runtime's soft memory limit as a share of the container's cgroup memory limit (0 disables)")
	fs.DurationVar(&o.PageRelease, "binary-page-release-interval", o.PageRelease, "once ready, then this often, unmap the pages of the binary the process has mapped (clean copies of the file: starting maps about 36 MiB of them, serving uses a few); the ones in use come back from the page cache by a minor fault (Linux; 0: never; see docs/performance.md)")
	fs.DurationVar(&o.GCCycleInterval, "gc-cycle-interval", o.GCCycleInterval, "latency for memory: while reviews allocate faster than GOGC's headroom holds for this long, raise GOGC so that the garbage collector runs about once this interval (every cycle pauses the process twice, and on a busy CPU those pauses make admission's p99); the heap grows by what this interval allocates, and back down with the load; GOGC never goes below the process's, the headroom is at most a quarter of the soft memory limit, which still bounds the heap (0: Go's pacing alone; ignored when GOGC is set in the environment; see docs/performance.md)")
	fs.DurationVar(&o.VerifyTimeout, "image-verification-timeout", o.VerifyTimeout, "deadline of one image verification (registry round trips); below --evaluation-timeout")
	fs.StringSliceVar(&o.InsecureRegistries, "insecure-registries", o.InsecureRegistries, "registries (host[:port]) reached over plain HTTP, for testing; not a permission to reach private addresses (see --private-registries)")
	fs.StringSliceVar(&o.PrivateRegistries, "private-registries", o.PrivateRegistries, "registries (host[:port]) that may resolve to loopback, link-local or private addresses; no other registry host, redirect or token realm may")
	fs.StringSliceVar(&o.NamespacedPolicyKinds, "namespaced-policy-kinds", o.NamespacedPolicyKinds, "the kinds namespaced Policies (tenant input) may have the webhooks intercept, cluster-wide: match.kinds entries, \"*\" for every namespaced kind; a Policy on another kind says so in its Intercepted condition")
	fs.StringSliceVar(&o.NamespacedPolicyRegistries, "namespaced-policy-registries", o.NamespacedPolicyRegistries, "when set, the only registries (host[:port]) whose images namespaced Policies may verify; empty: any public registry")
	fs.DurationVar(&o.MaxExceptionLifetime, "max-exception-lifetime", o.MaxExceptionLifetime, "the longest a PolicyException may last after its creation; one that asks for more is refused at the door and stops applying at the maximum")
	fs.StringSliceVar(&o.ExceptionNamespaces, "exception-namespaces", o.ExceptionNamespaces, "namespaces (globs) whose PolicyExceptions may exempt from ClusterPolicies, in the namespaces their match selects (default: --namespace); elsewhere an exception exempts only from its own namespace's Policies")
	fs.StringSliceVar(&o.KeySecretNamespaces, "key-secret-namespaces", o.KeySecretNamespaces, "namespaces whose Secrets ClusterPolicies may read verification keys from (default: --namespace); a Policy reads only its own namespace's")
	fs.IntVar(&o.Budget.MaxPolicies, "namespace-max-policies", o.Budget.MaxPolicies, "the most Policies a namespace may have; past it, the newest are not compiled nor enforced, and say so in their status (0: no bound)")
	fs.IntVar(&o.Budget.MaxRules, "namespace-max-rules", o.Budget.MaxRules, "the most rules a namespace's Policies may hold together, a variable counting as a rule (0: no bound)")
	fs.Uint64Var(&o.Budget.MaxCost, "namespace-max-cost", o.Budget.MaxCost, "the most a namespace's CEL expressions may be estimated to cost together, in CEL cost units (0: no bound; see docs/security.md)")
	fs.IntVar(&o.Budget.MaxNamespacedRules, "max-namespaced-rules", o.Budget.MaxNamespacedRules, "the most rules every namespace's Policies may hold together, a variable counting as a rule; bounds the memory of compiled tenant rules however many namespaces there are (0: no bound)")
	fs.IntVar(&o.Budget.MaxExceptions, "namespace-max-exceptions", o.Budget.MaxExceptions, "the most PolicyExceptions a namespace may have; past it, the newest do not apply and say so in their status (0: no bound)")
	fs.IntVar(&o.NamespaceConcurrency, "namespace-max-concurrency", o.NamespaceConcurrency, "the most reviews of one namespace that evaluate its Policies at once, on each replica; the others wait until their deadline, then are denied: a tenant's costly Policies take at most this many cores (0: no bound; namespaces without Policies never wait)")
	fs.IntVar(&o.VerifyCacheSize, "verification-cache-size", o.VerifyCacheSize, "verdicts kept in the image verification cache (LRU)")
	fs.DurationVar(&o.VerifyCacheTTL, "verification-cache-ttl", o.VerifyCacheTTL, "how long a verified digest stays cached")
	fs.DurationVar(&o.VerifyNegativeTTL, "verification-negative-ttl", o.VerifyNegativeTTL, "how long a definitive failure (unsigned, wrong key) stays cached; registry errors never are")
	fs.DurationVar(&o.KeyRefresh, "key-refresh-interval", o.KeyRefresh, "how often policies with verification keys in Secrets re-read them")
	fs.StringVar(&o.TUF.Mirror, "tuf-mirror", o.TUF.Mirror, "TUF repository (URL) the default Sigstore trusted root of verifyImages rules that name none is refreshed from; an air-gapped cluster names its mirror (a private address must be in --private-registries, plain HTTP in --insecure-registries); empty: no refresh, the root embedded in the binary stays")
	fs.StringVar(&o.TUF.RootFile, "tuf-root", o.TUF.RootFile, "the TUF root.json trusted first for --tuf-mirror (a file); empty: the Sigstore public-good TUF root embedded in the binary")
	fs.DurationVar(&o.TUF.Interval, "tuf-refresh-interval", o.TUF.Interval, "how often the trusted root is refreshed from --tuf-mirror; a failed refresh is tried again after a minute, then twice as long each time, up to a tenth of it")
	fs.BoolVar(&o.PullSecrets, "use-pull-secrets", o.PullSecrets, "read registries with the pod's imagePullSecrets and its service account's, as the kubelet does")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "elect a leader to renew certificates, keep the webhook rules and write policy status (needed with several replicas); a lost lease stops that work, never the process")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "name of the leader election Lease")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long in-flight reviews may drain on shutdown, once the server stops accepting")
	o.Audit.addFlags(fs)
	fs.DurationVar(&o.LameDuck, "lame-duck", o.LameDuck, "on SIGTERM, how long the server keeps accepting reviews while /readyz fails, so that endpoints drop it first (at least 1s; keep lame-duck + shutdown-timeout below terminationGracePeriodSeconds)")
}

// Validate returns every problem with the options.
func (o *Options) Validate() error {
	v := &flagErrors{}
	o.validateServing(v)
	o.validateTenancy(v)
	o.validateCertificates(v)
	o.Audit.validate(v)
	return errors.Join(v.errs...)
}

// flagErrors collects what is wrong with the flags, each naming its flag and value.
type flagErrors struct{ errs []error }

func (v *flagErrors) bad(flag string, value any, why string) {
	v.errs = append(v.errs, fmt.Errorf("--%s=%v: %s", flag, value, why))
}

// validateServing checks how the server serves and judges reviews.
func (o *Options) validateServing(v *flagErrors) {
	bad := v.bad
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		bad("webhook-port", o.WebhookPort, "must be a port between 1 and 65535")
	}
	if o.EvaluationTimeout <= 0 || o.EvaluationTimeout > 25*time.Second {
		bad("evaluation-timeout", o.EvaluationTimeout, "must be positive and below the API server's 30s webhook limit")
	}
	if o.VerifyTimeout <= 0 || o.VerifyTimeout >= o.EvaluationTimeout {
		bad("image-verification-timeout", o.VerifyTimeout, "must be positive and below --evaluation-timeout, so the webhook answers when a registry is slow")
	}
	if o.KeyRefresh <= 0 {
		bad("key-refresh-interval", o.KeyRefresh, "must be positive")
	}
	for _, b := range []struct {
		flag string
		n    int
	}{{"namespace-max-policies", o.Budget.MaxPolicies}, {"namespace-max-rules", o.Budget.MaxRules}, {"max-namespaced-rules", o.Budget.MaxNamespacedRules}, {"namespace-max-concurrency", o.NamespaceConcurrency}, {"namespace-max-exceptions", o.Budget.MaxExceptions}} {
		if b.n < 0 {
			bad(b.flag, b.n, "must not be negative (0: no bound)")
		}
	}
	if o.VerifyCacheSize < 1 {
		bad("verification-cache-size", o.VerifyCacheSize, "must be at least 1")
	}
	if o.ReviewMemory.Value() < 8<<20 {
		bad("max-review-memory", o.ReviewMemory.String(), "must be at least 8Mi")
	}
	if o.MaxConnections < 16 {
		bad("max-connections", o.MaxConnections, "must be at least 16")
	}
	if o.ReviewReadTimeout < time.Second {
		bad("review-read-timeout", o.ReviewReadTimeout, "must be at least 1s")
	}
	if o.MemoryLimitRatio < 0 || o.MemoryLimitRatio >= 1 {
		bad("memory-limit-ratio", o.MemoryLimitRatio, "must be in [0, 1)")
	}
	if o.PageRelease < 0 || (o.PageRelease > 0 && o.PageRelease < 10*time.Second) {
		bad("binary-page-release-interval", o.PageRelease, "must be 0 (never) or at least 10s: each release costs the pages in use a fault")
	}
	if o.GCCycleInterval < 0 || (o.GCCycleInterval > 0 && (o.GCCycleInterval < 100*time.Millisecond || o.GCCycleInterval > time.Minute)) {
		bad("gc-cycle-interval", o.GCCycleInterval, "must be 0 (Go's pacing alone) or between 100ms and 1m")
	}
	if o.ClientCAFile != "" {
		if _, err := os.Stat(o.ClientCAFile); err != nil {
			bad("client-ca-file", o.ClientCAFile, "must be a readable file")
		}
	}
	if o.LameDuck < time.Second {
		bad("lame-duck", o.LameDuck, "must be at least 1s, so that endpoints drop the replica before it refuses connections")
	}
	if o.ShutdownTimeout < 0 {
		bad("shutdown-timeout", o.ShutdownTimeout, "must not be negative")
	}
	for flag, addr := range map[string]string{"metrics-bind-address": o.MetricsAddr, "health-probe-bind-address": o.ProbeAddr} {
		if addr == "0" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(flag, addr, "must be host:port or :port")
		}
	}
}

// validateTenancy checks what bounds tenants: what their Policies may intercept, which
// registries and Secrets they reach, how long exceptions last.
func (o *Options) validateTenancy(v *flagErrors) {
	bad := v.bad
	for _, k := range o.NamespacedPolicyKinds {
		if _, err := policies.ParseKindSelector(k); err != nil {
			bad("namespaced-policy-kinds", k, err.Error())
		}
	}
	for _, reg := range append(append(slices.Clone(o.InsecureRegistries), o.PrivateRegistries...), o.NamespacedPolicyRegistries...) {
		if reg == "" || strings.ContainsAny(reg, "/*? ") {
			bad("insecure-registries/private-registries/namespaced-policy-registries", reg, "must be a registry host[:port]")
		}
	}
	if o.MaxExceptionLifetime < time.Hour {
		bad("max-exception-lifetime", o.MaxExceptionLifetime, "must be at least 1h")
	}
	for _, ns := range o.KeySecretNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			bad("key-secret-namespaces", ns, strings.Join(msgs, "; "))
		}
	}
	o.validateTUF(v)
}

// TUFOptions say where the default trusted root is refreshed from.
type TUFOptions struct {
	Mirror   string
	RootFile string
	Interval time.Duration
	// root is RootFile's content, read by validation.
	root []byte
}

// validateTUF checks the TUF flags, and reads and parses --tuf-root.
func (o *Options) validateTUF(v *flagErrors) {
	t := &o.TUF
	if t.Mirror == "" {
		if t.RootFile != "" {
			v.bad("tuf-root", t.RootFile, "needs --tuf-mirror")
		}
		return
	}
	u, err := url.Parse(t.Mirror)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		v.bad("tuf-mirror", t.Mirror, "must be an http(s) URL")
	case u.Scheme == "http" && !slices.Contains(o.InsecureRegistries, u.Host) && !slices.Contains(o.InsecureRegistries, u.Hostname()):
		v.bad("tuf-mirror", t.Mirror, "plain HTTP needs the mirror's host in --insecure-registries")
	}
	if t.Interval < time.Minute {
		v.bad("tuf-refresh-interval", t.Interval, "must be at least 1m")
	}
	if t.RootFile != "" {
		doc, err := os.ReadFile(t.RootFile)
		if err == nil {
			_, err = metadata.Root().FromBytes(doc)
		}
		if err != nil {
			v.bad("tuf-root", t.RootFile, "not a TUF root.json: "+err.Error())
		}
		t.root = doc
	}
}

// validateCertificates checks the serving certificate's flags: user-provided (--cert-dir) or
// self-managed.
func (o *Options) validateCertificates(v *flagErrors) {
	bad := v.bad
	if o.CertDir != "" {
		for _, f := range []string{"tls.crt", "tls.key"} {
			if _, err := os.Stat(o.CertDir + "/" + f); err != nil {
				bad("cert-dir", o.CertDir, "must contain "+f)
			}
		}
	} else {
		if msgs := validation.IsDNS1123Subdomain(o.CertSecret); len(msgs) > 0 {
			bad("cert-secret", o.CertSecret, strings.Join(msgs, "; "))
		}
		if msgs := validation.IsDNS1123Label(o.Namespace); len(msgs) > 0 {
			bad("namespace", o.Namespace, strings.Join(msgs, "; "))
		}
		if msgs := validation.IsDNS1123Label(o.ServiceName); len(msgs) > 0 {
			bad("service-name", o.ServiceName, strings.Join(msgs, "; "))
		}
		if o.ValidatingConfig == "" && o.MutatingConfig == "" {
			bad("validating-webhook-configuration", o.ValidatingConfig, "name at least one webhook configuration to inject the CA into")
		}
		if o.CertCheck <= 0 {
			bad("cert-check-interval", o.CertCheck, "must be positive")
		}
		if o.LeafLifetime < time.Hour || o.CALifetime < 3*o.LeafLifetime {
			bad("cert-lifetime", o.LeafLifetime, "must be at least 1h, and --ca-lifetime at least three times longer")
		}
		for _, h := range o.ExtraHosts {
			if net.ParseIP(h) == nil && len(validation.IsDNS1123Subdomain(h)) > 0 {
				bad("extra-hosts", h, "must be a DNS name or an IP address")
			}
		}
	}
}

// hosts are the DNS names and IPs of the serving certificate.
func (o *Options) hosts() (names []string, ips []net.IP) {
	svc := o.ServiceName + "." + o.Namespace
	names = []string{svc + ".svc", o.ServiceName, svc, svc + ".svc.cluster.local"}
	for _, h := range o.ExtraHosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, h)
		}
	}
	return names, ips
}

// quantityValue is a pflag.Value for a resource quantity such as 64Mi.
type quantityValue struct{ q *resource.Quantity }

func (v quantityValue) String() string { return v.q.String() }
func (v quantityValue) Type() string   { return "quantity" }
func (v quantityValue) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return err
	}
	*v.q = q
	return nil
}

// keyNamespaces are the namespaces ClusterPolicies may read key Secrets from.
// tenantKinds are the kinds namespaced Policies may have intercepted: nil for every namespaced
// kind ("*"), none when the flag is empty.
func (o *Options) tenantKinds() intercept.TenantKinds {
	out := intercept.TenantKinds{}
	for _, k := range o.NamespacedPolicyKinds {
		sel, err := policies.ParseKindSelector(k)
		switch {
		case err != nil:
			continue // refused by Validate at start; never widens the bound
		case sel.Any:
			return nil // every namespaced kind
		}
		out = append(out, sel)
	}
	return out
}

func (o *Options) keyNamespaces() []string {
	if len(o.KeySecretNamespaces) > 0 {
		return o.KeySecretNamespaces
	}
	return []string{o.Namespace}
}

// exceptionNamespaces are the namespaces whose exceptions apply to ClusterPolicies.
func (o *Options) exceptionNamespaces() []string {
	if len(o.ExceptionNamespaces) > 0 {
		return o.ExceptionNamespaces
	}
	return []string{o.Namespace}
}
