package audit

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Outcome is a result as reports count it: pass, fail, warn (a failure whose action is Warn),
// error or skip.
type Outcome string

// The outcomes, as OpenReports names them.
const (
	Pass  Outcome = "pass"
	Fail  Outcome = "fail"
	Warn  Outcome = "warn"
	Error Outcome = "error"
	Skip  Outcome = "skip"
)

// Outcomes are every outcome, in the order reports list them.
var Outcomes = []Outcome{Pass, Fail, Warn, Error, Skip}

// outcomeOf is how a report counts an engine result: a failure whose action is Warn is a warn.
func outcomeOf(r *policies.Result) Outcome {
	switch r.Result {
	case policies.Fail:
		if r.Action == v1alpha1.Warn {
			return Warn
		}
		return Fail
	case policies.Error:
		return Error
	case policies.Skip:
		return Skip
	}
	return Pass
}

// Counts are results counted by outcome.
type Counts map[Outcome]int

func (c Counts) add(o Counts) {
	for k, v := range o {
		c[k] += v
	}
}

// listed is one result a report lists.
type listed struct {
	policy, rule string
	outcome      Outcome
	action       v1alpha1.Enforcement
	message      string // interned: the same message of many objects is held once
	since        int64  // when this result was first seen, in Unix seconds
}

// sameFinding: the same policy, rule and outcome, whatever the message says now.
func (l listed) sameFinding(o listed) bool {
	return l.policy == o.policy && l.rule == o.rule && l.outcome == o.outcome
}

// entry is what the store keeps of one object: never the object, only its reference, its counts
// and the results its report lists.
type entry struct {
	kind *kindOf // shared by every object of its resource
	name string
	uid  types.UID
	scan uint64 // the scan that judged it last
	// fingerprint digests the metadata it was judged with (see fingerprint): a watch event
	// that leaves it as it was is a status update, not judged again.
	fingerprint uint64
	listed      []listed
	omitted     int // results not kept, the namespace's report being full
	// byPolicy counts the results by policy and outcome: the report's summary, the policies'
	// status and the metrics add them up. (A slice of a few small structs, not a map: the
	// store holds one entry per object.)
	byPolicy []policyCount
}

// kindOf is a resource and its objects' apiVersion and kind, held once for all its objects.
type kindOf struct {
	resource         schema.GroupVersionResource
	apiVersion, kind string
}

// ref is the object reference a report gives e, in namespace ns.
func (e *entry) ref(ns string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: e.kind.apiVersion, Kind: e.kind.kind, Namespace: ns, Name: e.name, UID: e.uid}
}

// policyCount counts one policy's results of one outcome on one object.
type policyCount struct {
	policy  string
	outcome Outcome
	n       int32
}

// namespaceState is one report's content: a namespace's objects, or the cluster-scoped ones
// under "".
type namespaceState struct {
	objects map[types.UID]*entry
	kept    int // results kept for listing, over every object: at most the store's cap
	omitted int // results not kept
	changed bool
}

// Store holds what the scans found, by namespace, for the reports. It keeps, per report, at most
// MaxResults results for listing, so its memory is bounded by the number of objects, not by
// what the policies find.
type Store struct {
	// Keep says which outcomes reports list (--report-results); every outcome is counted.
	Keep sets.Set[Outcome]
	// MaxResults is the most results a report lists (--report-max-results).
	MaxResults int
	now        func() time.Time

	mu         sync.Mutex
	namespaces map[string]*namespaceState
	// seed holds when the findings of the reports in place were first seen, read at start, so
	// that the first scan writes the same timestamps and leaves unchanged reports alone.
	seed map[Finding]int64
	// kinds holds each resource's kindOf, shared by its entries.
	kinds map[schema.GroupVersionResource]*kindOf
}

// kindOf returns the shared kindOf of resource, whose objects ref names.
func (s *Store) kindOf(resource schema.GroupVersionResource, ref corev1.ObjectReference) *kindOf {
	if k := s.kinds[resource]; k != nil {
		return k
	}
	k := &kindOf{resource: resource, apiVersion: ref.APIVersion, kind: ref.Kind}
	s.kinds[resource] = k
	return k
}

// Finding identifies a listed result across scans and restarts.
type Finding struct {
	UID          types.UID
	Policy, Rule string
	Outcome      Outcome
}

