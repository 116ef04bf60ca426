package audit

import (
	"testing"
	"time"
)

// work is 20 objects of 2 ms each, recorded with p; it returns how long they took.
func work(t *testing.T, p *pacer) time.Duration {
	start := time.Now()
	for range 20 {
		time.Sleep(2 * time.Millisecond)
		p.judged(t.Context(), 2*time.Millisecond)
	}
	return time.Since(start)
}

// TestPacerHoldsItsShare: with a share of a quarter core, 20 objects of 2 ms each take at least
// 150 ms; without a share they are not held. Bounds are one-sided: a slow machine only waits
// longer.
func TestPacerHoldsItsShare(t *testing.T) {
	if took := work(t, newPacer(0.25)); took < 150*time.Millisecond {
		t.Errorf("share 0.25: 20 objects in %s, want at least 150ms", took)
	}
	p := newPacer(0)
	work(t, p)
	if p.credit != 0 {
		t.Errorf("an unpaced pacer kept accounts: %s", p.credit)
	}
}

// TestPacerBanksNoIdleTime: time the scan spent waiting (for a page) does not buy it a long run
// later. After 200 ms idle, 40 ms of work at a quarter core still takes about 150 ms, not 40 ms
// plus what 200 ms would have bought (a 50 ms run without a pause).
func TestPacerBanksNoIdleTime(t *testing.T) {
	p := newPacer(0.25)
	time.Sleep(200 * time.Millisecond)
	if took := work(t, p); took < 140*time.Millisecond {
		t.Errorf("after 200ms idle, 20 objects of 2ms in %s, want at least 140ms: the idle time was banked", took)
	}
}
