package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/portcullis-dev/portcullis/certs"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/leader"
	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/server"
	"github.com/portcullis-dev/portcullis/pkg/verify"
)

// The paths of the webhooks.
const (
	ValidatePath = "/validate"
	MutatePath   = "/mutate"
	// PolicyPath judges ClusterPolicies, Policies and PolicyExceptions as they are written.
	PolicyPath = "/validate-policies"
)

// Run starts the server and blocks until ctx ends and in-flight reviews have drained.
func Run(ctx context.Context, o *Options) error {
	ctrl.SetLogger(zap.New())
	klog.SetLogger(ctrl.Log) // client-go's own messages (leader election, informers) as structured logs too
	if limit := setMemoryLimit(o.MemoryLimitRatio, cgroupMemoryLimitFiles); limit > 0 {
		ctrl.Log.Info("Go memory limit set from the container's", "bytes", limit, "ratio", o.MemoryLimitRatio)
	}
	cfg, err := restConfig(o.Kubeconfig)
	if err != nil {
		return err
	}
	mgr, src, err := NewManager(cfg, o, crmetrics.Registry)
	if err != nil {
		return err
	}
	if src == nil {
		ctrl.Log.Info("serving the certificate from --cert-dir", "dir", o.CertDir)
	}
	return mgr.Start(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		return ctrl.GetConfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading --kubeconfig: %w", err)
	}
	return cfg, nil
}

// NewManager wires the manager: the webhook server, the policy controller and, unless
// --cert-dir is given, the certificate source and rotator. Portcullis's metrics are registered
// on reg (controller-runtime's registry, which the metrics endpoint serves). It returns the
// source (nil with --cert-dir).
func NewManager(cfg *rest.Config, o *Options, reg prometheus.Registerer) (ctrl.Manager, *certs.Source, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return capRetryAfter{next: rt} })
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, nil, err
		}
	}
	secret := types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecret}
	var src *certs.Source
	if o.CertDir == "" {
		src = &certs.Source{Secret: secret}
	}
	whServer, watcher, err := buildWebhookServer(o, src)
	if err != nil {
		return nil, nil, err
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
			"/debug/pprof/profile": http.HandlerFunc(pprof.Profile), "/debug/pprof/heap": pprof.Handler("heap")}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		WebhookServer:          whServer,
		Metrics:                metricsOpts,
		HealthProbeBindAddress: o.ProbeAddr,
		// Leader-only work runs under our own elector (leaderWork), which campaigns again when
		// the lease is lost: controller-runtime's ends the process.
		LeaderElection:          false,
		GracefulShutdownTimeout: ptr.To(o.LameDuck + o.ShutdownTimeout),
		Cache:                   cache.Options{NewInformer: newPatientInformer, ByObject: cacheByObject(o)},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the manager: %w", err)
	}
	if watcher != nil {
		if err := mgr.Add(everyReplica(watcher.Start)); err != nil {
			return nil, nil, err
		}
	}

	m := metrics.New(reg)
	compiler, err := policies.NewCompiler(policies.WithVerification(policies.VerificationOptions{
		Observer:             m,
		Cache:                verify.NewCache(o.VerifyCacheSize, o.VerifyCacheTTL, o.VerifyNegativeTTL, nil),
		Timeout:              o.VerifyTimeout,
		InsecureRegistries:   o.InsecureRegistries,
		Transport:            verify.NewTransport(verify.EgressOptions{Insecure: o.InsecureRegistries, Private: o.PrivateRegistries}),
		NamespacedRegistries: o.NamespacedPolicyRegistries,
		Secrets:              secretKeys{mgr.GetAPIReader()},
		KeyNamespaces:        o.keyNamespaces(),
	}), policies.WithExceptions(policies.ExceptionOptions{MaxLifetime: o.MaxExceptionLifetime, ClusterPolicyNamespaces: o.exceptionNamespaces()}))
	if err != nil {
		return nil, nil, err
	}
	var pullSecrets *server.PullSecrets
	if o.PullSecrets {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, nil, err
		}
		pullSecrets = &server.PullSecrets{Client: cs}
	}
	engines := &server.EngineHolder{}
	pc := &server.PolicyController{Client: mgr.GetClient(), Compiler: compiler, Engines: engines, Metrics: m, KeyRefresh: o.KeyRefresh, Budget: o.Budget}
	if err := pc.SetupWithManager(mgr); err != nil {
		return nil, nil, err
	}
	work := []leader.Work{pc.Lead}
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
	var rotator *certs.Rotator
	shared := server.Config{
		Engines:     engines,
		Decoder:     policies.NewDecoder(false),
		Namespaces:  namespaces{mgr.GetClient()},
		Metrics:     m,
		AuditOnly:   o.AuditOnly,
		Timeout:     o.EvaluationTimeout,
		PullSecrets: pullSecrets,
		Tenants:     server.NewTenantGate(o.NamespaceConcurrency),
	}
	// One memory budget for both webhooks: they share the process.
	budget := server.NewBudget(o.ReviewMemory.Value())
	// GetWebhookServer also adds the server to the manager's runnables.
	mgr.GetWebhookServer().Register(ValidatePath, &server.ReviewHandler{Handler: &server.Validator{Config: shared}, Budget: budget, Timeout: o.EvaluationTimeout})
	mgr.GetWebhookServer().Register(MutatePath, &server.ReviewHandler{Handler: &server.Mutator{Config: shared}, Budget: budget, Timeout: o.EvaluationTimeout})
	mgr.GetWebhookServer().Register(PolicyPath, &server.ReviewHandler{Handler: &server.PolicyAdmission{Compiler: compiler, Budget: pc.BudgetFor, ExceptionBudget: pc.ExceptionBudgetFor}, Budget: budget, Timeout: o.EvaluationTimeout})

	if src != nil {
		src.Client = mgr.GetClient()
		if err := src.SetupWithManager(mgr); err != nil {
			return nil, nil, err
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
		rotator = &certs.Rotator{
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Secret: secret,
			DNSNames: names, IPs: ips, ValidatingWebhooks: validating, MutatingWebhooks: mutating,
			Lifetimes: lt, Interval: o.CertCheck,
		}
		src.Changed = rotator.Kick // a damaged or deleted Secret is repaired at once
		work = append(work, rotator.Start)
		if err := mgr.AddReadyzCheck("certificate", src.ReadyCheck); err != nil {
			return nil, nil, err
		}
	}
	// Rules and caBundle repaired at once when a configuration is edited or a CRD comes or goes.
	onWebhookChange := func() {
		if syncer != nil {
			syncer.Forget()
		}
		pc.Rebuild()
		if rotator != nil {
			rotator.Kick()
		}
	}
	if err := intercept.Watch(mgr, o.ValidatingConfig, o.MutatingConfig, onWebhookChange); err != nil {
		return nil, nil, err
	}
	if err := addLeaderWork(mgr, cfg, o, work); err != nil {
		return nil, nil, err
	}
	// Every review reads its namespace from the cache: that informer starts with the manager, not
	// on the first review (which, in an API server outage, would find nothing to read), and a
	// replica is ready only once every informer has synced.
	if _, err := mgr.GetCache().GetInformer(context.Background(), &corev1.Namespace{}, cache.BlockUntilSynced(false)); err != nil {
		return nil, nil, err
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
			return nil, nil, err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, nil, err
	}
	return mgr, src, nil
}

