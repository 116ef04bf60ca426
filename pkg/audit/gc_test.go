package audit

import (
	"runtime/debug"
	"sync"
	"testing"
)

// TestScansRaiseGCPercent: GOGC is raised while any scan runs and put back when the last ends;
// never lowered, and left alone when the collector is off.
func TestScansRaiseGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	first := raiseGCPercent(200)
	if got := gcPercent(); got != 200 {
		t.Fatalf("during a scan: GOGC %d, want 200", got)
	}
	second := raiseGCPercent(300) // overlapping: the first scan's raise stands
	first()
	if got := gcPercent(); got != 200 {
		t.Fatalf("while a second scan runs: GOGC %d, want 200", got)
	}
	second()
	if got := gcPercent(); got != 100 {
		t.Fatalf("after the scans: GOGC %d, want 100", got)
	}

	debug.SetGCPercent(400) // an operator's GOGC=400 is not lowered
	raiseGCPercent(200)()
	if got := gcPercent(); got != 400 {
		t.Fatalf("GOGC 400 became %d", got)
	}
	debug.SetGCPercent(-1) // nor is GOGC=off turned on
	restore := raiseGCPercent(200)
	if got := gcPercent(); got != -1 {
		t.Fatalf("GOGC off became %d", got)
	}
	restore()
	if got := gcPercent(); got != -1 {
		t.Fatalf("GOGC off became %d after the scan", got)
	}
	debug.SetGCPercent(100)
	raiseGCPercent(0)() // 0: the process's own
	if got := gcPercent(); got != 100 {
		t.Fatalf("GOGC %d, want 100", got)
	}

	var wg sync.WaitGroup // scans that start and end at once leave it as it was
	for range 8 {
		wg.Go(func() { raiseGCPercent(200)() })
	}
	wg.Wait()
	if got := gcPercent(); got != 100 {
		t.Fatalf("after concurrent scans: GOGC %d, want 100", got)
	}
}
