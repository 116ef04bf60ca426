package leader

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var fast = Timings{LeaseDuration: 600 * time.Millisecond, RenewDeadline: 400 * time.Millisecond, RetryPeriod: 100 * time.Millisecond}

// recorder counts how often its work starts and how many copies run at once.
type recorder struct {
	started, running, maxRunning atomic.Int32
}

func (r *recorder) work(ctx context.Context) error {
	r.started.Add(1)
	n := r.running.Add(1)
	for {
		m := r.maxRunning.Load()
		if n <= m || r.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	<-ctx.Done()
	r.running.Add(-1)
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An API server that stops answering makes the leader lose its lease: its work stops, the
// elector keeps running and leads again, with a fresh start of the work, once the server is back.
func TestLeaseLostAndRegainedWithoutExiting(t *testing.T) {
	cs := fake.NewClientset()
	var down atomic.Bool
	cs.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	var rec recorder
	var transitions sync.Map
	var n atomic.Int32
	e := &Elector{Leases: cs.CoordinationV1(), Namespace: "ns", Name: "lease", ID: "a", Timings: fast,
		Work: []Work{rec.work}, OnLeading: func(leading bool) { transitions.Store(n.Add(1), leading) }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()

	waitFor(t, "the work starts", func() bool { return rec.running.Load() == 1 })
	down.Store(true)
	waitFor(t, "the work stops once the lease cannot be renewed", func() bool { return rec.running.Load() == 0 })
	select {
	case err := <-done:
		t.Fatalf("the elector returned on a lost lease: %v", err)
	default:
	}
	down.Store(false)
	waitFor(t, "the work starts again", func() bool { return rec.started.Load() == 2 && rec.running.Load() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rec.running.Load() != 0 {
		t.Error("work still running after the elector returned")
	}
	if got := rec.maxRunning.Load(); got != 1 {
		t.Errorf("%d copies of the work ran at once, want 1", got)
	}
	var seq []bool
	for i := int32(1); i <= n.Load(); i++ {
		v, _ := transitions.Load(i)
		seq = append(seq, v.(bool))
	}
	if want := []bool{true, false, true, false}; !slices.Equal(seq, want) {
		t.Errorf("leading transitions %v, want %v", seq, want)
	}
}

// Two electors on one lease: exactly one runs the work; when it stops (releasing the lease) the
// other takes over without waiting for the lease to expire.
func TestOneLeaderAndHandover(t *testing.T) {
	cs := fake.NewClientset()
	var a, b recorder
	slow := Timings{LeaseDuration: time.Minute, RenewDeadline: 30 * time.Second, RetryPeriod: 50 * time.Millisecond}
	ea := &Elector{Leases: cs.CoordinationV1(), Namespace: "ns", Name: "lease", ID: "a", Timings: slow, Work: []Work{a.work}}
	eb := &Elector{Leases: cs.CoordinationV1(), Namespace: "ns", Name: "lease", ID: "b", Timings: slow, Work: []Work{b.work}}
	ctxA, stopA := context.WithCancel(t.Context())
	doneA := make(chan error, 1)
	go func() { doneA <- ea.Start(ctxA) }()
	waitFor(t, "a leads", func() bool { return a.running.Load() == 1 })
	ctxB, stopB := context.WithCancel(t.Context())
	defer stopB()
	go func() { _ = eb.Start(ctxB) }()
	time.Sleep(300 * time.Millisecond)
	if b.started.Load() != 0 {
		t.Fatal("b started leader work while a holds the lease")
	}
	stopA()
	if err := <-doneA; err != nil {
		t.Fatal(err)
	}
	// The lease lasts a minute: b can only lead this soon because a released it.
	waitFor(t, "b takes over", func() bool { return b.running.Load() == 1 })
}

// Work that fails is restarted while the replica leads, never dropped.
func TestFailedWorkRestarts(t *testing.T) {
	cs := fake.NewClientset()
	var calls atomic.Int32
	e := &Elector{Leases: cs.CoordinationV1(), Namespace: "ns", Name: "lease", ID: "a", Timings: fast,
		Work: []Work{func(context.Context) error { calls.Add(1); return errors.New("boom") }}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = e.Start(ctx) }()
	waitFor(t, "the failed work is restarted", func() bool { return calls.Load() >= 3 })
}