// buildWebhookServer is the webhook server with its certificate: from src (self-managed) or
// from --cert-dir, watched for changes (the watcher is returned to be started).
func buildWebhookServer(o *Options, src *certs.Source) (*server.WebhookServer, *certwatcher.CertWatcher, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	if o.EnableHTTP2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	var watcher *certwatcher.CertWatcher
	if src != nil {
		cfg.GetCertificate = src.GetCertificate
	} else {
		var err error
		watcher, err = certwatcher.New(filepath.Join(o.CertDir, "tls.crt"), filepath.Join(o.CertDir, "tls.key"))
		if err != nil {
			return nil, nil, fmt.Errorf("--cert-dir: %w", err)
		}
		cfg.GetCertificate = watcher.GetCertificate
	}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--client-ca-file=%s: no PEM certificate found", o.ClientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	so := server.DefaultWebhookServerOptions
	so.Host, so.Port, so.TLSConfig = o.WebhookHost, o.WebhookPort, cfg
	so.ReadTimeout, so.ShutdownTimeout, so.LameDuck = o.ReviewReadTimeout, o.ShutdownTimeout, o.LameDuck
	return server.NewWebhookServer(so), watcher, nil
}

// cacheByObject restricts the cache to the objects Portcullis reads by name: the one Secret it
// serves from (not every Secret of the cluster) and its own webhook configurations.
func cacheByObject(o *Options) map[client.Object]cache.ByObject {
	named := func(name string) cache.ByObject {
		return cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", name)}
	}
	m := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Namespaces: map[string]cache.Config{o.Namespace: {FieldSelector: fields.OneTermEqualSelector("metadata.name", o.CertSecret)}}},
	}
	if o.ValidatingConfig != "" {
		m[&admissionregistrationv1.ValidatingWebhookConfiguration{}] = named(o.ValidatingConfig)
	}
	if o.MutatingConfig != "" {
		m[&admissionregistrationv1.MutatingWebhookConfiguration{}] = named(o.MutatingConfig)
	}
	return m
}

// addLeaderWork runs work on the leader only (with --leader-elect) or on this replica.
func addLeaderWork(mgr ctrl.Manager, cfg *rest.Config, o *Options, work []leader.Work) error {
	if !o.LeaderElect {
		for _, w := range work {
			if err := mgr.Add(everyReplica(w)); err != nil {
				return err
			}
		}
		return nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("leader election identity: %w", err)
	}
	return mgr.Add(&leader.Elector{Leases: cs.CoordinationV1(), Namespace: o.Namespace, Name: o.LeaderElectionID,
		ID: host + "_" + string(uuid.NewUUID()), Timings: leader.DefaultTimings, Work: work})
}

// everyReplica is a runnable that runs on every replica, leader or not.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// secretKeys reads verification keys from Secrets, directly from the API server.
type secretKeys struct{ r client.Reader }

func (s secretKeys) PublicKey(ctx context.Context, namespace, name, key string) (string, error) {
	var secret corev1.Secret
	if err := s.r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &secret); err != nil {
		return "", err
	}
	v, ok := secret.Data[key]
	if !ok {
		return "", fmt.Errorf("secret %s/%s has no key %q", namespace, name, key)
	}
	return string(v), nil
}

// namespaces reads namespaces from the manager's cache.
type namespaces struct{ c client.Client }

func (n namespaces) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	var ns corev1.Namespace
	if err := n.c.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
		return nil, err
	}
	return &ns, nil
}
