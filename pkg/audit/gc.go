package audit

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// scanGC raises the garbage collector's GOGC while scans run: a scan's garbage (about 29 KiB of
// every object judged) about doubles the collector's cycles, whose marking runs at admission's
// priority, and on the replica's CPU that was most of what a scan cost admission's p99. With
// the heap's headroom raised to match, the collector runs about as often as for admission alone;
// the soft memory limit (--memory-limit-ratio, GOMEMLIMIT) still bounds the heap.
var scanGC struct {
	sync.Mutex
	scans  int  // running: the first raises GOGC, the last puts it back
	raised bool // by the first
	was    int  // the GOGC it was raised from
}

// raiseGCPercent raises GOGC to percent for a scan, unless it is already at least that (or off),
// or percent is 0 or less; it returns what puts it back when the scan ends.
func raiseGCPercent(percent int) (restore func()) {
	if percent <= 0 {
		return func() {}
	}
	scanGC.Lock()
	defer scanGC.Unlock()
	scanGC.scans++
	if scanGC.scans == 1 {
		if current := gcPercent(); current >= 0 && current < percent {
			scanGC.was, scanGC.raised = debug.SetGCPercent(percent), true
		}
	}
	return func() {
		scanGC.Lock()
		defer scanGC.Unlock()
		scanGC.scans--
		if scanGC.scans == 0 && scanGC.raised {
			debug.SetGCPercent(scanGC.was)
			scanGC.raised = false
		}
	}
}

// gcPercent is the GOGC in force; -1 when the collector is off.
func gcPercent() int {
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
