package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Work is leader-only work: it runs while this replica leads and must return soon after ctx ends.
type Work func(ctx context.Context) error

// Timings of the Lease. A crashed leader's lease is taken over within LeaseDuration plus a
// RetryPeriod; a leader that cannot renew within RenewDeadline stops its work.
type Timings struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// DefaultTimings are client-go's and controller-runtime's defaults.
var DefaultTimings = Timings{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

// Elector campaigns for a Lease for as long as its context lives. While it leads it runs Work;
// when the lease is lost (the API server unreachable past RenewDeadline, say) it stops the work,
// waits for every piece to return, and campaigns again.
type Elector struct {
	Leases              coordinationv1client.LeasesGetter
	Namespace, Name, ID string
	Timings             Timings
	Work                []Work
	// OnLeading is told when this replica starts and stops leading; optional.
	OnLeading func(leading bool)
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: the elector runs on every
// replica.
func (*Elector) NeedLeaderElection() bool { return false }

// Start campaigns until ctx ends. On ctx's end a leader releases the lease, so that another
// replica takes over at once instead of after LeaseDuration.
func (e *Elector) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("leader").WithValues("lease", e.Namespace+"/"+e.Name, "identity", e.ID)
	for ctx.Err() == nil {
		// Run starts OnStartedLeading in a goroutine of its own and returns, once the lease is
		// lost, without waiting for it; that goroutine may even start after Run returned. So the
		// work registers under mu, and once Run has returned (closed) none starts any more.
		var (
			mu      sync.Mutex
			led     sync.WaitGroup
			leading bool
			closed  bool
		)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
				Client:     e.Leases,
				LockConfig: resourcelock.ResourceLockConfig{Identity: e.ID},
			},
			LeaseDuration:   e.Timings.LeaseDuration,
			RenewDeadline:   e.Timings.RenewDeadline,
			RetryPeriod:     e.Timings.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            e.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					mu.Lock()
					if closed {
						mu.Unlock()
						return // the lease is already lost, and ctx with it
					}
					led.Add(1)
					leading = true
					mu.Unlock()
					defer led.Done()
					logger.Info("leading: starting leader-only work")
					e.notify(true)
					e.lead(ctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
		// Wait for the work Run started, so two generations of leader work never overlap here.
		mu.Lock()
		closed = true
		mu.Unlock()
		led.Wait()
		if leading {
			logger.Info("stopped leading; leader-only work stopped")
			e.notify(false)
		}
		select {
		case <-ctx.Done():
		case <-time.After(e.Timings.RetryPeriod):
		}
	}
	return nil
}

// lead runs every piece of work until ctx ends. A piece that fails is restarted after a
// RetryPeriod: leader work is never silently dropped while this replica leads.
func (e *Elector) lead(ctx context.Context) {
	logger := log.FromContext(ctx).WithName("leader")
	var wg sync.WaitGroup
	for i, w := range e.Work {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := w(ctx)
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					err = errors.New("returned before leadership ended")
				}
				logger.Error(err, "leader work stopped; restarting it", "work", i)
				select {
				case <-ctx.Done():
				case <-time.After(e.Timings.RetryPeriod):
				}
			}
		})
	}
	wg.Wait()
}

func (e *Elector) notify(leading bool) {
	if e.OnLeading != nil {
		e.OnLeading(leading)
	}
}
