package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// Run scans at start, again for the kinds a policy change affects, and everything every
// Interval, until ctx ends. It is leader work: it returns when ctx ends. It runs on an OS thread
// of its own at the lowest priority (onScanThread), so that admission comes first.
func (s *Scanner) Run(ctx context.Context) error {
	return onScanThread(func(notLowered error) error {
		if notLowered != nil {
			s.Log.Info("audit: the scan's thread keeps the server's priority", "reason", notLowered.Error())
		}
		return s.run(ctx)
	})
}

func (s *Scanner) run(ctx context.Context) error {
	if s.Observer != nil {
		// A replica that no longer leads has nothing to say of the violations: the leader does.
		defer s.Observer.AuditViolationCounts(nil)
	}
	// What it needs at start is waited for, never a reason to stop the process: the reports'
	// CRDs may be installed after the server.
	var inPlace []string
	if !s.retry(ctx, func() (err error) { inPlace, err = s.Writer.Load(ctx); return err }) {
		return nil
	}
	if s.Members != nil {
		s.Owns = s.Members.Owns
		if !s.retry(ctx, func() error {
			if err := s.Members.Renew(ctx); err != nil {
				return err
			}
			_, err := s.Members.Refresh(ctx)
			return err
		}) {
			return nil
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
		s.fresh = &freshness{client: s.Metadata, s: s, watches: map[schema.GroupVersionResource]context.CancelFunc{},
			pending: map[pendingKey]intercept.Scope{}, rescan: map[schema.GroupVersionResource]bool{}}
	}
	for _, ns := range inPlace { // when the findings in place were first seen, one report at a time
		if seen, err := s.Writer.Findings(ctx, ns); err == nil {
			s.Store.Seed(seen)
		}
	}
	s.logScan(s.Scan(ctx, engine, nil, inPlace))
	s.Store.Seed(nil)
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
	pending, removed, rescan := s.fresh.take()
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
	if len(pending) == 0 && !removed {
		return
	}
	s.refresh(ctx, pending)
	if _, _, err := s.flush(ctx, engine, nil); err != nil {
		s.Log.Error(err, "audit: writing reports")
	}
	s.observe(true, 0)
	if s.status != nil && time.Since(s.status.last) >= statusSpacing {
		if err := s.status.write(ctx, engine, s.Store.PolicyCounts(), time.Now()); err != nil {
			s.Log.Error(err, "audit: writing policy status")
		}
	}
}

func (s *Scanner) logScan(st ScanStats, err error) {
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		s.Log.Info("audit scan stopped: the server is stopping", "objects", st.Objects) // expected, not an error
		return
	case err != nil:
		s.Log.Error(err, "audit scan")
		if s.Observer != nil {
			s.Observer.AuditScanOutcome(false)
		}
		return
	}
	if s.Observer != nil {
		s.Observer.AuditScanOutcome(len(st.Unlisted) == 0)
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

// retryEvery is how often the audit tries again what it needs at start.
var retryEvery = 15 * time.Second

// retry calls f until it succeeds, logging each failure (saying what to install when the
// reports' CRDs are missing), and reports false when ctx ended first.
func (s *Scanner) retry(ctx context.Context, f func() error) bool {
	for {
		err := f()
		if err == nil {
			return true
		}
		if meta.IsNoMatchError(err) {
			err = fmt.Errorf("the OpenReports CRDs are not installed (kubectl apply -k manifests/crds installs every CRD the server needs): %w", err)
		}
		s.Log.Error(err, "audit: waiting before it can start", "retryIn", retryEvery.String())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(retryEvery):
		}
	}
}
