package audit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/ptr"
)

// MemberLabel marks the Leases of the replicas that share the audit.
const MemberLabel = "portcullis.dev/audit-member"

// Members is this replica's membership of the replicas that share the audit: each keeps a
// Lease, and a namespace is judged by the live replica that rendezvous hashing gives it, so
// that together they judge every namespace once and no replica holds the whole cluster. A
// replica that stops renewing its Lease leaves after Duration; the others then take its
// namespaces at their next refresh.
type Members struct {
	Leases    coordinationv1client.LeasesGetter
	Namespace string
	Identity  string
	// Duration is how long a Lease lives without renewal.
	Duration time.Duration

	mu       sync.Mutex
	members  []string
	lastScan time.Time // this replica's last full scan, published on its Lease
}

// LastScanAnnotation is, on a member's Lease, when it last judged all its namespaces.
const LastScanAnnotation = "portcullis.dev/last-scan"

// Scanned records a full scan of this replica's namespaces, published at the next renewal.
func (m *Members) Scanned(at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastScan = at
}

// leaseName is this replica's Lease: a digest of its identity, which may hold any character.
func (m *Members) leaseName() string {
	sum := sha256.Sum256([]byte(m.Identity))
	return "portcullis-audit-" + hex.EncodeToString(sum[:8])
}

// Renew creates or renews this replica's Lease.
func (m *Members) Renew(ctx context.Context) error {
	leases := m.Leases.Leases(m.Namespace)
	now := metav1.NewMicroTime(time.Now())
	m.mu.Lock()
	annotations := map[string]string{}
	if !m.lastScan.IsZero() {
		annotations[LastScanAnnotation] = m.lastScan.UTC().Format(time.RFC3339)
	}
	m.mu.Unlock()
	spec := coordinationv1.LeaseSpec{HolderIdentity: ptr.To(m.Identity), LeaseDurationSeconds: ptr.To(int32(m.Duration.Seconds())), RenewTime: &now}
	l, err := leases.Get(ctx, m.leaseName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: m.leaseName(), Labels: map[string]string{MemberLabel: "true"}, Annotations: annotations}, Spec: spec}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
	case err == nil:
		l.Spec, l.Annotations = spec, annotations
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("renewing the audit membership Lease: %w", err)
	}
	return nil
}

// Refresh reads the live members, and reports whether they changed.
func (m *Members) Refresh(ctx context.Context) (bool, error) {
	live, _, err := m.read(ctx)
	if err != nil {
		return false, err
	}
	if !slices.Contains(live, m.Identity) {
		live = append(live, m.Identity) // itself, even before its Lease is read back
		slices.Sort(live)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := !slices.Equal(live, m.members)
	m.members = live
	return changed, nil
}

// LastFullScan is when every live member had last judged all its namespaces: the oldest of
// their last full scans; zero when one has not finished one yet.
func (m *Members) LastFullScan(ctx context.Context) (time.Time, error) {
	_, scans, err := m.read(ctx)
	if err != nil || len(scans) == 0 {
		return time.Time{}, err
	}
	return slices.MinFunc(scans, func(a, b time.Time) int { return a.Compare(b) }), nil
}

// read returns the live members, in order, and their last full scans.
func (m *Members) read(ctx context.Context) ([]string, []time.Time, error) {
	list, err := m.Leases.Leases(m.Namespace).List(ctx, metav1.ListOptions{LabelSelector: MemberLabel + "=true"})
	if err != nil {
		return nil, nil, fmt.Errorf("reading the audit members: %w", err)
	}
	now := time.Now()
	var live []string
	var scans []time.Time
	for _, l := range list.Items {
		s := l.Spec
		if s.HolderIdentity == nil || s.RenewTime == nil || s.LeaseDurationSeconds == nil ||
			!s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds)*time.Second).After(now) {
			continue
		}
		live = append(live, *s.HolderIdentity)
		if t, err := time.Parse(time.RFC3339, l.Annotations[LastScanAnnotation]); err == nil {
			scans = append(scans, t)
		} else {
			scans = append(scans, time.Time{})
		}
	}
	slices.Sort(live)
	return live, scans, nil
}

// Leave deletes this replica's Lease, so that the others take its namespaces at once.
func (m *Members) Leave(ctx context.Context) {
	_ = m.Leases.Leases(m.Namespace).Delete(ctx, m.leaseName(), metav1.DeleteOptions{})
}

// Owns reports whether this replica judges namespace ns ("" is the cluster-scoped objects):
// the live member with the highest hash of (member, namespace).
func (m *Members) Owns(ns string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return owner(m.members, ns) == m.Identity
}

// Live returns the live members, in order.
func (m *Members) Live() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members)
}

// owner is the member rendezvous hashing gives ns: the one with the highest hash of (member,
// namespace).
func owner(members []string, ns string) string {
	best, bestScore := "", uint64(0)
	for _, m := range members {
		sum := sha256.Sum256([]byte(m + "\x00" + ns))
		if score := binary.BigEndian.Uint64(sum[:8]); best == "" || score > bestScore {
			best, bestScore = m, score
		}
	}
	return best
}
