package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
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
	scans   uint64
	fresh   *freshness
	status  *policyStatus
	// lastScopes are the scopes of the last scan: what the watches follow.
	lastScopes []intercept.Scope
	lastRenew  time.Time
}

// Observer is told what the audit does and finds (the metrics).
type Observer interface {
	AuditScan(partial bool, d time.Duration, objects int)
	// AuditViolationCounts gets, by policy, the counts of failures, warnings and errors.
	AuditViolationCounts(byPolicy map[string]map[string]int)
}

// observe tells the observer of a scan, or of watched changes (d 0), and of the violations now.
func (s *Scanner) observe(partial bool, d time.Duration, objects int) {
	if s.Observer == nil {
		return
	}
	if d > 0 {
		s.Observer.AuditScan(partial, d, objects)
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

// Run scans at start, again for the kinds a policy change affects, and everything every
// Interval, until ctx ends. It is leader work: it returns when ctx ends.
func (s *Scanner) Run(ctx context.Context) error {
	s.decoder = policies.NewDecoder(false)
	if s.Observer != nil {
		// A replica that no longer leads has nothing to say of the violations: the leader does.
		defer s.Observer.AuditViolationCounts(nil)
	}
	inPlace, err := s.Writer.Load(ctx)
	if err != nil {
		return err
	}
	if s.Members != nil {
		s.Owns = s.Members.Owns
		if err := s.Members.Renew(ctx); err != nil {
			return err
		}
		if _, err := s.Members.Refresh(ctx); err != nil {
			return err
		}
		defer s.Members.Leave(context.WithoutCancel(ctx))
	}
	var engine *policies.Engine
	for engine == nil {
		if engine = s.Engines.Load(); engine == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	if s.Status != nil && s.Members == nil { // shared: the leader sums the reports (StatusFromReports)
		s.status = &policyStatus{client: s.Status, scanned: map[string]time.Time{}, written: map[string]v1alpha1.AuditStatus{}}
	}
	if s.Metadata != nil {
		s.fresh = &freshness{client: s.Metadata, s: s, watches: map[schema.GroupVersionResource]*resourceWatch{},
			pending: map[pendingKey]intercept.Scope{}, rescan: map[schema.GroupVersionResource]bool{}}
	}
	s.logScan(s.Scan(ctx, engine, nil, inPlace))
	full := time.NewTicker(s.Interval)
	defer full.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-full.C:
			engine = s.Engines.Load()
			s.logScan(s.Scan(ctx, engine, nil, nil))
		case <-poll.C:
			if s.membersChanged(ctx) {
				engine = s.Engines.Load()
				s.logScan(s.Scan(ctx, engine, nil, nil))
				continue
			}
			if next := s.Engines.Load(); next != engine {
				only := affected(engine, next)
				engine = next
				if only == nil || len(only) > 0 { // a rebuild that changed no policy scans nothing
					s.logScan(s.Scan(ctx, engine, only, nil))
				}
			}
			s.keepFresh(ctx, engine)
		}
	}
}

// membersChanged renews this replica's membership every few seconds and reports whether the
// live members changed: namespaces then move, and a full scan judges what this one now owns,
// the store having forgotten what it no longer does.
func (s *Scanner) membersChanged(ctx context.Context) bool {
	if s.Members == nil || time.Since(s.lastRenew) < s.Members.Duration/3 {
		return false
	}
	s.lastRenew = time.Now()
	if err := s.Members.Renew(ctx); err != nil {
		s.Log.Error(err, "audit")
	}
	changed, err := s.Members.Refresh(ctx)
	if err != nil {
		s.Log.Error(err, "audit")
		return false
	}
	if changed {
		s.Log.Info("audit members changed: the namespaces are shared again", "members", s.Members.Live())
		s.Store.Forget(s.Members.Owns)
	}
	return changed
}

// keepFresh judges the objects the watches saw change, scans again the resources whose watch
// lost events, and writes the reports that changed.
func (s *Scanner) keepFresh(ctx context.Context, engine *policies.Engine) {
	if s.fresh == nil {
		return
	}
	pending, rescan := s.fresh.take()
	if len(rescan) > 0 {
		kinds := make([]policies.KindSelector, 0, len(rescan))
		for _, gvr := range rescan {
			for _, sc := range s.lastScopes {
				if sc.GroupVersionResource == gvr {
					kinds = append(kinds, policies.KindSelector{GroupKind: sc.GroupVersionKind().GroupKind()})
				}
			}
		}
		s.logScan(s.Scan(ctx, engine, kinds, nil))
	}
	if len(pending) == 0 {
		return
	}
	s.refresh(ctx, pending)
	if _, _, err := s.flush(ctx, engine, nil); err != nil {
		s.Log.Error(err, "audit: writing reports")
	}
	s.observe(true, 0, 0)
	if s.status != nil && time.Since(s.status.last) >= statusSpacing {
		if err := s.status.write(ctx, engine, s.Store.PolicyCounts(), time.Now()); err != nil {
			s.Log.Error(err, "audit: writing policy status")
		}
	}
}

func (s *Scanner) logScan(st ScanStats, err error) {
	if err != nil {
		s.Log.Error(err, "audit scan")
		return
	}
	scan := "full"
	if st.Partial {
		scan = "partial"
	}
	s.Log.Info("audit scan done", "scan", scan, "objects", st.Objects, "reportsWritten", st.Written, "reportsDeleted", st.Deleted,
		"duration", st.Duration.Round(time.Millisecond).String(), "unlisted", st.Unlisted)
}

// affected returns the kinds a change from old to next may judge differently: those matched by
// a policy that came, went or changed; nil (every kind) when an exception changed.
func affected(old, next *policies.Engine) []policies.KindSelector {
	if old == nil || !old.SameExceptions(next) {
		return nil
	}
	before := map[*policies.CompiledPolicy]bool{}
	for p := range old.Policies() {
		before[p] = true
	}
	var kinds []policies.KindSelector
	for p := range next.Policies() {
		if !before[p] {
			kinds = append(kinds, p.Interception().Kinds...)
		}
		delete(before, p)
	}
	for p := range before {
		kinds = append(kinds, p.Interception().Kinds...)
	}
	if kinds == nil {
		kinds = []policies.KindSelector{} // nothing changed that a scan would see
	}
	return kinds
}

// Scan judges the objects of every resource the engine's policies match (only those of the
// kinds in only, when only is not nil), then writes the reports that changed. inPlace names the
// reports found in place at start: those the scan finds nothing for are deleted.
func (s *Scanner) Scan(ctx context.Context, engine *policies.Engine, only []policies.KindSelector, inPlace []string) (ScanStats, error) {
	start := time.Now()
	var st ScanStats
	if s.decoder == nil {
		s.decoder = policies.NewDecoder(false)
	}
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
	namespaces := map[string]*corev1.Namespace{}
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
	s.observe(only != nil, st.Duration, st.Objects)
	if s.status != nil {
		var gks []schema.GroupKind
		for gvr := range scanned {
			if i := slices.IndexFunc(scopes, func(sc intercept.Scope) bool { return sc.GroupVersionResource == gvr }); i >= 0 {
				gks = append(gks, scopes[i].GroupVersionKind().GroupKind())
			}
		}
		s.status.scannedNow(engine, gks, start)
		err = errors.Join(err, s.status.write(ctx, engine, s.Store.PolicyCounts(), time.Now()))
	}
	return st, err
}

// scanScope judges every object of one scope this scanner owns, a page at a time, and returns
// how many it judged and the resource version of its first list: where a watch takes over.
func (s *Scanner) scanScope(ctx context.Context, engine *policies.Engine, sc intercept.Scope, namespaces map[string]*corev1.Namespace) (int, string, error) {
	where := []string{""}
	if sc.Namespaces != nil {
		where = sets.List(sc.Namespaces)
	}
	gvk := sc.GroupVersionKind()
	n, first := 0, ""
	pace := newPacer(s.CPU)
	for _, ns := range where {
		if ns != "" && s.Owns != nil && !s.Owns(ns) {
			continue
		}
		rv, err := s.Lister.List(ctx, sc.Resource, ns, func(raw []byte) error {
			start := time.Now()
			judged, err := s.judge(ctx, engine, sc.Resource, gvk, raw, namespaces)
			if judged {
				n++
				pace.judged(ctx, time.Since(start))
			}
			return err
		})
		if err != nil {
			return n, "", err
		}
		if first == "" {
			first = rv
		}
	}
	return n, first, nil
}

// judge judges one object and records its results. An object that cannot be decoded is logged
// and left out: it says nothing of the policies.
func (s *Scanner) judge(ctx context.Context, engine *policies.Engine, r intercept.Resource, gvk schema.GroupVersionKind, raw []byte, namespaces map[string]*corev1.Namespace) (bool, error) {
	if s.decoder == nil {
		s.decoder = policies.NewDecoder(false)
	}
	objCtx, cancel := context.WithTimeout(ctx, s.ObjectTimeout)
	defer cancel()
	res, results, err := Judge(objCtx, engine, s.decoder, r, raw, func(ns string) (*corev1.Namespace, bool) {
		if s.Owns != nil && !s.Owns(ns) {
			return nil, false
		}
		return s.namespace(objCtx, ns, namespaces), true
	})
	switch {
	case ctx.Err() != nil:
		return false, ctx.Err()
	case err != nil:
		s.Log.Error(err, "audit: an object that cannot be judged is left out", "resource", r.GroupResource().String())
		return false, nil
	case res == nil:
		return false, nil // not this scanner's
	}
	ref := corev1.ObjectReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Namespace: res.Meta.GetNamespace(), Name: res.Meta.GetName(), UID: res.Meta.GetUID()}
	s.Store.Put(r.GroupVersionResource, ref, fingerprint(res.Meta), s.scans, results)
	return true, nil
}

