package app

import (
	"runtime"
	"testing"
)

func TestEnsureProcessors(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	if b, a := ensureProcessors(false); b != 1 || a != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("without the audit: %d → %d (runtime %d), want 1 → 1", b, a, runtime.GOMAXPROCS(0))
	}
	t.Setenv("GOMAXPROCS", "1")
	if b, a := ensureProcessors(true); b != 1 || a != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Fatalf("GOMAXPROCS=1 in the environment: %d → %d (runtime %d), want it obeyed", b, a, runtime.GOMAXPROCS(0))
	}
	t.Setenv("GOMAXPROCS", "")
	if b, a := ensureProcessors(true); b != 1 || a != 2 || runtime.GOMAXPROCS(0) != 2 {
		t.Fatalf("with the audit on one processor: %d → %d (runtime %d), want 1 → 2", b, a, runtime.GOMAXPROCS(0))
	}
	runtime.GOMAXPROCS(3)
	if b, a := ensureProcessors(true); b != 3 || a != 3 {
		t.Fatalf("with three: %d → %d, want them kept", b, a)
	}
}
