package app

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/portcullis-dev/portcullis/pkg/audit"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/leader"
	"github.com/portcullis-dev/portcullis/pkg/metrics"
	"github.com/portcullis-dev/portcullis/pkg/source"
)

// AuditOptions are the flags of the background audit.
type AuditOptions struct {
	Enabled    bool
	Interval   time.Duration
	Results    []string
	MaxResults int
	PageSize   int64
	CPU        float64
	// GOGC is the garbage collector's GOGC while a scan runs, unless GOGC is set in the
	// environment.
	GOGC     int
	ScaleOut bool
	// ObjectTimeout bounds the judging of one object.
	ObjectTimeout time.Duration
}

// defaultAuditOptions are the audit's defaults: on, every hour, failures, warnings and errors
// listed, 1,000 results a report, half a core (on its lowered thread, the scan takes it where
// admission leaves it: 100,000 Pods in about 50 s), and GOGC 200 while a scan runs.
func defaultAuditOptions() AuditOptions {
	return AuditOptions{Enabled: true, Interval: time.Hour, Results: []string{"fail", "warn", "error"}, MaxResults: 1000,
		PageSize: audit.DefaultPageSize, ObjectTimeout: 10 * time.Second, CPU: 0.5, GOGC: 200}
}

func (a *AuditOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&a.Enabled, "audit", a.Enabled, "judge the objects that already exist in the background, with the policies in force, and write OpenReports Reports (one per namespace, a ClusterReport for cluster-scoped objects)")
	fs.DurationVar(&a.Interval, "audit-interval", a.Interval, "how often the audit judges every object again; a policy or exception change judges the kinds it affects at once")
	fs.StringSliceVar(&a.Results, "report-results", a.Results, "the results reports list (pass, fail, warn, error, skip); every result is counted in their summary")
	fs.IntVar(&a.MaxResults, "report-max-results", a.MaxResults, "the most results one report lists (its summary counts them all); reports also stay under 1 MiB")
	fs.Float64Var(&a.CPU, "audit-cpu", a.CPU, "the share of one core the audit may spend reading pages and judging objects, so that admission comes first (0: unbounded)")
	fs.IntVar(&a.GOGC, "audit-gogc", a.GOGC, "the garbage collector's GOGC while a scan runs (the process's is Go's 100), so that a scan's garbage does not make the collector run twice as often beside admission; the soft memory limit still bounds the heap (0: the process's; a GOGC set in the environment is kept)")
	fs.BoolVar(&a.ScaleOut, "audit-scale-out", a.ScaleOut, "share the audit between every live replica by namespace (membership from Leases), rather than run it on the leader alone")
	fs.Int64Var(&a.PageSize, "audit-page-size", a.PageSize, "objects read per LIST call; the audit holds two pages at once (the one it judges, and the next, read meanwhile)")
}

func (a *AuditOptions) validate(v *flagErrors) {
	if !a.Enabled {
		return
	}
	if a.Interval < time.Minute {
		v.bad("audit-interval", a.Interval, "must be at least 1m")
	}
	for _, r := range a.Results {
		if !slices.Contains(audit.Outcomes, audit.Outcome(r)) {
			v.bad("report-results", r, "must be among pass, fail, warn, error and skip")
		}
	}
	if a.MaxResults < 1 || a.MaxResults > 10000 {
		v.bad("report-max-results", a.MaxResults, "must be between 1 and 10000")
	}
	if a.CPU < 0 || a.CPU > 64 {
		v.bad("audit-cpu", a.CPU, "must be between 0 (unbounded) and 64 cores")
	}
	if a.GOGC < 0 || a.GOGC > 1000 {
		v.bad("audit-gogc", a.GOGC, "must be between 0 (the process's) and 1000")
	}
	if a.PageSize < 1 || a.PageSize > 5000 {
		v.bad("audit-page-size", a.PageSize, "must be between 1 and 5000")
	}
}

// auditWork is the audit's work: on the leader, and on every replica when it is shared.
type auditWork struct {
	leader       []leader.Work
	everyReplica []everyReplica
}

