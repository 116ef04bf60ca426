package audit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/internal/gcpace"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Engines gives the engine in force: the one admission uses.
type Engines interface {
	Load() *policies.Engine
}

// Scanner judges every object the policies match, in the background, and keeps the reports.
type Scanner struct {
	Engines  Engines
	Lister   *Lister
	Discover func() (intercept.Served, error)
	// Tenants bounds the kinds tenants' Policies make the scan list, as for the webhooks.
	Tenants intercept.TenantKinds
	// Namespaces reads Namespace objects, whose labels namespaceSelectors match.
	Namespaces client.Reader
	Store      *Store
	Writer     *Writer
	// Interval is how often everything is judged again (--audit-interval).
	Interval time.Duration
	// ObjectTimeout bounds the judging of one object, image verification included.
	ObjectTimeout time.Duration
	// CPU is the share of one core the scan may take judging objects (--audit-cpu); 0: as
	// much as it gets.
	CPU float64
	// GCPercent is the garbage collector's GOGC while a scan runs (--audit-gogc), when the
	// process's is lower; 0: the process's.
	GCPercent int
	// Owns says which namespaces this scanner judges ("" is the cluster-scoped objects); nil
	// is every one.
	Owns func(namespace string) bool
	// Metadata watches the scanned resources, metadata only, so that a created, changed or
	// deleted object is in its report within seconds, not at the next scan; nil: scans only.
	Metadata metadata.Interface
	// Observer is told of every scan and of the violations after it; nil: nobody.
	Observer Observer
	// Status writes the policies' status.audit; nil: not written.
	Status client.Client
	// Members, when set, shares the audit with the other live replicas, by namespace: this one
	// judges and reports only the namespaces it owns. Owns is then set from it.
	Members *Members
	Log     logr.Logger

	decoder *policies.Decoder
	// results are the last object's results, which the store has copied what it keeps of: the
	// next object's are written over them (Request.Results).
	results []policies.Result
	scans   uint64
	fresh   *freshness
	status  *policyStatus
	// lastScopes are the scopes of the last scan: what the watches follow.
	lastScopes []intercept.Scope
	lastRenew  time.Time
}

// Observer is told what the audit does and finds (the metrics).
type Observer interface {
	// AuditScan is told of each scan, full or partial (the kinds a change affects), when it ends.
	AuditScan(partial bool, d time.Duration)
	// AuditJudged is told of each object judged, in a scan or as a watched change, as it is.
	AuditJudged()
	// AuditScanOutcome says whether a scan succeeded: every resource listed, reports and
	// status written.
	AuditScanOutcome(ok bool)
	// AuditViolationCounts gets, by policy, the counts of failures, warnings and errors.
	AuditViolationCounts(byPolicy map[string]map[string]int)
}

// observe tells the observer of a scan, or of watched changes (d 0), and of the violations now.
func (s *Scanner) observe(partial bool, d time.Duration) {
	if s.Observer == nil {
		return
	}
	if d > 0 {
		s.Observer.AuditScan(partial, d)
	}
	byPolicy := map[string]map[string]int{}
	for p, c := range s.Store.PolicyCounts() {
		for _, o := range []Outcome{Fail, Warn, Error} {
			if c[o] > 0 {
				if byPolicy[p] == nil {
					byPolicy[p] = map[string]int{}
				}
				byPolicy[p][string(o)] = c[o]
			}
		}
	}
	s.Observer.AuditViolationCounts(byPolicy)
}

// statusSpacing is the least time between two status writes for watched changes: a busy
// cluster's changes do not turn into a stream of policy updates.
const statusSpacing = 10 * time.Second

// ScanStats says what one scan did.
type ScanStats struct {
	Partial  bool // only the kinds a change affects
	Objects  int
	Written  int
	Deleted  int
	Duration time.Duration
	// Unlisted names the resources that could not be listed, with why.
	Unlisted []string
}

