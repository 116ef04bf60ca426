package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/version"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/portcullis-dev/portcullis/certs"
	"github.com/portcullis-dev/portcullis/internal/exepages"
	"github.com/portcullis-dev/portcullis/internal/gcpace"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/leader"
	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/server"
	"github.com/portcullis-dev/portcullis/pkg/source"
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
	// The standard logger is the verification libraries': cosign's warnings quote what a
	// signature carries (certificate names, a registry's words), which never reaches a log line
	// (docs/security.md). Nothing of ours writes to it.
	log.SetOutput(io.Discard)
	build := version.Get()
	ctrl.Log.Info("starting portcullis webhook", "version", build.Version, "commit", build.Commit, "go", build.GoVersion)
	if limit := setMemoryLimit(o.MemoryLimitRatio, cgroupMemoryLimitFiles); limit > 0 {
		ctrl.Log.Info("Go memory limit set from the container's", "bytes", limit, "ratio", o.MemoryLimitRatio)
	}
	if before, after := ensureProcessors(o.Audit.Enabled); after != before {
		ctrl.Log.Info("GOMAXPROCS raised for the audit: a scan runs on a processor of its own, at the lowest priority", "from", before, "to", after)
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
	if cfg.QPS == 0 {
		// As in the cluster (ctrl.GetConfig): no client-side rate limit, the API server's
		// priority and fairness decides. client-go's default, 5 requests a second, held the
		// audit's scan to 5 pages (2,500 objects) a second out of the cluster alone.
		cfg.QPS = -1
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
	var src *certs.Source
	if o.CertDir == "" {
		src = &certs.Source{Secret: types.NamespacedName{Namespace: o.Namespace, Name: o.CertSecret}}
	}
	whServer, watcher, err := buildWebhookServer(o, src)
	if err != nil {
		return nil, nil, err
	}
	mgr, err := buildManager(cfg, o, whServer)
	if err != nil {
		return nil, nil, err
	}
	if watcher != nil {
		if err := mgr.Add(everyReplica(watcher.Start)); err != nil {
			return nil, nil, err
		}
	}
	m := metrics.New(reg)
	metrics.WatchCertificate(reg, whServer.Options.TLSConfig.GetCertificate)
	metrics.WatchConnections(reg, whServer.Connections)
	compiler, refresher, err := buildCompiler(o, m, mgr.GetAPIReader())
	if err != nil {
		return nil, nil, err
	}
	if refresher != nil {
		// Every replica refreshes its own root: admission never waits for it, and the embedded
		// root is in force until the first refresh succeeds.
		if err := mgr.Add(everyReplica(refresher.Start)); err != nil {
			return nil, nil, err
		}
	}
	engines := &source.EngineHolder{}
	pc, syncer, err := buildPolicySource(mgr, cfg, o, compiler, engines, m)
	if err != nil {
		return nil, nil, err
	}
	if err := registerWebhooks(mgr, cfg, o, compiler, engines, m, pc); err != nil {
		return nil, nil, err
	}
	rotator, err := buildCertificates(mgr, o, src)
	if err != nil {
		return nil, nil, err
	}
	work := []leader.Work{pc.Lead}
	if rotator != nil {
		work = append(work, rotator.Start)
	}
	aw, err := buildAudit(mgr, cfg, o, engines, m)
	if err != nil {
		return nil, nil, err
	}
	work = append(work, aw.leader...)
	for _, w := range aw.everyReplica {
		if err := mgr.Add(w); err != nil {
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
	if err := addHealthChecks(mgr, engines, whServer); err != nil {
		return nil, nil, err
	}
	if o.PageRelease > 0 {
		release := func(ctx context.Context) error { return releasePages(ctx, mgr.GetCache(), engines, o.PageRelease) }
		if err := mgr.Add(everyReplica(release)); err != nil {
			return nil, nil, err
		}
	}
	if pacer := gcPacer(o.GCCycleInterval); pacer != nil {
		pace := func(ctx context.Context) error {
			if !pacer.Run(ctx) {
				ctrl.Log.Info("the Go runtime does not give the allocation figures --gc-cycle-interval reads: Go's pacing alone")
			}
			return nil
		}
		if err := mgr.Add(everyReplica(pace)); err != nil {
			return nil, nil, err
		}
	}
	return mgr, src, nil
}

// gcPacer is the garbage collector's pacer (internal/gcpace) for --gc-cycle-interval; nil when it
// is 0, or when GOGC is set in the environment: the operator paces the collector.
func gcPacer(interval time.Duration) *gcpace.Pacer {
	if interval <= 0 || operatorGOGC() {
		return nil
	}
	log := ctrl.Log.WithName("gcpace").V(1)
	return &gcpace.Pacer{Interval: interval, Changed: func(percent int) {
		log.Info("GOGC paced to the allocation rate (0: the process's own)", "percent", percent)
	}}
}

// releasePages waits until the server is ready to admit (its informers synced, the policies
// compiled once), then unmaps the pages of the binary the process has mapped
// (internal/exepages), and again every interval: starting maps about 36 MiB of code and
// tables, compiling policies, renewing certificates or an audit scan more, where serving uses a
// few. It logs what the first release did, the others' at verbosity 1; a failure is logged, never
// fatal.
func releasePages(ctx context.Context, c cache.Cache, engines *source.EngineHolder, interval time.Duration) error {
	if !c.WaitForCacheSync(ctx) {
		return nil
	}
	log := ctrl.Log.WithName("exepages")
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for engines.Load() == nil {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	tick.Reset(interval)
	for first := true; ; first = false {
		st, err := exepages.Release()
		if err != nil {
			log.Error(err, "could not give back the binary's pages (--binary-page-release-interval)")
			return nil
		}
		l := log
		if !first {
			l = log.V(1)
		}
		l.Info("gave back the binary's pages", "residentBefore", st.Before, "residentAfter", st.After,
			"mappings", st.Mappings, "skippedModified", st.Skipped)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
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
	so.MaxConnections = o.MaxConnections
	return server.NewWebhookServer(so), watcher, nil
}

// cacheByObject restricts the cache to the objects Portcullis reads by name: the one Secret it
// serves from (not every Secret of the cluster) and its own webhook configurations. Namespaces
// are read by every review and never written: the cache hands out its own, not a deep copy
// each time (a Namespace's annotations and managed fields can be kilobytes);
// TestEvaluateLeavesTheNamespaceAsItWas holds the engine to reading it only.
func cacheByObject(o *Options) map[client.Object]cache.ByObject {
	named := func(name string) cache.ByObject {
		return cache.ByObject{Field: fields.OneTermEqualSelector("metadata.name", name)}
	}
	m := map[client.Object]cache.ByObject{
		&corev1.Secret{}:    {Namespaces: map[string]cache.Config{o.Namespace: {FieldSelector: fields.OneTermEqualSelector("metadata.name", o.CertSecret)}}},
		&corev1.Namespace{}: {UnsafeDisableDeepCopy: ptr.To(true)},
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
	id, err := identity()
	if err != nil {
		return err
	}
	return mgr.Add(&leader.Elector{Leases: cs.CoordinationV1(), Namespace: o.Namespace, Name: o.LeaderElectionID,
		ID: id, Timings: leader.DefaultTimings, Work: work})
}

// identity names this replica among the others: its host name and a random suffix.
func identity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("this replica's identity: %w", err)
	}
	return host + "_" + string(uuid.NewUUID()), nil
}

// everyReplica is a runnable that runs on every replica, leader or not.
type everyReplica func(ctx context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// secretKeys reads verification keys from Secrets and trusted roots from ConfigMaps, directly
// from the API server.
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

// ConfigMapKey reads a trusted root from a ConfigMap, directly from the API server.
func (s secretKeys) ConfigMapKey(ctx context.Context, namespace, name, key string) (string, error) {
	var cm corev1.ConfigMap
	if err := s.r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &cm); err != nil {
		return "", err
	}
	v, ok := cm.Data[key]
	if !ok {
		return "", fmt.Errorf("configmap %s/%s has no key %q", namespace, name, key)
	}
	return v, nil
}

// namespaces reads namespaces from the manager's cache, for every review: once the informer has
// synced, from its store, as they are (the cache's client would look the informer up by the
// object's kind and copy the object out, about 5 µs a review); until then through the client,
// which waits for the sync. The cache hands out its own objects either way (cacheByObject).
type namespaces struct {
	c        client.Client
	informer toolscache.SharedIndexInformer // nil: through the client only
}

// newNamespaces gets the cache's Namespace informer, which the manager starts with the cache.
func newNamespaces(mgr ctrl.Manager) (namespaces, error) {
	inf, err := mgr.GetCache().GetInformer(context.Background(), &corev1.Namespace{}) // not started yet: does not wait
	if err != nil {
		return namespaces{}, err
	}
	n := namespaces{c: mgr.GetClient()}
	n.informer, _ = inf.(toolscache.SharedIndexInformer)
	return n, nil
}

func (n namespaces) GetNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	if n.informer != nil && n.informer.HasSynced() {
		obj, ok, err := n.informer.GetIndexer().GetByKey(name)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			return nil, apierrors.NewNotFound(corev1.Resource("namespaces"), name)
		}
		if ns, ok := obj.(*corev1.Namespace); ok {
			return ns, nil
		}
	}
	var ns corev1.Namespace
	if err := n.c.Get(ctx, types.NamespacedName{Name: name}, &ns); err != nil {
		return nil, err
	}
	return &ns, nil
}
