package initgc

import (
	"os"
	"runtime/debug"
	"testing"
)

// The collector is off from the package's initialization until Restore, which puts back the
// GOGC the program started with.
func TestRestore(t *testing.T) {
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("GOGC %d before Restore; want the collector off", got)
	}
	Restore()
	got := debug.SetGCPercent(percent)
	if got != percent {
		t.Errorf("GOGC %d after Restore, want %d", got, percent)
	}
	if os.Getenv("GOGC") == "" && got != 100 {
		t.Errorf("GOGC %d after Restore, want Go's default, 100", got)
	}
}