// buildAudit is the background audit: its scanner on the leader, or, with --audit-scale-out, on
// every replica, each judging its share of the namespaces, while the leader sums the reports
// into the policies' status. Nothing when --audit=false.
func buildAudit(mgr ctrl.Manager, cfg *rest.Config, o *Options, engines *source.EngineHolder, m *metrics.Metrics) (auditWork, error) {
	a := o.Audit
	if !a.Enabled {
		return auditWork{}, nil
	}
	s, err := buildScanner(mgr, cfg, o, engines, m)
	if err != nil {
		return auditWork{}, err
	}
	if !a.ScaleOut {
		return auditWork{leader: []leader.Work{s.Run}}, nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return auditWork{}, err
	}
	id, err := identity()
	if err != nil {
		return auditWork{}, err
	}
	s.Members = &audit.Members{Leases: cs.CoordinationV1(), Namespace: o.Namespace, Identity: id, Duration: 15 * time.Second}
	sum := &audit.StatusFromReports{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Engines: engines, Members: s.Members,
		Interval: 15 * time.Second, Log: ctrl.Log.WithName("audit")}
	return auditWork{leader: []leader.Work{sum.Run}, everyReplica: []everyReplica{s.Run}}, nil
}

// scanGOGC is the GOGC scans run with: none of their own when GOGC is set in the environment.
func scanGOGC(flag int) int {
	if operatorGOGC() {
		return 0
	}
	return flag
}

// operatorGOGC reports whether GOGC is set in the environment: the operator paces the collector,
// and neither the audit's scans nor the pacer (--gc-cycle-interval) raise it.
func operatorGOGC() bool { return os.Getenv("GOGC") != "" }

// pagesConfig is the configuration of the client that reads the scan's LIST pages.
func pagesConfig(cfg *rest.Config) *rest.Config {
	rc := rest.CopyConfig(cfg)
	rc.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	// The scan's pages are read in the cluster: gzip would cost the API server to compress
	// each and this replica, which admission shares, to decompress it (a tenth of the scan's CPU).
	rc.DisableCompression = true
	// Over HTTP/1.1, on a connection of its own: a page's bytes are then read and decrypted by
	// the goroutine that reads its body, on the scan's lowered thread (Lister.Lowered). Over
	// HTTP/2 the connection's read loop, a goroutine of normal priority, decrypts every frame,
	// so the pages' TLS work (megabytes a second) took the replica's CPU from admission at
	// admission's priority, and the pages shared the informers' connection.
	rc.NextProtos = []string{"http/1.1"}
	return rc
}

// buildScanner is the audit's scanner.
func buildScanner(mgr ctrl.Manager, cfg *rest.Config, o *Options, engines *source.EngineHolder, m *metrics.Metrics) (*audit.Scanner, error) {
	a := o.Audit
	raw, err := rest.UnversionedRESTClientFor(pagesConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	cached := memory.NewMemCacheClient(disco)
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	keep := sets.New[audit.Outcome]()
	for _, r := range a.Results {
		keep.Insert(audit.Outcome(r))
	}
	s := &audit.Scanner{
		Engines: engines,
		Lister:  &audit.Lister{Client: raw, PageSize: a.PageSize, Lowered: true},
		Discover: func() (intercept.Served, error) {
			cached.Invalidate() // once per scan: CRDs come and go
			return intercept.Discover(cached)()
		},
		Tenants:       o.tenantKinds(),
		Namespaces:    mgr.GetCache(),
		Store:         audit.NewStore(keep, a.MaxResults, nil),
		Writer:        &audit.Writer{Client: mgr.GetClient(), Reader: mgr.GetAPIReader()},
		Interval:      a.Interval,
		ObjectTimeout: a.ObjectTimeout,
		CPU:           a.CPU,
		GCPercent:     scanGOGC(a.GOGC),
		Metadata:      meta,
		Observer:      m,
		Status:        mgr.GetClient(),
		Log:           ctrl.Log.WithName("audit"),
	}
	return s, nil
}
