package audit

import (
	"context"
	"time"
)

// pacer holds the scan to a share of one core, so that admission, which shares the process,
// comes first: after each object judged (and each page read), it waits until the time spent
// judging and reading is at most that share of the time since the scan began. The time judging is measured on the wall clock, which
// a busy machine only lengthens: the share is then smaller, never larger.
type pacer struct {
	share float64 // of one core; 0 or less: no pacing
	start time.Time
	busy  time.Duration
}

func newPacer(share float64) *pacer { return &pacer{share: share, start: time.Now()} }

// judged records work of d (an object judged, a page read), and waits as long as the share
// requires.
func (p *pacer) judged(ctx context.Context, d time.Duration) {
	if p.share <= 0 {
		return
	}
	p.busy += d
	wait := time.Duration(float64(p.busy)/p.share) - time.Since(p.start)
	if wait <= time.Millisecond {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
