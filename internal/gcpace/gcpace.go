// Package gcpace owns the garbage collector's GOGC in the webhook server. The GOGC the process
// runs with (the environment's, or Go's 100) is the floor; two things raise it above that for a
// while and put it back afterwards:
//
//   - an audit scan, for as long as it runs (Raise): its garbage would otherwise about double
//     the collector's cycles beside admission's;
//   - the pacer (Pacer.Run, the server's --gc-cycle-interval, 500ms by default), while the process
//     allocates fast: it gives the heap the headroom that the bytes allocated in one interval
//     need, so that the collector runs about once an interval rather than as often as a small
//     live heap's GOGC makes it.
//
// Why a pacer: every cycle stops the world twice. The pauses are tens of microseconds on an idle
// machine, but on a busy one the thread the collector waits for may itself be waiting for a CPU,
// and they grow to 1–3 ms. At 2,000 reviews a second a server with a small policy set has a heap
// of a few MB, GOGC 100 gives it as much again, and the collector ran six times a second: the
// reviews in flight during those pauses made admission's p99 (docs/performance.md). The
// headroom the pacer adds is the allocation rate times the interval: it is memory for latency,
// it follows the load and goes back down with it, it never lowers the operator's GOGC, it is at
// most a quarter of the soft memory limit (GOMEMLIMIT, or the server's --memory-limit-ratio),
// and that limit still bounds the heap.
//
// A GOGC of off is left alone.
package gcpace

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// MaxPercent is the highest GOGC the pacer sets: with the soft memory limit unset, the heap it
// allows is at most eleven times what is live.
const MaxPercent = 1000

// limitShare is the most headroom the pacer gives the heap, as a share of the soft memory limit
// when one is set: a quarter keeps the heap it allows clear of the limit, where the collector
// would run as often as it must anyway, and leaves the rest of the container's memory (the
// binary's pages, the live heap) its room. Reviews a tenant makes costly raise the headroom no
// further.
const limitShare = 4

// The process's GOGC and who holds it raised.
var state = struct {
	sync.Mutex
	held   bool        // GOGC is raised above base, by a scan or the pacer
	base   int         // while held: the GOGC to put back
	set    int         // while held: the GOGC last set
	raises map[int]int // the running scans' percents, counted
	pacer  int         // the pacer's percent; 0: it asks for nothing
}{raises: map[int]int{}}

// Raise raises GOGC to at least percent until the returned function is called; raises that
// overlap keep the highest of them. It never lowers GOGC and leaves it off; a percent of 0 or
// less asks for nothing.
func Raise(percent int) (restore func()) {
	if percent <= 0 {
		return func() {}
	}
	state.Lock()
	defer state.Unlock()
	state.raises[percent]++
	update()
	var once sync.Once
	return func() {
		once.Do(func() {
			state.Lock()
			defer state.Unlock()
			if state.raises[percent]--; state.raises[percent] == 0 {
				delete(state.raises, percent)
			}
			update()
		})
	}
}

// setPacer records the pacer's percent (0: none) and applies it.
func setPacer(percent int) {
	state.Lock()
	defer state.Unlock()
	state.pacer = percent
	update()
}

// update sets GOGC to the highest of the base and every raise, taking the GOGC in force as the
// base when nothing held it raised. The caller holds state's lock.
func update() {
	want := state.pacer
	for p := range state.raises {
		want = max(want, p)
	}
	if !state.held {
		current := Percent()
		if current < 0 || want <= current {
			return // off, or already as high: left alone
		}
		state.held, state.base, state.set = true, current, current
	}
	target := max(state.base, want)
	if target == state.set {
		return
	}
	debug.SetGCPercent(target)
	state.set = target
	if target == state.base {
		state.held = false
	}
}

// Percent is the GOGC in force; -1 when the collector is off.
func Percent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	v := s[0].Value.Uint64()
	if v > math.MaxInt32 { // off: -1, as an unsigned value
		return -1
	}
	return int(v) //nolint:gosec // at most MaxInt32
}

// Pacer raises GOGC while the process allocates fast, so that the collector runs about once an
// Interval at most (see the package's comment).
type Pacer struct {
	// Interval is the time the pacer aims to leave between collections.
	Interval time.Duration
	// Sample is how often it reads the allocation rate; a second when zero.
	Sample time.Duration
	// Changed, when set, is told every GOGC the pacer asks for (0: none).
	Changed func(percent int)
}

// The runtime's figures the pacer reads.
var paceSamples = []string{
	"/gc/heap/allocs:bytes",  // allocated since the start
	"/gc/heap/live:bytes",    // live after the last collection
	"/gc/scan/stack:bytes",   // the goroutines' stacks, scanned as the heap is
	"/gc/scan/globals:bytes", // the same for the globals
}

// Run paces the collector until ctx ends, then asks for nothing more. It returns false at once
// when the runtime does not give the figures it reads.
func (p *Pacer) Run(ctx context.Context) bool {
	every := p.Sample
	if every <= 0 {
		every = time.Second
	}
	samples := make([]metrics.Sample, len(paceSamples))
	for i, name := range paceSamples {
		samples[i].Name = name
	}
	metrics.Read(samples)
	for _, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return false
		}
	}
	last, lastAt := samples[0].Value.Uint64(), time.Now()
	var rate float64 // bytes a second, as estimated
	asked := 0
	tick := time.NewTicker(every)
	defer tick.Stop()
	defer func() {
		if asked != 0 {
			setPacer(0)
			p.changed(0)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return true
		case <-tick.C:
		}
		metrics.Read(samples)
		allocs, now := samples[0].Value.Uint64(), time.Now()
		rate = estimate(rate, float64(allocs-last)/now.Sub(lastAt).Seconds(), now.Sub(lastAt))
		last, lastAt = allocs, now
		scanned := samples[1].Value.Uint64() + samples[2].Value.Uint64() + samples[3].Value.Uint64()
		if want := percentFor(min(rate*p.Interval.Seconds(), maxHeadroom()), scanned); want != asked {
			asked = want
			setPacer(want)
			p.changed(want)
		}
	}
}

func (p *Pacer) changed(percent int) {
	if p.Changed != nil {
		p.Changed(percent)
	}
}

// decayPerSecond is how much of the estimated allocation rate a second without allocating
// leaves: a burst raises the estimate at once, and it falls back over seconds, so that GOGC
// does not follow every gap between reviews.
const decayPerSecond = 0.7

// estimate is the allocation rate to pace for: the one just measured, or the previous estimate
// decayed over elapsed, whichever is higher.
func estimate(previous, measured float64, elapsed time.Duration) float64 {
	return max(measured, previous*math.Pow(decayPerSecond, elapsed.Seconds()))
}

// step rounds the pacer's percents, so that GOGC does not change at every sample.
const step = 25

// maxHeadroom is the most headroom the pacer gives: a share of the soft memory limit, or no
// bound but MaxPercent when there is none.
func maxHeadroom() float64 {
	if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
		return float64(limit / limitShare)
	}
	return math.Inf(1)
}

// percentFor is the GOGC whose headroom holds headroom bytes, for a heap whose collection scans
// scanned bytes (the live heap, stacks and globals: GOGC is a percentage of those), rounded up to
// a step, at most MaxPercent; 0 when GOGC 100 holds it (the base applies).
func percentFor(headroom float64, scanned uint64) int {
	if scanned == 0 || headroom <= 0 {
		return 0
	}
	percent := math.Ceil(100*headroom/float64(scanned)/step) * step
	switch {
	case percent <= 100:
		return 0
	case percent >= MaxPercent:
		return MaxPercent
	}
	return int(percent)
}