// Seed tells the store when findings were first seen (Unix seconds), from the reports in place;
// nil forgets what is left of the seed.
func (s *Store) Seed(seen map[Finding]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seen == nil {
		s.seed = nil
		return
	}
	if s.seed == nil {
		s.seed = map[Finding]int64{}
	}
	maps.Copy(s.seed, seen)
}

// NewStore returns an empty store.
func NewStore(keep sets.Set[Outcome], maxResults int, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{Keep: keep, MaxResults: maxResults, now: now, namespaces: map[string]*namespaceState{},
		kinds: map[schema.GroupVersionResource]*kindOf{}}
}

// Put records the results of one object, judged by scan, in place of what was known of it;
// an object no policy matches is forgotten.
func (s *Store) Put(resource schema.GroupVersionResource, ref corev1.ObjectReference, fp uint64, scan uint64, results []policies.Result) {
	if len(results) == 0 {
		s.Remove(ref.Namespace, ref.UID) // no policy matches it any more
		return
	}
	e := &entry{name: ref.Name, uid: ref.UID, fingerprint: fp, scan: scan}
	now := s.now().Unix()
	for i := range results {
		r := &results[i]
		o := outcomeOf(r)
		if j := slices.IndexFunc(e.byPolicy, func(v policyCount) bool { return v.policy == r.Policy && v.outcome == o }); j >= 0 {
			e.byPolicy[j].n++
		} else {
			e.byPolicy = append(e.byPolicy, policyCount{policy: r.Policy, outcome: o, n: 1}) // the engine's own string
		}
		if s.Keep.Has(o) {
			e.listed = append(e.listed, listed{policy: r.Policy, rule: r.Rule, outcome: o, action: r.Action,
				message: unique.Make(r.Message).Value(), since: now})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.kind = s.kindOf(resource, ref)
	ns := s.namespace(ref.Namespace)
	old := ns.objects[ref.UID]
	if old != nil {
		ns.drop(old)
		for i := range e.listed {
			if j := slices.IndexFunc(old.listed, e.listed[i].sameFinding); j >= 0 {
				e.listed[i].since = old.listed[j].since
			}
		}
	} else if s.seed != nil {
		for i := range e.listed {
			l := &e.listed[i]
			if t, ok := s.seed[Finding{UID: ref.UID, Policy: l.policy, Rule: l.rule, Outcome: l.outcome}]; ok {
				l.since = t
			}
		}
	}
	if room := s.MaxResults - ns.kept; len(e.listed) > room {
		e.omitted = len(e.listed) - max(room, 0)
		e.listed = e.listed[:max(room, 0)]
	}
	ns.kept += len(e.listed)
	ns.omitted += e.omitted
	ns.objects[ref.UID] = e
	ns.changed = ns.changed || old == nil || !sameEntry(old, e)
}

// Fingerprint returns the metadata fingerprint an object was last judged with.
func (s *Store) Fingerprint(namespace string, uid types.UID) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.namespaces[namespace]; ns != nil {
		if e := ns.objects[uid]; e != nil {
			return e.fingerprint, true
		}
	}
	return 0, false
}

// Remove forgets an object: it was deleted.
func (s *Store) Remove(namespace string, uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.namespaces[namespace]
	if ns == nil || ns.objects[uid] == nil {
		return
	}
	ns.drop(ns.objects[uid])
	delete(ns.objects, uid)
	ns.changed = true
}

// Scanned is what one scan of a resource covered: the scan, and the namespaces it listed (nil:
// every namespace).
type Scanned struct {
	Scan       uint64
	Namespaces sets.Set[string]
}

// Prune forgets what the scans show to be gone: objects of a scanned resource that its scan did
// not see (deleted), or in a namespace it no longer covers. With matched, objects of any
// resource not in it are forgotten too: no policy matches them any more.
func (s *Store) Prune(scanned map[schema.GroupVersionResource]Scanned, matched sets.Set[schema.GroupVersionResource]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ns := range s.namespaces {
		for uid, e := range ns.objects {
			sc, ok := scanned[e.kind.resource]
			gone := ok && (e.scan < sc.Scan || (sc.Namespaces != nil && !sc.Namespaces.Has(name)))
			if gone || (matched != nil && !matched.Has(e.kind.resource)) {
				ns.drop(e)
				delete(ns.objects, uid)
				ns.changed = true
			}
		}
	}
}

// drop takes e's results out of the namespace's totals.
func (ns *namespaceState) drop(e *entry) {
	ns.kept -= len(e.listed)
	ns.omitted -= e.omitted
}

func (s *Store) namespace(name string) *namespaceState {
	ns := s.namespaces[name]
	if ns == nil {
		ns = &namespaceState{objects: map[types.UID]*entry{}}
		s.namespaces[name] = ns
	}
	return ns
}

// sameEntry: what a report shows of the two is the same.
func sameEntry(a, b *entry) bool {
	return a.kind == b.kind && a.name == b.name && a.uid == b.uid && a.omitted == b.omitted &&
		slices.Equal(a.byPolicy, b.byPolicy) && slices.Equal(a.listed, b.listed)
}

// Content is what one report shows: a snapshot, safe to use while the store changes.
type Content struct {
	Namespace string
	Summary   Counts
	// ByPolicy counts the results by policy, as the summary counts them all.
	ByPolicy map[string]Counts
	Results  []Result
	// Omitted counts the results the report does not list, being full.
	Omitted int
}

// Result is one listed result, with the object it is about.
type Result struct {
	Object  corev1.ObjectReference
	Policy  string
	Rule    string
	Outcome Outcome
	Action  v1alpha1.Enforcement
	Message string
	Since   time.Time
}

// Changed returns the content of every report that changed since the last call, and the names
// of the namespaces whose report should go: they have no object left.
func (s *Store) Changed() (changed []Content, gone []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ns := range s.namespaces {
		if !ns.changed {
			continue
		}
		ns.changed = false
		if len(ns.objects) == 0 {
			delete(s.namespaces, name)
			gone = append(gone, name)
			continue
		}
		changed = append(changed, ns.content(name))
	}
	slices.SortFunc(changed, func(a, b Content) int { return cmp.Compare(a.Namespace, b.Namespace) })
	slices.Sort(gone)
	return changed, gone
}

// Namespaces returns the names of the namespaces the store has reports for.
func (s *Store) Namespaces() sets.Set[string] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sets.KeySet(s.namespaces)
}

