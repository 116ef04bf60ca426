package gcpace

import (
	"context"
	"math"
	"runtime/debug"
	"sync"
	"testing"
	"time"
)

func wantPercent(t *testing.T, when string, want int) {
	t.Helper()
	if got := Percent(); got != want {
		t.Fatalf("%s: GOGC %d, want %d", when, got, want)
	}
}

// TestRaise: GOGC is raised while any raise holds, to the highest of them, and put back when the
// last ends; never lowered, and left alone when the collector is off.
func TestRaise(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	first := Raise(200)
	wantPercent(t, "during a scan", 200)
	second := Raise(300) // overlapping: the highest holds
	wantPercent(t, "during two scans", 300)
	second()
	second() // a second call changes nothing
	wantPercent(t, "once the second ended", 200)
	first()
	wantPercent(t, "after the scans", 100)

	debug.SetGCPercent(400) // an operator's GOGC=400 is not lowered
	Raise(200)()
	wantPercent(t, "GOGC 400 and a raise to 200", 400)
	debug.SetGCPercent(-1) // nor is GOGC=off turned on
	restore := Raise(200)
	wantPercent(t, "GOGC off and a raise", -1)
	restore()
	wantPercent(t, "GOGC off after a raise", -1)
	debug.SetGCPercent(100)
	Raise(0)() // 0: the process's own
	wantPercent(t, "a raise to 0", 100)

	var wg sync.WaitGroup // raises that start and end at once leave it as it was
	for range 8 {
		wg.Go(func() { Raise(200)() })
	}
	wg.Wait()
	wantPercent(t, "after concurrent raises", 100)

	// The pacer's percent and a scan's: the highest holds, and the base comes back after both.
	setPacer(500)
	wantPercent(t, "paced", 500)
	scan := Raise(200)
	wantPercent(t, "paced during a scan", 500)
	setPacer(0)
	wantPercent(t, "a scan after the pacing", 200)
	scan()
	wantPercent(t, "after both", 100)
}

// TestPercentFor: the headroom as a percentage of what a collection scans, rounded up to a step
// and bounded; the pacer's headroom is the rate times the interval, within a share of the soft
// memory limit.
func TestPercentFor(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		headroom float64 // bytes
		scanned  uint64
		want     int
	}{
		{0, 10 * mb, 0},               // idle
		{5 * mb, 10 * mb, 0},          // GOGC 100 holds it
		{10 * mb, 10 * mb, 0},         // exactly
		{11 * mb, 10 * mb, 125},       // 110%, rounded up to a step
		{31 * mb, 8 * mb, 400},        // 387.5%: 62 MB/s for half a second
		{1 << 40, 8 * mb, MaxPercent}, // bounded
		{62 * mb, 0, 0},               // nothing known yet
	} {
		if got := percentFor(c.headroom, c.scanned); got != c.want {
			t.Errorf("percentFor(%.0f B, %d B) = %d, want %d", c.headroom, c.scanned, got, c.want)
		}
	}

	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	if got := maxHeadroom(); !math.IsInf(got, 1) {
		t.Errorf("no memory limit: headroom at most %v, want no bound", got)
	}
	debug.SetMemoryLimit(230 * mb)
	if got := maxHeadroom(); got != 230*mb/limitShare {
		t.Errorf("a 230 MiB limit: headroom at most %v, want %v", got, 230*mb/limitShare)
	}
}

// TestEstimate: a burst raises the estimate at once; it falls back by decayPerSecond a second.
func TestEstimate(t *testing.T) {
	if got := estimate(10, 100, time.Second); got != 100 {
		t.Errorf("a burst: %v, want 100", got)
	}
	if got := estimate(100, 0, 2*time.Second); math.Abs(got-100*decayPerSecond*decayPerSecond) > 1e-9 {
		t.Errorf("two idle seconds: %v, want %v", got, 100*decayPerSecond*decayPerSecond)
	}
	if got := estimate(100, 90, time.Second); got != 90 {
		t.Errorf("a slightly lower rate: %v, want 90", got)
	}
}

var sink [][]byte

// TestPacer: the real runtime, allocating fast with a small live heap, gets a higher GOGC from
// the pacer; when the pacer stops, the base comes back.
func TestPacer(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan int, 64)
	p := &Pacer{Interval: time.Second, Sample: 20 * time.Millisecond, Changed: func(percent int) { changes <- percent }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !p.Run(ctx) {
			t.Error("the runtime does not give the pacer's figures")
		}
	}()

	deadline := time.Now().Add(20 * time.Second)
	for Percent() <= 100 {
		if time.Now().After(deadline) {
			t.Fatal("allocating fast for 20 s, GOGC stayed at 100")
		}
		for range 256 { // 16 MiB, kept until the next round: a live heap of about that
			sink = append(sink, make([]byte, 64<<10))
		}
		sink = sink[:0]
	}
	if got := <-changes; got <= 100 || got > MaxPercent {
		t.Errorf("the pacer asked for %d", got)
	}
	cancel()
	<-done
	wantPercent(t, "after the pacer stopped", 100)
}
