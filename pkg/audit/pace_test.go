package audit

import (
	"testing"
	"time"
)

// TestPacerHoldsItsShare: with a share of a quarter core, 20 objects of 2 ms each take at least
// 160 ms; without a share they are not held. Bounds are one-sided: a slow machine only waits
// longer.
func TestPacerHoldsItsShare(t *testing.T) {
	for _, tc := range []struct {
		share   float64
		atLeast time.Duration
		unpaced bool
	}{{0.25, 150 * time.Millisecond, false}, {0, 0, true}} {
		p := newPacer(tc.share)
		start := time.Now()
		for range 20 {
			time.Sleep(2 * time.Millisecond)
			p.judged(t.Context(), 2*time.Millisecond)
		}
		took := time.Since(start)
		if took < tc.atLeast {
			t.Errorf("share %.2f: 20 objects in %s, want at least %s", tc.share, took, tc.atLeast)
		}
		if tc.unpaced && p.busy != 0 {
			t.Errorf("unpaced pacer counted %s", p.busy)
		}
	}
}
