package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// policyStatus writes each policy's status.audit: its counts over the existing objects, and
// when the audit last judged its kinds. It writes a policy only when that changed.
type policyStatus struct {
	client  client.Client
	scanned map[string]time.Time            // policy -> when its kinds were last judged
	written map[string]v1alpha1.AuditStatus // policy -> what its status says
	last    time.Time                       // the last write, to space out those of watched changes
}

// scannedNow records that the kinds in gks were just judged, for every policy matching one.
func (ps *policyStatus) scannedNow(engine *policies.Engine, gks []schema.GroupKind, now time.Time) {
	for p := range engine.Policies() {
		if slices.ContainsFunc(p.Interception().Kinds, func(k policies.KindSelector) bool {
			return slices.ContainsFunc(gks, k.Selects)
		}) {
			ps.scanned[p.Name] = now
		}
	}
}

// write brings every policy's status.audit to counts. Policies deleted meanwhile are skipped.
func (ps *policyStatus) write(ctx context.Context, engine *policies.Engine, counts map[string]Counts, now time.Time) error {
	ps.last = now
	var errs []error
	seen := map[string]bool{}
	for p := range engine.Policies() {
		seen[p.Name] = true
		c := counts[p.Name]
		st := v1alpha1.AuditStatus{Pass: c[Pass], Fail: c[Fail], Warn: c[Warn], Error: c[Error], Violations: c[Fail] + c[Warn]}
		if t, ok := ps.scanned[p.Name]; ok {
			st.LastScanTime = &metav1.Time{Time: t.Truncate(time.Second)}
		}
		if old, ok := ps.written[p.Name]; ok && sameAudit(old, st) {
			continue
		}
		if err := ps.patch(ctx, p, st); err != nil {
			errs = append(errs, err)
			continue
		}
		ps.written[p.Name] = st
	}
	for name := range ps.written {
		if !seen[name] {
			delete(ps.written, name)
			delete(ps.scanned, name)
		}
	}
	return errors.Join(errs...)
}

func (ps *policyStatus) patch(ctx context.Context, p *policies.CompiledPolicy, st v1alpha1.AuditStatus) error {
	var obj client.Object = &v1alpha1.ClusterPolicy{}
	obj.SetName(p.Name)
	if p.Namespace != "" {
		obj = &v1alpha1.Policy{}
		obj.SetNamespace(p.Namespace)
		obj.SetName(p.LocalName())
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"audit": st}})
	if err != nil {
		return err
	}
	if err := ps.client.Status().Patch(ctx, obj, client.RawPatch(types.MergePatchType, body)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing the audit status of policy %s: %w", p.Name, err)
	}
	return nil
}

func sameAudit(a, b v1alpha1.AuditStatus) bool {
	ta, tb := a.LastScanTime, b.LastScanTime
	a.LastScanTime, b.LastScanTime = nil, nil
	return a == b && (ta == nil) == (tb == nil) && (ta == nil || ta.Equal(tb))
}