// Judge decodes one object of r as a LIST or GET returned it and runs it through the engine as
// the audit does: a CREATE of it, in the background (Engine.Admit with Request.Background).
// namespace gives the object's Namespace, whose labels selectors match, and says whether to
// judge it at all; a nil resource is returned for one it says not to.
func Judge(ctx context.Context, engine *policies.Engine, d *policies.Decoder, r intercept.Resource, raw []byte,
	namespace func(string) (*corev1.Namespace, bool)) (*policies.Resource, []policies.Result, error) {
	gvk := r.GroupVersionKind()
	if _, err := policies.TypeMeta(raw); err != nil {
		raw = withTypeMeta(raw, gvk) // list items of built-in kinds have no apiVersion and kind
	}
	res, err := d.Decode(raw, &gvk)
	if err != nil {
		return nil, nil, err
	}
	ns, judge := namespace(res.Meta.GetNamespace())
	if !judge {
		return nil, nil, nil
	}
	req := &policies.Request{Operation: v1alpha1.Create, Object: res, Namespace: ns, Background: true,
		Resource: metav1.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}}
	adm, err := engine.Admit(ctx, req, raw, d)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", res.Ref(), err)
	}
	return res, adm.Results, nil
}

// namespace returns Namespace ns, read once per scan; nil for cluster-scoped objects, or when it
// cannot be read (its labels are then taken to be its name label alone, as offline).
func (s *Scanner) namespace(ctx context.Context, ns string, cache map[string]*corev1.Namespace) *corev1.Namespace {
	if ns == "" || s.Namespaces == nil {
		return nil
	}
	if obj, ok := cache[ns]; ok {
		return obj
	}
	obj := &corev1.Namespace{}
	if err := s.Namespaces.Get(ctx, types.NamespacedName{Name: ns}, obj); err != nil {
		obj = nil
	}
	cache[ns] = obj
	return obj
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

// withTypeMeta puts apiVersion and kind at the start of an object's JSON.
func withTypeMeta(raw []byte, gvk schema.GroupVersionKind) []byte {
	if len(raw) < 2 || raw[0] != '{' {
		return raw
	}
	head := fmt.Sprintf(`{"apiVersion":%q,"kind":%q`, gvk.GroupVersion().String(), gvk.Kind)
	out := make([]byte, 0, len(head)+len(raw)+1)
	out = append(out, head...)
	if raw[1] != '}' {
		out = append(out, ',')
	}
	return append(out, raw[1:]...)
}
