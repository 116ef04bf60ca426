package audit

import (
	"context"
	"time"
)

// pacerBurst is the most work the scan may do at once on credit it earned while it waited (for
// the API server's next page, say). Without the bound, a scan that waited 400 ms for a page would
// then judge for 100 ms without a pause; on one processor (GOMAXPROCS 1: the server raises it to
// 2 with the audit on, but an operator may set it) nothing polls the network meanwhile, and the
// reviews that arrive wait for it: admission p99 rose 8× during a scan.
const pacerBurst = 2 * time.Millisecond

// pacer holds the scan to a share of one core, so that admission, which shares the process,
// comes first. It is a token bucket of CPU time: credit accrues at share of the wall clock, at
// most pacerBurst of it; each object judged (and each page read) spends its time; in debt of more
// than a millisecond, the scan sleeps until the debt is paid. The time judging is measured on the
// wall clock, which a busy machine only lengthens: the share is then smaller, never larger.
type pacer struct {
	share  float64 // of one core; 0 or less: no pacing
	last   time.Time
	credit time.Duration
}

func newPacer(share float64) *pacer { return &pacer{share: share, last: time.Now()} }

// judged records work of d (an object judged, a page read), and waits as long as the share
// requires.
func (p *pacer) judged(ctx context.Context, d time.Duration) {
	if p.share <= 0 {
		return
	}
	now := time.Now()
	p.credit = min(p.credit+time.Duration(float64(now.Sub(p.last))*p.share), pacerBurst) - d
	p.last = now
	if p.credit >= -time.Millisecond {
		return
	}
	t := time.NewTimer(time.Duration(float64(-p.credit) / p.share))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