// MarkAll marks every report changed, so the next Changed returns them all.
func (s *Store) MarkAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ns := range s.namespaces {
		ns.changed = true
	}
}

func (ns *namespaceState) content(name string) Content {
	c := Content{Namespace: name, Summary: Counts{}, ByPolicy: map[string]Counts{}, Omitted: ns.omitted}
	for _, e := range ns.objects {
		for _, v := range e.byPolicy {
			c.Summary[v.outcome] += int(v.n)
			if c.ByPolicy[v.policy] == nil {
				c.ByPolicy[v.policy] = Counts{}
			}
			c.ByPolicy[v.policy][v.outcome] += int(v.n)
		}
		for _, l := range e.listed {
			c.Results = append(c.Results, Result{Object: e.ref(name), Policy: l.policy, Rule: l.rule, Outcome: l.outcome,
				Action: l.action, Message: l.message, Since: time.Unix(l.since, 0).UTC()})
		}
	}
	slices.SortFunc(c.Results, compareResults)
	return c
}

// compareResults orders a report's results by object (kind, name), then policy and rule.
func compareResults(a, b Result) int {
	for _, c := range [][2]string{{a.Object.Kind, b.Object.Kind}, {a.Object.Name, b.Object.Name}, {string(a.Object.UID), string(b.Object.UID)},
		{a.Policy, b.Policy}, {a.Rule, b.Rule}} {
		if d := cmp.Compare(c[0], c[1]); d != 0 {
			return d
		}
	}
	return 0
}

// kept lists the outcomes reports list, in order.
func (s *Store) kept() []Outcome {
	var out []Outcome
	for _, o := range Outcomes {
		if s.Keep.Has(o) {
			out = append(out, o)
		}
	}
	return out
}

// markChanged marks a report to be written again.
func (s *Store) markChanged(namespace string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.namespaces[namespace]; ns != nil {
		ns.changed = true
	}
}

// PolicyCounts counts the results of every object by policy and outcome, over every report.
func (s *Store) PolicyCounts() map[string]Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]Counts{}
	for _, ns := range s.namespaces {
		for _, e := range ns.objects {
			for _, v := range e.byPolicy {
				if out[v.policy] == nil {
					out[v.policy] = Counts{}
				}
				out[v.policy][v.outcome] += int(v.n)
			}
		}
	}
	return out
}

// Forget drops, silently, the namespaces keep says no: another replica judges them now, and
// their reports are its own.
func (s *Store) Forget(keep func(namespace string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.namespaces {
		if !keep(name) {
			delete(s.namespaces, name)
		}
	}
}