// Scan judges the objects of every resource the engine's policies match (only those of the
// kinds in only, when only is not nil), then writes the reports that changed. inPlace names the
// reports found in place at start: those the scan finds nothing for are deleted.
func (s *Scanner) Scan(ctx context.Context, engine *policies.Engine, only []policies.KindSelector, inPlace []string) (ScanStats, error) {
	start := time.Now()
	// A scan's garbage (about 29 KiB of every object judged) about doubles the collector's
	// cycles, whose marking runs at admission's priority: on the replica's CPU that was most of
	// what a scan cost admission's p99. With the heap's headroom raised to match, the collector
	// runs about as often as for admission alone; the soft memory limit still bounds the heap.
	defer gcpace.Raise(s.GCPercent)()
	var st ScanStats
	served, err := s.Discover()
	if err != nil && len(served.Resources) == 0 {
		return st, fmt.Errorf("discovering the served resources: %w", err)
	}
	var needs []intercept.Need
	for p := range engine.Policies() {
		needs = append(needs, intercept.NeedOf(p))
	}
	scopes := intercept.Scopes(served, s.Tenants, needs)
	matched := sets.New[schema.GroupVersionResource]()
	for _, sc := range scopes {
		matched.Insert(sc.GroupVersionResource)
	}
	s.scans++
	s.lastScopes = scopes
	scanned := map[schema.GroupVersionResource]Scanned{}
	versions := map[schema.GroupVersionResource]string{}
	namespaces := &NamespaceCache{Reader: s.Namespaces}
	var gks []schema.GroupKind // the kinds judged: their policies' status says when
	for _, sc := range scopes {
		if only != nil && !slices.ContainsFunc(only, func(k policies.KindSelector) bool { return k.Selects(sc.GroupVersionKind().GroupKind()) }) {
			continue
		}
		n, rv, err := s.scanScope(ctx, engine, sc, namespaces)
		st.Objects += n
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			st.Unlisted = append(st.Unlisted, fmt.Sprintf("%s: %v", sc.GroupResource(), err))
			continue
		}
		scanned[sc.GroupVersionResource] = Scanned{Scan: s.scans, Namespaces: sc.Namespaces}
		versions[sc.GroupVersionResource] = rv
		gks = append(gks, sc.GroupVersionKind().GroupKind())
	}
	if s.fresh != nil {
		s.fresh.follow(ctx, scopes, versions, only == nil)
	}
	if only == nil {
		s.Store.Prune(scanned, matched)
	} else {
		s.Store.Prune(scanned, nil)
	}
	st.Written, st.Deleted, err = s.flush(ctx, engine, inPlace)
	st.Duration, st.Partial = time.Since(start), only != nil
	if !st.Partial && len(st.Unlisted) == 0 && err == nil && s.Members != nil {
		s.Members.Scanned(start)
	}
	s.observe(st.Partial, st.Duration)
	if s.status != nil {
		s.status.scannedNow(engine, gks, start)
		err = errors.Join(err, s.status.write(ctx, engine, s.Store.PolicyCounts(), time.Now()))
	}
	return st, err
}

// scanScope judges every object of one scope this scanner owns, a page at a time, and returns
// how many it judged and the resource version of its first list: where a watch takes over.
func (s *Scanner) scanScope(ctx context.Context, engine *policies.Engine, sc intercept.Scope, namespaces *NamespaceCache) (int, string, error) {
	where := []string{""}
	if sc.Namespaces != nil {
		where = sets.List(sc.Namespaces)
	}
	n, first := 0, ""
	pace := newPacer(s.CPU)
	for _, ns := range where {
		if ns != "" && s.Owns != nil && !s.Owns(ns) {
			continue
		}
		rv, err := s.Lister.List(ctx, sc.Resource, ns, func(raw []byte) error {
			start := time.Now()
			judged, err := s.judge(ctx, engine, sc.Resource, raw, namespaces)
			if judged {
				n++
				pace.judged(ctx, time.Since(start))
			}
			// Between two objects, a review waiting for a processor gets this one: the scan
			// holds it for one object (about 0.1 ms), not until the scheduler preempts it. (A
			// review still waiting on the network is found when the pacer next sleeps: within
			// about pacerBurst of work.)
			runtime.Gosched()
			return err
		}, func(d time.Duration) { pace.judged(ctx, d) })
		if err != nil {
			return n, "", err
		}
		if first == "" {
			first = rv
		}
	}
	return n, first, nil
}

// flush writes the reports that changed and deletes those with nothing left to say.
func (s *Scanner) flush(ctx context.Context, engine *policies.Engine, inPlace []string) (written, deleted int, err error) {
	changed, gone := s.Store.Changed()
	current := s.Store.Namespaces()
	for _, ns := range inPlace {
		if !current.Has(ns) && (s.Owns == nil || s.Owns(ns)) && !slices.Contains(gone, ns) {
			gone = append(gone, ns)
		}
	}
	describe := DescriberOf(engine)
	keep := s.Store.kept()
	var errs []error
	for _, c := range changed {
		wrote, err := s.Writer.Write(ctx, Build(c, s.Store.MaxResults, keep, describe))
		if err != nil {
			errs = append(errs, err)
			s.Store.markChanged(c.Namespace) // try again at the next flush
		} else if wrote {
			written++
		}
	}
	for _, ns := range gone {
		if err := s.Writer.Delete(ctx, ns); err != nil {
			errs = append(errs, err)
		} else {
			deleted++
		}
	}
	return written, deleted, errors.Join(errs...)
}
