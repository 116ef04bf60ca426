package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"time"

	openreports "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portcullis-dev/portcullis/certs"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/server"
	"github.com/portcullis-dev/portcullis/pkg/source"
	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// The builders NewManager wires together, one concern each.

// buildManager is the controller-runtime manager: the scheme, the webhook server, metrics,
// probes and a cache restricted to what Portcullis reads.
func buildManager(cfg *rest.Config, o *Options, whServer *server.WebhookServer) (ctrl.Manager, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, openreports.Install} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	metricsOpts := metricsserver.Options{BindAddress: o.MetricsAddr, SecureServing: o.MetricsSecure,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion, c.NextProtos = tls.VersionTLS12, []string{"http/1.1"} }}}
	if o.MetricsSecure {
		// As kubebuilder scaffolds: the API server authenticates the scraper's token and
		// authorizes get on /metrics (the ClusterRole portcullis-metrics-reader).
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	if o.Profiling {
		metricsOpts.ExtraHandlers = map[string]http.Handler{"/debug/pprof/": http.HandlerFunc(pprof.Index),
			"/debug/pprof/profile": http.HandlerFunc(pprof.Profile), "/debug/pprof/heap": pprof.Handler("heap"),
			"/debug/pprof/trace": http.HandlerFunc(pprof.Trace)}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		WebhookServer:          whServer,
		Metrics:                metricsOpts,
		HealthProbeBindAddress: o.ProbeAddr,
		// Leader-only work runs under our own elector (addLeaderWork), which campaigns again
		// when the lease is lost: controller-runtime's ends the process.
		LeaderElection:          false,
		GracefulShutdownTimeout: ptr.To(o.LameDuck + o.ShutdownTimeout),
		// Nothing reads an object's managed fields, which are often most of a small object's
		// size (a Namespace's, a Policy's). What the server writes of a cached object (a
		// policy's status) is a merge patch against a copy of it, which never mentions them.
		Cache: cache.Options{NewInformer: newPatientInformer, ByObject: cacheByObject(o),
			DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	return mgr, nil
}

// buildCompiler is the policy compiler, with image verification and exception governance; and
// the refresher of the default trusted root it verifies with, nil when --tuf-mirror is empty.
func buildCompiler(o *Options, m *metrics.Metrics, secrets client.Reader) (*policies.Compiler, *verify.TUFRefresher, error) {
	transport := verify.NewTransport(verify.EgressOptions{Insecure: o.InsecureRegistries, Private: o.PrivateRegistries})
	defaultRoot := verify.NewLiveRoot(nil)
	var refresher *verify.TUFRefresher
	if o.TUF.Mirror != "" {
		refresher = &verify.TUFRefresher{Mirror: o.TUF.Mirror, InitialRoot: o.TUF.root, Interval: o.TUF.Interval,
			Transport: transport, Target: defaultRoot, Observe: m.TrustedRootRefresh, Log: ctrl.Log.WithName("trusted-root")}
	}
	compiler, err := policies.NewCompiler(policies.WithVerification(policies.VerificationOptions{
		Observer:             m,
		Cache:                verify.NewCache(o.VerifyCacheSize, o.VerifyCacheTTL, o.VerifyNegativeTTL, nil),
		Timeout:              o.VerifyTimeout,
		InsecureRegistries:   o.InsecureRegistries,
		Transport:            transport,
		DefaultRoot:          defaultRoot,
		NamespacedRegistries: o.NamespacedPolicyRegistries,
		Secrets:              secretKeys{secrets},
		KeyNamespaces:        o.keyNamespaces(),
	}), policies.WithExceptions(policies.ExceptionOptions{MaxLifetime: o.MaxExceptionLifetime, ClusterPolicyNamespaces: o.exceptionNamespaces()}))
	return compiler, refresher, err
}

// buildPolicySource is the policy controller, which compiles the cluster's policies into the
// engine in force, with the syncer that keeps the webhooks' rules (nil when no configuration is
// named).
func buildPolicySource(mgr ctrl.Manager, cfg *rest.Config, o *Options, compiler *policies.Compiler, engines *source.EngineHolder, m *metrics.Metrics) (*source.PolicyController, *intercept.Syncer, error) {
	pc := &source.PolicyController{Client: mgr.GetClient(), Compiler: compiler, Engines: engines, Metrics: m, KeyRefresh: o.KeyRefresh, Budget: o.Budget}
	var syncer *intercept.Syncer
	if o.ValidatingConfig != "" || o.MutatingConfig != "" {
		disco, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			return nil, nil, err
		}
		syncer = &intercept.Syncer{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Discover: intercept.Discover(disco),
			Validating: o.ValidatingConfig, Mutating: o.MutatingConfig, ValidatePath: ValidatePath, MutatePath: MutatePath, Tenants: o.tenantKinds()}
		pc.Interceptor = syncer
	}
	return pc, syncer, pc.SetupWithManager(mgr)
}

// registerWebhooks registers the three webhooks on the manager's webhook server, sharing one
// memory budget: they share the process.
func registerWebhooks(mgr ctrl.Manager, cfg *rest.Config, o *Options, compiler *policies.Compiler, engines *source.EngineHolder, m *metrics.Metrics, pc *source.PolicyController) error {
	var pullSecrets *server.PullSecrets
	if o.PullSecrets {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		pullSecrets = &server.PullSecrets{Client: cs}
	}
	nss, err := newNamespaces(mgr)
	if err != nil {
		return err
	}
	shared := server.Config{
		Engines:     engines,
		Decoder:     policies.NewDecoder(false).SharingInput(),
		Namespaces:  nss,
		Metrics:     m,
		AuditOnly:   o.AuditOnly,
		Timeout:     o.EvaluationTimeout,
		PullSecrets: pullSecrets,
		Tenants:     server.NewTenantGate(o.NamespaceConcurrency),
	}
	budget := server.NewBudget(o.ReviewMemory.Value())
	// GetWebhookServer also adds the server to the manager's runnables.
	ws := mgr.GetWebhookServer()
	ws.Register(ValidatePath, &server.ReviewHandler{Handler: &server.Validator{Config: shared}, Budget: budget, Timeout: o.EvaluationTimeout})
	ws.Register(MutatePath, &server.ReviewHandler{Handler: &server.Mutator{Config: shared}, Budget: budget, Timeout: o.EvaluationTimeout})
	ws.Register(PolicyPath, &server.ReviewHandler{Handler: &server.PolicyAdmission{Compiler: compiler, Budget: pc.BudgetFor, ExceptionBudget: pc.ExceptionBudgetFor}, Budget: budget, Timeout: o.EvaluationTimeout})
	return nil
}

// buildCertificates sets up the self-managed serving certificate: every replica serves it from
// the Secret (src), and the rotator, leader work, keeps it and the caBundle current. It returns
// nil with --cert-dir.
func buildCertificates(mgr ctrl.Manager, o *Options, src *certs.Source) (*certs.Rotator, error) {
	if src == nil {
		return nil, nil
	}
	src.Client = mgr.GetClient()
	if err := src.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	names, ips := o.hosts()
	var validating, mutating []string
	if o.ValidatingConfig != "" {
		validating = append(validating, o.ValidatingConfig)
	}
	if o.MutatingConfig != "" {
		mutating = append(mutating, o.MutatingConfig)
	}
	lt := certs.DefaultLifetimes
	lt.Leaf, lt.CA = o.LeafLifetime, o.CALifetime
	rotator := &certs.Rotator{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Secret: src.Secret,
		DNSNames: names, IPs: ips, ValidatingWebhooks: validating, MutatingWebhooks: mutating,
		Lifetimes: lt, Interval: o.CertCheck,
	}
	src.Changed = rotator.Kick // a damaged or deleted Secret is repaired at once
	return rotator, mgr.AddReadyzCheck("certificate", src.ReadyCheck)
}

// addHealthChecks: a replica is ready once every informer has synced with the API server, the
// policies are compiled and the webhook server listens, and stays ready through an API server
// outage. Every review reads its namespace from the cache: that informer starts with the
// manager, not on the first review (which, in an outage, would find nothing to read).
func addHealthChecks(mgr ctrl.Manager, engines *source.EngineHolder, whServer *server.WebhookServer) error {
	if _, err := mgr.GetCache().GetInformer(context.Background(), &corev1.Namespace{}, cache.BlockUntilSynced(false)); err != nil {
		return err
	}
	synced := func(r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informers not synced with the API server yet")
		}
		return nil
	}
	for name, check := range map[string]healthz.Checker{"informers": synced, "policies": engines.ReadyCheck, "webhook": whServer.ReadyChecker()} {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			return err
		}
	}
	return mgr.AddHealthzCheck("ping", healthz.Ping)
}
